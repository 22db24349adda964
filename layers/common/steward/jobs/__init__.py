"""Maintenance jobs: submission, planning, cost and execution."""
