"""``neuronscope bench``: every section present in valid JSON, baselines computing the same answers, fresh
inputs on every timed call, failures recorded without losing the other sections. Nothing here asserts a
speed: benchmarks report ratios, tests check behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from neuronscope import native
from neuronscope.bench import SECTIONS, run_bench, table
from neuronscope.bench.run import parse_size

needs_core = pytest.mark.skipif(not native.available(), reason="compiled core unavailable")


def test_quick_cli_writes_every_section(tmp_path):
    """The CI run of `neuronscope bench --quick`: exit 0, valid JSON, every section measured or skipped with
    a reason, and the figures a reader needs in each."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "neuronscope", "bench", "--quick", "--no-progress", "--out",
                           str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    for s in SECTIONS:
        assert s in r
        assert "error" not in r[s], (s, r[s])
    m = r["machine"]
    assert m["device"]
    assert "neuronscope bench --quick" in m["command"]
    assert "commit" in m
    assert m["cpus"] >= 1
    mm = r["mining"]["minilm"]
    assert mm["early"]["tokens"] + mm["steady"]["tokens"] == mm["whole"]["tokens"] == mm["tokens"] > 0
    assert mm["neurons_mined"] == 6 * 1536
    assert mm["early"]["ratio_to_bare"] > 0
    if native.available():
        assert r["miner"]["cpp"]["steady_ms"] > 0
        assert r["clustering"]["identical_partitions"] > 0
    assert r["scoring"]["extrapolated"] is False
    assert r["scoring"]["max_abs_r_diff"] < 1e-9
    pts = r["scaling"]["points"]
    assert [p["tokens"] for p in pts] == sorted(p["tokens"] for p in pts)
    assert len(pts) == 2
    # The store is a function of the neurons, not of the tokens; the token store grows with the tokens.
    assert pts[0]["store_bytes_without_tokens"] == pytest.approx(pts[1]["store_bytes_without_tokens"], rel=0.01)
    assert pts[1]["token_store_bytes"] > 3 * pts[0]["token_store_bytes"]
    ET.fromstring(out.with_name("bench_scaling.svg").read_text())  # a well-formed plot
    assert "mine minilm" in done.stdout
    assert "scaling" in done.stdout


def test_failing_section_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    import neuronscope.bench.cores as cores

    def boom(**_):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(cores, "bench_scoring", boom)
    out = tmp_path / "b.json"
    r = run_bench(out, quick=True, sections=("scoring", "gpu"), progress=False, log=lambda s: None)
    assert r["failed"] == ["scoring"]
    written = json.loads(out.read_text())
    assert "planted failure" in written["scoring"]["error"]
    assert "skipped" in written["gpu"] or "models" in written["gpu"]
    assert written["mining"] == {"skipped": "not requested"}
    assert "ERROR: RuntimeError: planted failure" in table(written)


