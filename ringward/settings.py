"""Where Ringward keeps its state. Every location can be overridden by environment variable."""

from __future__ import annotations

import os
from pathlib import Path


def ringward_home() -> Path:
    """State directory: ``$RINGWARD_HOME`` or ``./.ringward``."""
    return Path(os.environ.get("RINGWARD_HOME") or Path.cwd() / ".ringward")


def database_url() -> str:
    """``$RINGWARD_DATABASE_URL`` or a SQLite file in the state directory."""
    url = os.environ.get("RINGWARD_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{ringward_home() / 'ringward.db'}"


def evidence_root() -> Path:
    """Root of evidence bundles: ``$RINGWARD_EVIDENCE_ROOT`` or ``<home>/evidence``."""
    value = os.environ.get("RINGWARD_EVIDENCE_ROOT")
    return Path(value) if value else ringward_home() / "evidence"
