"""Maintenance jobs: submission (``models``, ``params``), planning (``split``) and cost (``pricing``)."""
