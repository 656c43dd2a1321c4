"""Approvals: the state machine and the rules every decision and execution must pass."""
