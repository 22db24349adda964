"""Regions: geozones, points of interest, cities and countries."""
