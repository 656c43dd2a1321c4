"""SLA persistence: the append-only history ledger and the per-window run key."""
