"""Use cases that span domains. They sit above the domain packages and receive their collaborators."""
