"""GPU benchmark of the Triton kernels: fused mining in the forward pass, streaming top-k, batched correlation.

    python benchmarks/bench_mining_gpu.py --quick          # a few minutes: fewer layers and repetitions
    python benchmarks/bench_mining_gpu.py --out benchmarks/results/mining_gpu.json

Models are built from a config with random bf16 weights (timing does not depend on training): a
Llama-3.1-8B shape (hidden 4096, MLP 14336, 32 layers) and a Gemma-2B shape (hidden 2048, MLP 16384,
18 layers, GELU-tanh). Every batch is packed: ``--batch`` sequences of ``--seq`` tokens (16,384 by
default), all layers and all neurons mined. Three ways to run a batch are timed in the same process:

* ``bare``: the forward pass alone;
* ``fused``: ``models.fused.fused_mining`` (all statistics: top-k, moments, min/max, histogram, samples);
* ``naive``: a down-projection pre-hook keeping a running top-k with ``torch.cat`` + ``torch.topk``.

Mining runs in steady state: ``--warmup`` batches at fresh positions first, so the thresholds are set,
as after the first batches of a corpus. Then, standalone: effective read bandwidth of the streaming top-k
(``mine_topk``) and of all statistics (``mine_stats``) on a (tokens, MLP width) bf16 tensor, against
``torch.topk``; correlation throughput in (candidate, token) pairs per second. Budgets (DESIGN.md):
fused <= 3% over bare on an H100, >= 5x faster than naive, top-k >= 2 TB/s, corr >= 1e9 pairs/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

SHAPES = {
    "llama-3.1-8b": dict(arch="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
    "gemma-2b": dict(arch="gemma", hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
                     num_attention_heads=8, num_key_value_heads=1, head_dim=256, vocab_size=256000),
}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], reps: int) -> float:
    """Median seconds of ``fn`` over ``reps`` calls after one untimed call, synchronised inside."""
    fn()
    _sync()
    times = []
    for _ in range(reps):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def build_subject(name: str, layers: int | None, device: str):
    """A random bf16 model of the named shape, wrapped as a Subject (no tokenizer needed)."""
    from transformers import GemmaConfig, LlamaConfig

    from neuronscope.models import wrap_subject

    spec = dict(SHAPES[name])
    arch = spec.pop("arch")
    if layers:
        spec["num_hidden_layers"] = min(layers, spec["num_hidden_layers"])
    config = (LlamaConfig if arch == "llama" else GemmaConfig)(**spec, max_position_embeddings=8192)
    config._attn_implementation = "sdpa"
    from transformers import AutoModel

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # initialise directly in bf16, on the GPU
    try:
        with torch.device(device):
            model = AutoModel.from_config(config).to(torch.bfloat16)
    finally:
        torch.set_default_dtype(default)
    return wrap_subject(model, None, model_id=f"random-{name}", device=device), spec


class NaiveTopK:
    """The baseline: every layer's acts concatenated to a running (K, N) buffer, then ``torch.topk``."""

    def __init__(self, layers: list[int], n: int, k: int, device: str) -> None:
        self.k = k
        self.values = {layer: torch.full((k, n), -torch.inf, device=device) for layer in layers}
        self.positions = {layer: torch.full((k, n), -1, dtype=torch.int64, device=device) for layer in layers}
        self.batch_positions: torch.Tensor | None = None

    def __call__(self, layer: int, acts: torch.Tensor) -> None:
        flat = acts.reshape(-1, acts.shape[-1])
        vals = torch.cat([self.values[layer], flat.float()])
        pos = torch.cat([self.positions[layer], self.batch_positions[:, None].expand(-1, flat.shape[1])])
        top = torch.topk(vals, self.k, dim=0)
        self.values[layer] = top.values
        self.positions[layer] = torch.gather(pos, 0, top.indices)


