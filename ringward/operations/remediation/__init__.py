"""Remediation operations (request, execute, handoff, status); no Prefect here."""
