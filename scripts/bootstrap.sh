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
"$UV" sync --frozen --quiet
