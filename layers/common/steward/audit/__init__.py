"""The audit log of maintenance jobs: an append-only, hash-chained log per app."""
