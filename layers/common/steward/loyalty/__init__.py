"""Loyalty programs of an app and their promo codes, each attached to at most one user at a time."""
