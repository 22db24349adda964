"""Maintenance jobs: submission (``models``, ``params``), planning (``split``), cost (``pricing``) and, to come, execution."""
