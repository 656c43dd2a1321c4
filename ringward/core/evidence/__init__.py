"""Evidence records, the hash chain, bundle files, interop formats, queries, checkpoints."""
