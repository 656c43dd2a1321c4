"""I/O around the pure core: read and hash files, write evidence, call the store. No Prefect:
the CLI runs these in-process, and `tasks/` wraps them for flows."""