def bench_forward(name: str, args, cfg) -> dict:
    from neuronscope.mining import LayerStats
    from neuronscope.models.fused import fused_mining
    from neuronscope.models.hooks import neuron_hooks

    dev = args.device
    subject, spec = build_subject(name, args.layers_8b if name.startswith("llama") else args.layers_small, dev)
    n, layers = subject.n_neurons, list(range(subject.n_layers))
    tokens = args.batch * args.seq
    gen = torch.Generator(device=dev).manual_seed(0)
    ids = torch.randint(0, spec["vocab_size"], (args.batch, args.seq), device=dev, generator=gen)
    index = torch.arange(tokens, device=dev)
    step = [0]

    def positions() -> torch.Tensor:  # a fresh stretch of the corpus on every call
        step[0] += 1
        return index + step[0] * tokens

    def bare() -> None:
        subject.model(input_ids=ids, use_cache=False)

    stats = {layer: LayerStats.empty(n, cfg, device=dev) for layer in layers}
    naive = NaiveTopK(layers, n, cfg.k, dev)
    out = {"shape": {**spec, "num_hidden_layers": subject.n_layers}, "tokens_per_batch": tokens,
           "batch": args.batch, "seq": args.seq}
    with torch.inference_mode():
        bare_s = timed(bare, args.reps)
        with fused_mining(subject, layers, stats, cfg, backend="triton") as fm:
            def fused() -> None:
                fm.set_batch(index, positions())
                subject.model(input_ids=ids, use_cache=False)

            for _ in range(args.warmup):
                fused()
            fused_s = timed(fused, args.reps)
        out["fused_modes"] = sorted(set(fm.modes.values()))
        with neuron_hooks(subject, layers, naive):
            def naive_run() -> None:
                naive.batch_positions = positions()
                subject.model(input_ids=ids, use_cache=False)

            for _ in range(args.warmup):
                naive_run()
            naive_s = timed(naive_run, args.reps)
        bare_s = min(bare_s, timed(bare, args.reps))  # again after the others: clocks and caches settled
    out.update(
        bare_tokens_per_s=tokens / bare_s, fused_tokens_per_s=tokens / fused_s, naive_tokens_per_s=tokens / naive_s,
        fused_overhead=fused_s / bare_s - 1, naive_overhead=naive_s / bare_s - 1,
        fused_speedup_vs_naive=naive_s / fused_s,
        mining_cost_ratio_naive_over_fused=(naive_s - bare_s) / max(fused_s - bare_s, 1e-9),
    )
    return out


def bench_topk(args, cfg) -> dict:
    from neuronscope.kernels.mine import mine_stats, mine_topk

    from neuronscope.mining import LayerStats

    dev = args.device
    t, n = args.batch * args.seq, SHAPES["llama-3.1-8b"]["intermediate_size"]
    gen = torch.Generator(device=dev).manual_seed(1)
    batches = [torch.randn(t, n, device=dev, generator=gen, dtype=torch.bfloat16) for _ in range(3)]
    nbytes = batches[0].numel() * batches[0].element_size()
    out: dict = {"tokens": t, "neurons": n, "dtype": "bfloat16", "bytes_per_call": nbytes}
    for label, fn in (("topk", mine_topk), ("all_stats", mine_stats)):
        st = LayerStats.empty(n, cfg, device=dev)
        step = [0]

        def call(fn=fn, st=st, step=step) -> None:
            step[0] += 1
            pos = torch.arange(t, device=dev) + step[0] * t
            acts = batches[step[0] % len(batches)]
            if fn is mine_topk:
                fn(st, acts, pos, cfg)
            else:
                fn(st, acts, pos, 0, cfg)

        for _ in range(args.warmup):
            call()
        s = timed(call, args.reps)
        out[f"{label}_tb_per_s"] = nbytes / s / 1e12
    s = timed(lambda: torch.topk(batches[0], cfg.k, dim=0), args.reps)
    out["torch_topk_tb_per_s"] = nbytes / s / 1e12
    return out


