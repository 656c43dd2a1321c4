"""Fleet inventory: the observation schema, provider normalisers, reconciliation and freshness rules."""
