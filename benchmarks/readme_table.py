"""Prints the README's benchmark table from the JSON files under benchmarks/results/ (nothing typed by hand).

    python benchmarks/readme_table.py [--bench benchmarks/results/bench_cpu.json]
                                      [--scaling benchmarks/results/scaling_cpu.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def rows(bench: dict, scaling: dict | None) -> list[tuple[str, str, str]]:
    out = []
    for m, r in bench.get("mining", {}).items():
        if "steady" not in r:
            continue
        e, s = r["early"], r["steady"]
        out.append((f"mining {m}, all {r['layers']} layers ({r['neurons_mined']:,} neurons), `mine()` vs bare "
                    f"forward, {r['tokens']:,} fresh tokens",
                    f"early ({e['tokens']:,} tok): {e['mined_tokens_per_s']:,.0f} vs {e['bare_tokens_per_s']:,.0f} "
                    f"tok/s, **{e['ratio_to_bare']:.2f}**; steady: {s['mined_tokens_per_s']:,.0f} vs "
                    f"{s['bare_tokens_per_s']:,.0f} tok/s, **{s['ratio_to_bare']:.2f}**", "bench_cpu.json `mining`"))
    mi = bench.get("miner", {})
    if "cpp" in mi:
        out.append((f"C++ miner vs PyTorch reference, fresh {mi['tokens_per_batch']} tokens × {mi['neurons']} neurons "
                    f"per batch", f"steady {mi['cpp']['steady_ms']:.1f} vs {mi['reference']['steady_ms']:.0f} ms/batch "
                    f"(**{mi['speedup_steady']:.1f}×**); first batch {mi['cpp']['first_batch_ms']:.0f} vs "
                    f"{mi['reference']['first_batch_ms']:.0f} ms ({mi['speedup_first_batch']:.1f}×)",
                    "bench_cpu.json `miner`"))
    sc = bench.get("scoring", {})
    if "speedup" in sc:
        out.append((f"scoring {sc['candidates']:,} conditions × {sc['tokens']:,} tokens vs a numpy loop over "
                    "every candidate", f"{sc['batched_seconds']:.2f} vs {sc['loop_seconds']:.1f} s "
                    f"(**{sc['speedup']:.0f}×**, {sc['batched_pairs_per_s']:.2g} pairs/s), same r to "
                    f"{sc['max_abs_r_diff']:.0e}", "bench_cpu.json `scoring`"))
    cl = bench.get("clustering", {})
    if "speedup" in cl:
        out.append((f"average linkage, {cl['problems']:,} problems × {cl['points']} points × {cl['dim']} dims vs a "
                    "scipy loop over every problem", f"{cl['core_seconds']:.2f} vs {cl['scipy_seconds']:.1f} s "
                    f"(**{cl['speedup']:.1f}×**); {cl['identical_partitions']:,}/{cl['problems']:,} partitions "
                    "identical", "bench_cpu.json `clustering`"))
    km = json.loads((RESULTS / "cluster.json").read_text()) if (RESULTS / "cluster.json").exists() else {}
    if "faiss_speedup_vs_core" in km and isinstance(km.get("machine"), dict):
        out.append((f"k-means, one problem of {km['kmeans_points']:,} × 384, k = 16: faiss vs the C++ core",
                    f"{km['kmeans_faiss_seconds']:.2f} vs {km['kmeans_core_seconds']:.2f} s "
                    f"({km['faiss_speedup_vs_core']:.1f}×), inertia {100 * (km['faiss_inertia_ratio'] - 1):+.1f}%",
                    "cluster.json (`benchmarks/bench_cluster.py`)"))
    if scaling and "points" in scaling:
        pts = scaling["points"]
        g = scaling["growth_first_to_last"]
        out.append((f"scaling, {scaling['subject']}: " + ", ".join(f"{p['tokens'] / 1e6:g}M" for p in pts) + " tokens",
                    "tok/s " + " / ".join(f"{p['mined_tokens_per_s']:,.0f}" for p in pts)
                    + "; peak RSS " + " / ".join(f"{p['peak_rss_mib']:,.0f}" for p in pts) + " MiB; store "
                    + " / ".join(f"{p['store_bytes_without_tokens'] / 2**20:.1f}" for p in pts)
                    + " MiB (tokens ×" + f"{g['tokens']:g}, store ×{g['store_bytes_without_tokens']:g}); "
                    "`store.neuron()` " + " / ".join(f"{p['neuron_record_ms']:.1f}" for p in pts) + " ms",
                    "scaling_cpu.json"))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", default=str(RESULTS / "bench_cpu.json"))
    ap.add_argument("--scaling", default=str(RESULTS / "scaling_cpu.json"))
    a = ap.parse_args(argv)
    bench = json.loads(Path(a.bench).read_text())
    scaling_path = Path(a.scaling)
    scaling = json.loads(scaling_path.read_text()).get("scaling") if scaling_path.exists() else None
    m = bench["machine"]
    commit = m["commit"] or "?"
    short = commit[:7] + ("+dirty" if commit.endswith("+dirty") else "")
    print(f"Measured on {m['device']}, commit `{short}`, `{m['command']}`:\n")
    print("| benchmark | result | JSON |\n|---|---|---|")
    for name, result, src in rows(bench, scaling):
        print(f"| {name} | {result} | {src} |")


if __name__ == "__main__":
    main()
