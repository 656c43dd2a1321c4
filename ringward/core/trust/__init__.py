"""Pinned trust: Ed25519 keys, detached signatures, trust roots."""
