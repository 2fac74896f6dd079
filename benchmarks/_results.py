"""Writes a benchmark's result beside the machine, the command and the commit that produced it."""

from __future__ import annotations

import json
from pathlib import Path

from neuronscope.bench.common import machine

RESULTS = Path(__file__).parent / "results"


def write(name: str, result: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / name
    out.write_text(json.dumps({"machine": machine(), **result}, indent=2, default=float) + "\n")
    print(f"\n{name}: {json.dumps(result, default=float)[:600]}")
    return out
