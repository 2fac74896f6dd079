"""The README's first command as a user runs it: ``neuronscope run`` on the embedded default, timed per stage,
with the peak RSS of the whole process (the layer activation cache is sized from available memory).

    python benchmarks/bench_first_run.py [--out benchmarks/results/first_run_cpu.json] [-- extra run flags]

Runs in a fresh output directory (nothing reused), then reads the stage times from its ``run.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from neuronscope.bench.common import machine


def _scores(path: Path) -> dict:
    """Per method: neurons, mean held-out Score (undefined counts as 0), median number of modes."""
    import statistics

    by: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "explanation" in row:
            by.setdefault(row["method"], []).append(row)
    out = {}
    for m, rows in sorted(by.items()):
        scores = [r["heldout"].get("score") or 0.0 for r in rows]
        modes = [sum(md.get("kind", "mode") == "mode" for md in r["explanation"]["modes"]) for r in rows]
        out[m] = {"neurons": len(rows), "mean_heldout_score": round(statistics.fmean(scores), 4),
                  "median_modes": statistics.median(modes)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/first_run_cpu.json")
    ap.add_argument("extra", nargs="*", help="flags passed on to neuronscope run (after --)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="neuronscope-first-run-") as tmp:
        cmd = [sys.executable, "-m", "neuronscope", "run", "--out", str(Path(tmp) / "run"), *a.extra]
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t
        state = json.loads((Path(tmp) / "run" / "run.json").read_text())
        summary = _scores(Path(tmp) / "run" / "explanations.jsonl")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    result = {"machine": machine(), "run_command": "neuronscope run " + " ".join(a.extra),
              "wall_seconds": round(wall, 1), "peak_rss_mib": round(peak / 2**20, 1),
              "stages": {k: v.get("seconds") for k, v in state.get("stages", {}).items()},
              "summary": summary}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2)[:2000])


if __name__ == "__main__":
    main()
