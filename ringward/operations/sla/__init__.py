"""SLA operations: what ``ringward sla ...`` and the SLA tasks run (no Prefect here)."""