def bench_corr(args) -> dict:
    from neuronscope.kernels.corr import corr_ref, corr_triton

    dev = args.device
    e, t, m = args.corr_e, args.corr_t, args.corr_m
    gen = torch.Generator(device=dev).manual_seed(2)
    true = torch.randn(t, device=dev, generator=gen).exp()
    out: dict = {"candidates": e, "tokens": t}
    # Built without float32 temporaries: E x T is gigabytes.
    for label, pred in (("bool", torch.randint(0, 10, (e, t), device=dev, generator=gen, dtype=torch.uint8) == 0),
                        ("float16", torch.rand(e, t, device=dev, generator=gen, dtype=torch.float16) * 10)):
        s = timed(lambda pred=pred: corr_triton(pred, true), args.reps)
        out[f"{label}_pairs_per_s"] = e * t / s
        s_ref = timed(lambda pred=pred: corr_ref(pred, true), max(1, args.reps // 2))
        out[f"{label}_ref_pairs_per_s"] = e * t / s_ref
    em, tm = max(1, e // 4), max(1, t // 4)
    pred = torch.randint(0, 10, (em, tm), device=dev, generator=gen, dtype=torch.uint8) == 0
    trues = torch.randn(m, tm, device=dev, generator=gen).exp()
    s = timed(lambda: corr_triton(pred, trues), args.reps)
    out["block"] = {"candidates": em, "neurons": m, "tokens": tm, "triples_per_s": em * m * tm / s,
                    "pairs_per_s": em * tm / s}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="benchmarks/results/mining_gpu.json")
    ap.add_argument("--quick", action="store_true", help="fewer layers, repetitions and correlation rows")
    ap.add_argument("--layers", type=int, default=None, help="cap the layers of both model shapes")
    ap.add_argument("--batch", type=int, default=16, help="sequences per packed batch")
    ap.add_argument("--seq", type=int, default=1024, help="tokens per sequence")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None, help="mining batches before timing")
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    ap.add_argument("--corr-size", default=None, help="E,T,M of the correlation benchmark")
    ap.add_argument("--device", default="cuda", help="cuda; 'cpu' only to dry-run the script under TRITON_INTERPRET=1")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_mining_gpu.py needs a CUDA device")
    args.layers_8b = args.layers or (4 if args.quick else None)
    args.layers_small = args.layers or (3 if args.quick else None)
    args.reps = args.reps or (3 if args.quick else 10)
    args.warmup = args.warmup or (3 if args.quick else 5)
    args.corr_e, args.corr_t, args.corr_m = (
        tuple(int(x) for x in args.corr_size.split(",")) if args.corr_size
        else (1024, 1 << 18, 64) if args.quick else (4096, 1 << 20, 256))

    import transformers
    import triton

    from neuronscope.mining import MiningConfig

    cfg = MiningConfig()
    result: dict = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({platform.machine()})",
        "host": platform.node(), "torch": torch.__version__,
        "triton": triton.__version__, "transformers": transformers.__version__, "quick": args.quick,
        "mining_config": cfg.to_dict(), "warmup_batches": args.warmup, "reps": args.reps, "models": {},
    }
    for name in args.shapes.split(","):
        print(f"[{name}] forward: bare / fused / naive ...", flush=True)
        result["models"][name] = r = bench_forward(name, args, cfg)
        torch.cuda.empty_cache()  # the model is gone with bench_forward's frame
        print(f"  bare {r['bare_tokens_per_s']:,.0f} tok/s  fused {r['fused_tokens_per_s']:,.0f} tok/s "
              f"(+{100 * r['fused_overhead']:.1f}%)  naive {r['naive_tokens_per_s']:,.0f} tok/s "
              f"(+{100 * r['naive_overhead']:.1f}%)  fused {r['fused_speedup_vs_naive']:.1f}x naive", flush=True)
    print("standalone top-k bandwidth ...", flush=True)
    result["topk"] = r = bench_topk(args, cfg)
    torch.cuda.empty_cache()
    print(f"  mine_topk {r['topk_tb_per_s']:.2f} TB/s  mine_stats {r['all_stats_tb_per_s']:.2f} TB/s  "
          f"torch.topk {r['torch_topk_tb_per_s']:.2f} TB/s", flush=True)
    print("correlation throughput ...", flush=True)
    result["corr"] = r = bench_corr(args)
    print(f"  bool {r['bool_pairs_per_s']:.3g} pairs/s (ref {r['bool_ref_pairs_per_s']:.3g})  "
          f"E x M {r['block']['triples_per_s']:.3g} triples/s", flush=True)
    big = result["models"].get("llama-3.1-8b")
    result["targets"] = {
        "fused_overhead_le_3pct": None if big is None else big["fused_overhead"] <= 0.03,
        "fused_5x_faster_than_naive": None if big is None else big["fused_speedup_vs_naive"] >= 5,
        "topk_ge_2_tb_per_s": result["topk"]["topk_tb_per_s"] >= 2.0,
        "corr_ge_1e9_pairs_per_s": result["corr"]["bool_pairs_per_s"] >= 1e9,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
