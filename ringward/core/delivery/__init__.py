"""Connector delivery: configuration, events, policies, results, publication payloads."""
