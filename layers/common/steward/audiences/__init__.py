"""Audiences imported from CSV files: storage in packed hash buckets, the importer, and the API's reads."""
