"""Operator commands for a deployed stack: bootstrap apps and their first keys."""
