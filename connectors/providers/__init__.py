"""Provider implementations, one module per family (SIEM, ChatOps, ITSM, webhook, fleet)."""
