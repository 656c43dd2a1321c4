"""Shared pure pieces: strict JSON, safe paths, versions, checksums grammar, roles, redaction, time windows."""
