"""``neuronscope bench``: every benchmark section on this machine, a printed table and one JSON file.

Sections: ``mining`` (``mine()`` vs a bare forward, per model, early and steady phases), ``miner`` (C++ vs
the reference), ``scoring`` (batched vs a numpy loop), ``clustering`` (batched vs a scipy loop), ``gpu``
(fused vs bare vs naive, top-k bandwidth, correlation; skipped without CUDA) and ``scaling`` (the corpus-size
curve). The JSON is rewritten after every section, so an interrupted or failing run keeps what it measured;
a section that fails is recorded as ``{"error": ...}`` and the others still run.
"""

from __future__ import annotations

import json
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import machine

SECTIONS = ("mining", "miner", "scoring", "clustering", "gpu", "scaling")

# Sizes per mode: --quick is for CI and a first look (about a minute on 2 cores); the default takes a few
# minutes; the full scaling curve is asked for with --scaling-sizes 1M,4M,16M.
SIZES = {
    "quick": dict(mining_tokens=16384, mining_early=8192, mining_repeats=1, decoder_tokens=8192, decoder_early=4096,
                  miner_batches=4, miner_warmup=2, scoring_candidates=2000, scoring_tokens=200_000,
                  cluster_problems=200, cluster_points=128, scaling_sizes=[16384, 65536]),
    "default": dict(mining_tokens=131072, mining_early=16384, mining_repeats=2, decoder_tokens=32768,
                    decoder_early=8192,
                    miner_batches=12, miner_warmup=4, scoring_candidates=2000, scoring_tokens=1_000_000,
                    cluster_problems=2000, cluster_points=256, scaling_sizes=[131072, 524288, 2097152]),
}


def default_models(quick: bool) -> list[str]:
    """MiniLM always; without --quick also SmolLM2-135M, the smallest real decoder, when its weights are installed
    (the larger packaged decoders, gemma3-270m and qwen2.5-0.5b, are one ``--model`` away)."""
    if quick:
        return ["minilm"]
    from ..models.packaged import installed

    return ["minilm", *(["smollm2-135m"] if installed("smollm2-135m") else [])]


def parse_size(text: str) -> int:
    """A token count as written on the command line: ``65536``, ``64k`` (64,000) or ``1M`` (1,000,000)."""
    t = text.strip().lower()
    mult = {"k": 10**3, "m": 10**6, "g": 10**9}.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in ("k", "m", "g") else t
    try:
        value = int(float(num) * mult)
    except ValueError:
        raise ValueError(f"not a token count: {text!r} (e.g. 65536, 64k, 1M)") from None
    if value < 1:
        raise ValueError(f"token count must be positive: {text!r}")
    return value


