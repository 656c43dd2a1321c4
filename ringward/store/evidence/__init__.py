"""The hash-chained evidence table."""
