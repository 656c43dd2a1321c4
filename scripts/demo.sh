#!/usr/bin/env bash
# Install, then run the end-to-end demo (build sample binaries, package + sign, verify, record evidence; verify a
# reference-format (CAVRA) package under the pinned trust root with --profile reference and auto-detection; promote,
# roll out and roll back; a KEV match holding the channels until a VEX releases them, a fleet with drift, and a
# breached remediation SLA escalating to release governance until acknowledged; a signed evidence checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/ringward demo "$@"
