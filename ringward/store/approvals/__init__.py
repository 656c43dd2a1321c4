"""Approvals and their decisions, with compare-and-swap transitions."""
