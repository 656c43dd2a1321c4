"""Connector delivery operations: deliver, redeliver, history, dashboard."""
