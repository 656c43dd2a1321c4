"""Promotion operations: channel requests and state, endpoint exports and publication, rollouts, windows."""
