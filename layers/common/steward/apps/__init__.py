"""Apps (tenants), their API keys and their admin credentials."""
