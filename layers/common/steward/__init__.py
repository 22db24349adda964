"""Steward's shared layer: domain logic, data access and HTTP plumbing."""
