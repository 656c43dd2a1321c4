#!/usr/bin/env bash
# Installs Ringward and its locked dependencies into ./.venv (uv is fetched into ./.tools if absent).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v uv >/dev/null 2>&1; then
  UV=uv
else
  if [ ! -x .tools/bin/uv ]; then
    python3 -m venv .tools
    .tools/bin/pip install --quiet --disable-pip-version-check "uv==0.13.8"
  fi
  UV=.tools/bin/uv
fi
# --compile-bytecode: dependencies are imported by every CLI call; compiling them once at install
# keeps a read-only command well under a second even where bytecode is never written at run time
"$UV" sync --frozen --quiet --compile-bytecode
# Ringward's own modules too: a CLI call then loads bytecode instead of compiling ~300 modules (about
# half a second per call where PYTHONDONTWRITEBYTECODE is set, as on CI); Python still recompiles any
# module whose source is newer than its cached bytecode.
.venv/bin/python -m compileall -q -j 0 ringward connectors tasks flows deployments >/dev/null
