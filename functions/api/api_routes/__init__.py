"""Route modules of the API function; each builds a Router around its service."""
