"""Key files and trust-root files on disk."""
