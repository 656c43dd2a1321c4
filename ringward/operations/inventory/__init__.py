"""Inventory operations: ingest provider payloads, reconcile fleets against signed releases, freshness."""
