"""Segments: static ones with explicit members and counts, and criteria ones."""
