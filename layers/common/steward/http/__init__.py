"""HTTP plumbing shared by every API function: errors, authentication, scopes."""
