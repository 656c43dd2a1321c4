#!/usr/bin/env bash
# Install, then run every check CI runs: ruff, mypy (strict on ringward/core), import layers, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports
exec .venv/bin/python -m pytest "$@"
