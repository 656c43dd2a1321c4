"""Evidence operations: bundles, chain verification, checkpoints, search, import/export."""
