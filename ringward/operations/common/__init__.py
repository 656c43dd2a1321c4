"""Shared operations helpers: atomic files, background loading, API tokens."""
