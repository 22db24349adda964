"""Device tags: labels on devices, with a device count per tag."""
