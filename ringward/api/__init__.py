"""Ringward's HTTP API (FastAPI): evidence search, governed artifact downloads, approvals."""
