#!/usr/bin/env bash
# Installs neuronscope with its test dependencies, then runs the whole CPU test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export TRITON_INTERPRET=1
python3 -m pytest -q "$@"
