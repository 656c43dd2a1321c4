"""Approval operations over the store."""
