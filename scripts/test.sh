#!/usr/bin/env bash
# Installs neuronscope with its test dependencies, then runs the whole CPU test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export TRITON_INTERPRET=1
# With a browser installed, the report's browser tests must run: fail rather than skip.
if command -v chromium >/dev/null; then export NEURONSCOPE_REQUIRE_BROWSER=1; fi
export NEURONSCOPE_REQUIRE_TRITON=1  # triton is a test dependency: its kernel tests must run, not skip
python3 -m pytest -q "$@"
