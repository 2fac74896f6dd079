#!/usr/bin/env bash
# Installs neuronscope (editable, with the compiled core) into the current Python.
# Keeps an already installed torch; otherwise installs the CPU build (no multi-GB CUDA download).
# Usage: bash scripts/install.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q torch==2.13.0 \
    || "$PY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
extras=""
if [[ "${1:-}" == "--test" ]]; then
  extras="[test]"
  # The HTML report's browser tests drive Debian's chromium through Playwright (whose own browser
  # download needs a CDN); install it when we can, and let the tests say so when we could not.
  if ! command -v chromium >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
          || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; } >/dev/null 2>&1 \
        || echo "warning: could not install chromium; the report's browser tests will be skipped" >&2
    else
      echo "warning: chromium is missing (apt-get install chromium); the report's browser tests will be skipped" >&2
    fi
  fi
fi
# Build tools first so the editable build can run without isolation (fast rebuilds, same torch).
"$PY" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12" ninja cmake
"$PY" -m pip install -q --no-build-isolation -e ".${extras}"
