"""Promotion state in the store: release channels (high-water marks, holds, rollback allowances)."""
