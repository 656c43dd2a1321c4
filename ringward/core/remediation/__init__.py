"""Endpoint remediation: handoffs to providers and their status records (pure models)."""
