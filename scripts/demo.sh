#!/usr/bin/env bash
# Install, then run the end-to-end demo (build sample binaries, package + sign, verify, record evidence).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/ringward demo "$@"