def run_bench(out: str | Path, *, quick: bool = False, sections: tuple[str, ...] = SECTIONS,
              models: list[str] | None = None, scaling_sizes: list[int] | None = None,
              scaling_model: str = "random-llama", workdir: Path | None = None,
              progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs ``sections`` and writes ``out`` (JSON) after each; returns the result dict.

    Every section in :data:`SECTIONS` is present in the result: measured, ``{"skipped": why}`` when it
    cannot run here or was not asked for, or ``{"error": message}`` when it failed.
    """
    from .cores import bench_cluster, bench_miner, bench_scoring
    from .gpu import bench_gpu
    from .mining import bench_mining
    from .scaling import bench_scaling

    out = Path(out)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    size = SIZES["quick" if quick else "default"]
    models = models or default_models(quick)
    result: dict[str, Any] = {"format": 1, "quick": quick, "machine": machine(), "sizes": size,
                              "seconds": {}, **{s: {"skipped": "not requested"} for s in SECTIONS}}
    tmp = tempfile.TemporaryDirectory(prefix="neuronscope-bench-") if workdir is None else None
    work = Path(tmp.name) if tmp is not None else Path(workdir)  # type: ignore[arg-type]

    def mining() -> dict:
        per = {}
        for m in models:
            dec = m != "minilm"
            per[m] = bench_mining(m, work / f"mining_{m}", tokens=size["decoder_tokens" if dec else "mining_tokens"],
                                  early_tokens=size["decoder_early" if dec else "mining_early"],
                                  repeats=size["mining_repeats"], progress=progress)
        return per

    jobs: dict[str, Callable[[], dict]] = {
        "mining": mining,
        "miner": lambda: bench_miner(batches=size["miner_batches"], warmup=size["miner_warmup"], progress=progress),
        "scoring": lambda: bench_scoring(candidates=size["scoring_candidates"], tokens=size["scoring_tokens"],
                                         progress=progress),
        "clustering": lambda: bench_cluster(problems=size["cluster_problems"], points=size["cluster_points"],
                                            progress=progress),
        "gpu": lambda: bench_gpu(quick=quick, progress=progress),
        "scaling": lambda: bench_scaling(work / "scaling", scaling_sizes or size["scaling_sizes"],
                                         model=scaling_model, progress=progress),
    }
    failed = []
    try:
        for name in SECTIONS:
            if name not in sections:
                continue
            log(f"[bench] {name} ...")
            t = time.perf_counter()
            try:
                result[name] = jobs[name]()
            except KeyboardInterrupt:
                result[name] = {"error": "interrupted"}
                raise
            except Exception as e:  # one failing section must not lose the others
                result[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)}
                failed.append(name)
            result["seconds"][name] = round(time.perf_counter() - t, 1)
            _write(out, result)
            if name == "scaling" and "points" in result[name]:
                from .plot import scaling_svg

                out.with_name(out.stem + "_scaling.svg").write_text(scaling_svg(result[name]))
    finally:
        _write(out, result)
        if tmp is not None:
            tmp.cleanup()
    result["failed"] = failed
    return result


def _write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float) + "\n")
    tmp.replace(out)


def _f(v: Any, spec: str = ",.0f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def table(result: dict) -> str:
    """The human summary of a result: one line per measured figure, with its baseline and the ratio."""
    rows: list[tuple[str, str, str, str]] = []
    for m, r in (result.get("mining") or {}).items():
        if not isinstance(r, dict) or "steady" not in r:
            continue
        for phase in ("early", "steady"):
            p = r[phase]
            rows.append((f"mine {m} ({r['neurons_mined']:,} neurons), {phase}",
                         f"{_f(p['mined_tokens_per_s'])} tok/s", f"bare {_f(p['bare_tokens_per_s'])} tok/s",
                         f"{_f(p['ratio_to_bare'], '.2f')}"))
    mi = result.get("miner", {})
    if "cpp" in mi:
        rows.append((f"C++ miner, {mi['tokens_per_batch']} tok × {mi['neurons']} neurons, steady",
                     f"{_f(mi['cpp']['steady_ms'], '.1f')} ms/batch",
                     f"reference {_f(mi['reference']['steady_ms'], '.1f')} ms", f"{mi['speedup_steady']:.1f}×"))
    sc = result.get("scoring", {})
    if "speedup" in sc:
        rows.append((f"scoring {sc['candidates']:,} candidates × {sc['tokens']:,} tokens",
                     f"{sc['batched_pairs_per_s']:.3g} pairs/s", f"numpy loop {sc['loop_pairs_per_s']:.3g}",
                     f"{sc['speedup']:.0f}×"))
    cl = result.get("clustering", {})
    if "speedup" in cl:
        rows.append((f"average linkage, {cl['problems']:,} × {cl['points']} points × {cl['dim']}",
                     f"{_f(cl['core_problems_per_s'])} problems/s", f"scipy {_f(cl['scipy_problems_per_s'])}",
                     f"{cl['speedup']:.1f}×"))
    for name, g in (result.get("gpu", {}).get("models") or {}).items():
        rows.append((f"GPU {name}: fused mining", f"{_f(g['fused_tokens_per_s'])} tok/s",
                     f"bare {_f(g['bare_tokens_per_s'])}, naive {_f(g['naive_tokens_per_s'])}",
                     f"+{100 * g['fused_overhead']:.1f}%, {g['fused_speedup_vs_naive']:.1f}× naive"))
    for p in (result.get("scaling", {}).get("points") or []):
        rows.append((f"scaling {p['tokens']:,} tokens", f"{_f(p['mined_tokens_per_s'])} tok/s",
                     f"peak RSS {_f(p['peak_rss_mib'])} MiB",
                     f"store {p['store_bytes_without_tokens'] / 2**20:.1f} MiB, neuron() {p['neuron_record_ms']} ms"))
    lines = []
    if rows:
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        lines += ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    for s in SECTIONS:
        v = result.get(s, {})
        if isinstance(v, dict) and ("skipped" in v or "error" in v):
            lines.append(f"{s}: {'skipped: ' + v['skipped'] if 'skipped' in v else 'ERROR: ' + v['error']}")
    return "\n".join(lines)
