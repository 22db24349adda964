"""Resources: mailing resources or sender brands, each offering some channels."""
