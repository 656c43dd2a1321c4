"""Remediation state (requests, dedup index, executions, handoffs, handoff statuses) on ``kv_state``."""