def test_unknown_section_and_bad_sizes_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown section"):
        run_bench(tmp_path / "x.json", sections=("minning",))
    assert [parse_size(s) for s in ("65536", "64k", "1M", "1.5m")] == [65536, 64_000, 1_000_000, 1_500_000]
    for bad in ("", "abc", "-3", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)
    done = subprocess.run([sys.executable, "-m", "neuronscope", "bench", "--scaling-sizes", "1M,lots"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--scaling-sizes" in done.stderr
    assert "lots" in done.stderr


def test_mining_section_runs_mine_itself(tmp_path, monkeypatch):
    """The mining figure comes from `mining.run.mine` (not a copy of its loop), over a prefix and the whole."""
    import neuronscope.mining.run as run
    from neuronscope.bench.mining import bench_mining

    calls = []
    real = run.mine

    def spy(*a, **k):
        calls.append(k["max_tokens"])
        return real(*a, **k)

    monkeypatch.setattr(run, "mine", spy)
    r = bench_mining("minilm", tmp_path / "w", tokens=4096, early_tokens=1024, batch_tokens=1024, progress=False)
    assert calls == [1024, 4096]
    assert r["early"]["tokens"] == 1024
    assert r["whole"]["tokens"] == 4096
    assert r["backend"] in ("cpu", "ref")
    assert not (tmp_path / "w").exists()  # scratch stores are removed


@needs_core
def test_miner_section_draws_fresh_batches(monkeypatch):
    """Every timed batch is new: distinct values and positions that continue the corpus."""
    import neuronscope.mining.cpu as cpu
    from neuronscope.bench.cores import bench_miner

    seen = []
    real = cpu.mine_cpu

    def spy(st, acts, pos, off, cfg, threads=None):
        seen.append((float(acts[0, 0]), int(pos[0]), int(pos[-1])))
        return real(st, acts, pos, off, cfg, threads=threads)

    monkeypatch.setattr(cpu, "mine_cpu", spy)
    r = bench_miner(tokens=256, neurons=64, batches=3, warmup=2, progress=False)
    assert len(seen) == 5
    assert len({v for v, _, _ in seen}) == 5
    assert [p0 for _, p0, _ in seen] == [0, 256, 512, 768, 1024]
    assert seen[-1][2] == 5 * 256 - 1
    assert r["cpp"]["steady_ms"] > 0
    assert r["reference"]["steady_ms"] > 0


def test_gpu_forward_sees_fresh_ids_and_positions(monkeypatch):
    """The GPU benchmark feeds every forward a new batch (ids and positions): checked on the tiny shape with
    the timing function instrumented (the kernels themselves need CUDA or the Triton interpreter)."""
    import neuronscope.bench.gpu as gpu

    inputs = []

    def record(fn, xs):
        inputs.extend(xs)
        return 1.0

    monkeypatch.setattr(gpu, "timed_fresh", record)

    class NoFused:
        def __init__(self, *a, **k):
            self.modes = {0: "hook"}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def set_batch(self, index, positions):
            pass

    import neuronscope.models.fused as fused
    from neuronscope.mining import MiningConfig

    monkeypatch.setattr(fused, "fused_mining", NoFused)
    r = gpu.bench_forward("tiny", layers=None, batch=2, seq=8, reps=3, warmup=2, device="cpu", cfg=MiningConfig())
    ids = [tuple(x[0].flatten().tolist()) for x in inputs]
    pos = [int(x[1][0]) for x in inputs]
    assert len(set(ids)) == len(ids) == 4 * 4
    assert len(set(pos)) == len(pos)
    assert r["tokens_per_batch"] == 16


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1", reason="the Triton interpreter is not enabled")
def test_gpu_section_dry_runs_on_the_interpreter():
    pytest.importorskip("triton")
    from neuronscope.bench.gpu import bench_gpu

    r = bench_gpu(quick=True, device="cpu", shapes=("tiny",), batch=4, seq=32, reps=1, warmup=1,
                  corr_size=(8, 256, 2), progress=False)
    assert r["models"]["tiny"]["fused_tokens_per_s"] > 0
    assert r["topk"]["topk_tb_per_s"] > 0
    assert set(r["targets"]) == {"fused_overhead_le_3pct", "fused_5x_faster_than_naive", "topk_ge_2_tb_per_s",
                                 "corr_ge_1e9_pairs_per_s"}


def test_scaling_plot_is_valid_svg():
    from neuronscope.bench.plot import scaling_svg

    pts = [{"tokens": n, "mined_tokens_per_s": 1000.0 + n / 1e4, "peak_rss_mib": 900.0} for n in (10**6, 4 * 10**6)]
    svg = scaling_svg({"subject": "a <test>", "points": pts})
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "a &lt;test&gt;" in svg
    assert svg.count("<circle") == 4


def test_write_corpus_gives_enough_fresh_tokens(tmp_path, minilm):
    from neuronscope.bench.scaling import write_corpus

    path = tmp_path / "c.jsonl"
    write_corpus(path, 5000)
    docs = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    n = sum(len(minilm.tokenizer(d, add_special_tokens=False)["input_ids"]) for d in docs)
    assert n >= 5000
    write_corpus(tmp_path / "d.jsonl", 5000, seed=1)
    assert (tmp_path / "d.jsonl").read_text() != path.read_text()


def test_benchmarks_dir_reuses_the_package(tmp_path):
    """The pytest-benchmark files call the same functions as `neuronscope bench` (no private copies)."""
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    for name in ("bench_mining.py", "bench_mine_cpu.py", "bench_scoring.py", "bench_cluster.py",
                 "bench_mining_gpu.py"):
        assert "neuronscope.bench" in (root / name).read_text(), name
