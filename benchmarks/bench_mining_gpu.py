"""GPU benchmark of the Triton kernels: fused mining in the forward pass vs a bare forward vs naive hooks,
streaming top-k bandwidth, batched correlation — ``neuronscope bench``'s GPU section
(``neuronscope.bench.gpu``: every timed call gets fresh token ids / activations at fresh positions).

    python benchmarks/bench_mining_gpu.py --quick          # a few minutes: fewer layers and repetitions
    python benchmarks/bench_mining_gpu.py --out benchmarks/results/mining_gpu.json
    TRITON_INTERPRET=1 python benchmarks/bench_mining_gpu.py --device cpu --shapes tiny   # dry run on CPU
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuronscope.bench.common import machine
from neuronscope.bench.gpu import SHAPES, bench_gpu


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/mining_gpu.json")
    ap.add_argument("--quick", action="store_true", help="fewer layers, repetitions and correlation rows")
    ap.add_argument("--layers", type=int, default=None, help="cap the layers of every model shape")
    ap.add_argument("--batch", type=int, default=16, help="sequences per packed batch")
    ap.add_argument("--seq", type=int, default=1024, help="tokens per sequence")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None, help="mining batches before timing")
    ap.add_argument("--shapes", default="llama-3.1-8b,gemma-2b", help=f"comma-separated, of {', '.join(SHAPES)}")
    ap.add_argument("--corr-size", default=None, help="E,T,M of the correlation benchmark")
    ap.add_argument("--device", default="cuda", help="cuda; 'cpu' only to dry-run under TRITON_INTERPRET=1")
    a = ap.parse_args(argv)
    corr = tuple(int(x) for x in a.corr_size.split(",")) if a.corr_size else None
    r = bench_gpu(quick=a.quick, device=a.device, shapes=tuple(a.shapes.split(",")), layers=a.layers, batch=a.batch,
                  seq=a.seq, reps=a.reps, warmup=a.warmup, corr_size=corr)  # type: ignore[arg-type]
    if "skipped" in r:
        raise SystemExit(f"bench_mining_gpu.py: {r['skipped']}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine(), "gpu": r}, indent=2) + "\n")
    for name, m in r["models"].items():
        print(f"[{name}] bare {m['bare_tokens_per_s']:,.0f} tok/s  fused {m['fused_tokens_per_s']:,.0f} tok/s "
              f"(+{100 * m['fused_overhead']:.1f}%)  naive {m['naive_tokens_per_s']:,.0f} tok/s  "
              f"fused {m['fused_speedup_vs_naive']:.1f}x naive")
    print(f"top-k {r['topk']['topk_tb_per_s']:.2f} TB/s, all stats {r['topk']['all_stats_tb_per_s']:.2f} TB/s, "
          f"torch.topk {r['topk']['torch_topk_tb_per_s']:.2f} TB/s; corr {r['corr']['bool_pairs_per_s']:.3g} pairs/s")
    print(f"targets: {r['targets']}\nwrote {out}")


if __name__ == "__main__":
    main()
