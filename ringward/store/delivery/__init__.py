"""The connector delivery log (claims, attempts, idempotency by key)."""
