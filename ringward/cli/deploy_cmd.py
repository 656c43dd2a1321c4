"""`ringward deploy`: see ``ringward/cli/worker_cmd.py`` (one module for the multi-host commands)."""

from __future__ import annotations

from ringward.cli.worker_cmd import deploy_app as app

__all__ = ["app"]
