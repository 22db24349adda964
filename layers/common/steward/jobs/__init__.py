"""Maintenance jobs: what a client submits and what the API shows of a job (``models``), and each type's
parameters (``params``). The engine that runs jobs builds on these."""
