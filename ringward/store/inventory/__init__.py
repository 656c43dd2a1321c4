"""Inventory persistence: ingestion lookups by content id (records live in the evidence chain)."""
