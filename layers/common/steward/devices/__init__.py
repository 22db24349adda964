"""Push devices: identify, push results, logout and reads."""
