"""Run the whole Steward stack on this machine: no AWS account, no Docker.

The real template.yaml is transformed with samtranslator and created in an
embedded moto server; handlers run in-process; a small HTTP API gateway
routes requests through the real authorizer.
"""
