"""The C++ CPU miner against the PyTorch reference (exact), the brute-force oracle, and bad inputs."""

from __future__ import annotations

import threading
from dataclasses import fields

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from neuronscope import native
from neuronscope.errors import ConfigError
from neuronscope.mining import LayerStats, MiningConfig, bin_strata, hist_edges, mine_ref
from neuronscope.mining.cpu import mine_cpu
from oracle import assert_matches, brute_force

if not native.available():
    pytest.skip(native.unavailable_reason(), allow_module_level=True)
_core = native.core()

CFG = MiningConfig(k=7, bottom_k=5, samples_per_stratum=3, seed=11)


def assert_same(got: LayerStats, want: LayerStats, moments_rtol: float = 1e-9) -> None:
    """Every field identical (NaN-free by construction); mean/M2 within ``moments_rtol``."""
    for f in fields(want):
        g, w = getattr(got, f.name), getattr(want, f.name)
        assert g.shape == w.shape, (f.name, g.shape, w.shape)
        assert g.dtype == w.dtype, (f.name, g.dtype, w.dtype)
        if f.name in ("mean", "m2"):
            ok = torch.isclose(g, w, rtol=moments_rtol, atol=moments_rtol)
        else:
            ok = g == w
        if not bool(ok.all()):
            bad = (~ok).nonzero()[:5].tolist()
            first = tuple(bad[0])
            raise AssertionError(f"{f.name}: first mismatches at {bad}: got {g[first]} want {w[first]}")


def run_both(batches, cfg: MiningConfig, offset: int = 0, threads: int = 2) -> tuple[LayerStats, LayerStats]:
    """Streams ``[(acts, positions), ...]`` through the reference and the C++ miner."""
    n = batches[0][0].shape[1]
    ref, cpu = LayerStats.empty(n, cfg), LayerStats.empty(n, cfg)
    for acts, pos in batches:
        mine_ref(ref, acts, pos, offset, cfg)
        assert mine_cpu(cpu, acts, pos, offset, cfg, threads=threads) is cpu
    return ref, cpu


def random_batches(gen: torch.Generator, n_batches: int, t: int, n: int, kind: str) -> list:
    """Batches of ``kind`` data at increasing (not contiguous) positions."""
    edges = hist_edges(CFG)
    out = []
    for i in range(n_batches):
        if kind == "normal":
            acts = torch.randn(t, n, generator=gen) * torch.rand(n, generator=gen) * 3
        elif kind == "ties":  # values from a tiny set, so ties on value are decided by position
            acts = torch.tensor([-1.0, 0.0, 0.5, 1.0])[torch.randint(0, 4, (t, n), generator=gen)]
        elif kind == "decades":  # 1e-9 .. 1e9, both signs, half of them exactly on a histogram edge
            mag = 10.0 ** (torch.rand(t, n, generator=gen, dtype=torch.float64) * 18 - 9)
            sign = torch.where(torch.rand(t, n, generator=gen) < 0.5, -1.0, 1.0)
            acts = (sign * mag).float()
            on_edge = torch.rand(t, n, generator=gen) < 0.5
            acts[on_edge] = edges[torch.randint(0, len(edges), (int(on_edge.sum()),), generator=gen)]
            acts[0, : min(n, 2)] = torch.tensor([0.0, -0.0])[: min(n, 2)]
            acts[1, : min(n, 2)] = torch.tensor([3.4e38, -3.4e38])[: min(n, 2)]
        elif kind == "nonfinite":
            acts = torch.randn(t, n, generator=gen)
            u = torch.rand(t, n, generator=gen)
            acts[u < 0.05] = float("nan")
            acts[(u >= 0.05) & (u < 0.08)] = float("inf")
            acts[(u >= 0.08) & (u < 0.11)] = -float("inf")
            acts[:, 0] = float("nan")  # a neuron that never sees a finite value
        elif kind == "equal":
            acts = torch.full((t, n), 0.3)
        elif kind == "repeats":  # repeated positions: ties on (value, position) keep the earlier row
            acts = torch.tensor([-1.0, 0.5, 2.0])[torch.randint(0, 3, (t, n), generator=gen)]
        else:
            raise ValueError(kind)
        pos = torch.arange(t, dtype=torch.int64) * 3 + 1000 * i
        if kind == "ties":
            pos = pos[torch.randperm(t, generator=gen)]  # lower position wins, whatever the row order
        elif kind == "repeats":
            pos = torch.randint(0, 10, (t,), generator=gen)
        out.append((acts, pos))
    return out


@pytest.mark.parametrize("kind", ["normal", "ties", "decades", "nonfinite", "equal", "repeats"])
def test_equals_reference_on_odd_shapes(kind):
    gen = torch.Generator().manual_seed(len(kind))
    ref, cpu = run_both(random_batches(gen, 3, 97, 1025, kind), CFG, offset=5 * 1025)
    assert_same(cpu, ref)


@pytest.mark.parametrize(
    ("t", "n", "cfg"),
    [
        (3, 70, CFG),  # T < k: empty slots stay (-inf, -1)
        (50, 1, CFG),  # a single neuron
        (40, 65, MiningConfig(k=1, bottom_k=0, samples_per_stratum=0)),  # no bottom-k, no samples
        (60, 33, MiningConfig(k=3, bottom_k=2, samples_per_stratum=2, bins_per_decade=1000)),  # dense grid
        (60, 33, MiningConfig(k=3, bottom_k=1, samples_per_stratum=4, bins_per_decade=1, lo_decade=-1,
                              hi_decade=0, seed=2**32 - 1)),  # coarsest grid, largest seed
    ],
)
def test_equals_reference_on_edge_cases(t, n, cfg):
    gen = torch.Generator().manual_seed(t * n)
    batches = []
    for i in range(3):
        acts = torch.randn(t, n, generator=gen) * 10.0 ** torch.randint(-5, 5, (1, n), generator=gen)
        acts[torch.rand(t, n, generator=gen) < 0.2] = 0.5
        batches.append((acts, torch.arange(t) + 7 * t * i))
    ref, cpu = run_both(batches, cfg, offset=3)
    assert_same(cpu, ref)


def test_threads_give_identical_results():
    gen = torch.Generator().manual_seed(3)
    batches = random_batches(gen, 2, 61, 1025, "normal") + random_batches(gen, 1, 61, 1025, "nonfinite")
    results = []
    for threads in (1, 2, 3, 0):
        st = LayerStats.empty(1025, CFG)
        for acts, pos in batches:
            mine_cpu(st, acts, pos, 0, CFG, threads=threads)
        results.append(st)
    for st in results[1:]:
        assert_same(st, results[0], moments_rtol=0.0)  # bit-identical, moments included


def test_equals_brute_force_oracle():
    rng = np.random.default_rng(5)
    cfg = MiningConfig(k=4, bottom_k=3, samples_per_stratum=2, seed=3)
    acts = (rng.standard_normal((90, 12)) * 10.0 ** rng.integers(-4, 4, size=(1, 12))).astype(np.float32)
    acts[rng.random(acts.shape) < 0.2] = 0.25
    acts[rng.random(acts.shape) < 0.03] = np.nan
    acts[4, :3] = hist_edges(cfg).numpy()[[0, 100, 257]]
    positions = np.sort(rng.choice(1000, size=90, replace=False)).astype(np.int64)
    st = LayerStats.empty(12, cfg)
    for s in range(0, 90, 40):
        mine_cpu(st, torch.from_numpy(acts[s : s + 40]), torch.from_numpy(positions[s : s + 40]), 24, cfg)
    assert_matches(st, brute_force(acts, positions, 24, cfg))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    t=hs.integers(1, 40),
    n=hs.integers(1, 70),
    k=hs.integers(1, 6),
    bottom_k=hs.integers(0, 3),
    r=hs.integers(0, 3),
    bpd=hs.integers(1, 5),
    seed=hs.integers(0, 2**32 - 1),
    data_seed=hs.integers(0, 2**31),
)
def test_property_equals_reference(t, n, k, bottom_k, r, bpd, seed, data_seed):
    cfg = MiningConfig(k=k, bottom_k=bottom_k, samples_per_stratum=r, bins_per_decade=bpd, lo_decade=-2,
                       hi_decade=2, seed=seed)
    gen = torch.Generator().manual_seed(data_seed)
    batches = []
    for i in range(2):
        acts = torch.randn(t, n, generator=gen) * 10.0 ** torch.randint(-3, 3, (t, n), generator=gen)
        u = torch.rand(t, n, generator=gen)
        acts[u < 0.3] = torch.tensor([0.0, 1.0, -0.01])[torch.randint(0, 3, (int((u < 0.3).sum()),), generator=gen)]
        acts[u > 0.97] = float("nan")
        batches.append((acts, torch.randperm(4 * t, generator=gen)[:t] + 4 * t * i))
    ref, cpu = run_both(batches, cfg, offset=n, threads=2)
    assert_same(cpu, ref)


def test_empty_batch_and_dtypes_are_converted():
    st = LayerStats.empty(5, CFG)
    before = {k: v.clone() for k, v in st.to_tensors().items()}
    mine_cpu(st, torch.zeros(0, 5), torch.zeros(0, dtype=torch.int64), 0, CFG)
    assert all(torch.equal(before[k], v) for k, v in st.to_tensors().items())
    acts = torch.randn(30, 5, dtype=torch.float64)
    ref, cpu = LayerStats.empty(5, CFG), LayerStats.empty(5, CFG)
    mine_ref(ref, acts, torch.arange(30), 0, CFG)
    mine_cpu(cpu, acts.t().contiguous().t(), torch.arange(30, dtype=torch.int32), 0, CFG)  # strided, int32
    assert_same(cpu, ref)


def test_concurrent_calls_from_python_threads():
    gen = torch.Generator().manual_seed(9)
    (acts, pos), = random_batches(gen, 1, 64, 300, "normal")
    stats = [LayerStats.empty(300, CFG) for _ in range(4)]
    workers = [threading.Thread(target=mine_cpu, args=(st, acts, pos, 0, CFG, 1)) for st in stats]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for st in stats[1:]:
        assert_same(st, stats[0], moments_rtol=0.0)


def _state(n: int, cfg: MiningConfig) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in LayerStats.empty(n, cfg).to_tensors().items()}


def _call(state, acts=None, positions=None, edges=None, strata=None, threads=0):
    t = 4
    _core.mine_update(
        state,
        np.zeros((t, 3), np.float32) if acts is None else acts,
        np.arange(t, dtype=np.int64) if positions is None else positions,
        hist_edges(CFG).numpy() if edges is None else edges,
        bin_strata(CFG).numpy() if strata is None else strata,
        neuron_offset=0,
        seed=0,
        threads=threads,
    )


def test_binding_rejects_bad_arguments():
    _call(_state(3, CFG))  # the baseline call is valid
    bad_dtype = _state(3, CFG)
    bad_dtype["hist"] = bad_dtype["hist"].astype(np.int32)
    with pytest.raises(TypeError, match=r"state\['hist'\] must have dtype int64, got int32"):
        _call(bad_dtype)
    bad_shape = _state(3, CFG)
    bad_shape["sample_priority"] = np.full((3, CFG.n_strata, 2), -1, np.int64)
    with pytest.raises(ValueError, match=r"state\['sample_priority'\] must have shape \(N, S, R\)"):
        _call(bad_shape)
    strided = _state(3, CFG)
    strided["topk_values"] = np.full((3, 2 * CFG.k), -np.inf, np.float32)[:, ::2]
    with pytest.raises(ValueError, match=r"state\['topk_values'\] must be C-contiguous"):
        _call(strided)
    frozen = _state(3, CFG)
    frozen["count"].flags.writeable = False
    with pytest.raises(ValueError, match=r"state\['count'\] must be writable"):
        _call(frozen)
    missing = _state(3, CFG)
    del missing["m2"]
    with pytest.raises(ValueError, match=r"state is missing 'm2'"):
        _call(missing)
    with pytest.raises(TypeError, match="acts must have dtype float32, got float64"):
        _call(_state(3, CFG), acts=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"acts must have shape \(T, N\) = \(4, 3\), got \(4, 2\)"):
        _call(_state(3, CFG), acts=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match="acts must be C-contiguous"):
        _call(_state(3, CFG), acts=np.zeros((3, 4), np.float32).T)
    with pytest.raises(ValueError, match=r"positions must have shape \(T,\)"):
        _call(_state(3, CFG), positions=np.arange(5, dtype=np.int64))
    with pytest.raises(TypeError, match="positions must be a numpy array"):
        _call(_state(3, CFG), positions=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="edges must be strictly increasing"):
        _call(_state(3, CFG), edges=hist_edges(CFG).numpy()[::-1].copy())
    with pytest.raises(ValueError, match="strata must lie in"):
        _call(_state(3, CFG), strata=bin_strata(CFG).numpy() + 100)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        _call(_state(3, CFG), threads=-1)


def test_mine_cpu_rejects_bad_stats_and_acts():
    st = LayerStats.empty(4, CFG)
    st.hist = st.hist.to(torch.int32)
    with pytest.raises(TypeError, match=r"state\['hist'\]"):
        mine_cpu(st, torch.zeros(2, 4), torch.arange(2), 0, CFG)
    st = LayerStats.empty(4, CFG)
    st.topk_values = torch.full((CFG.k, 4), -float("inf")).t()
    with pytest.raises(ConfigError, match="topk_values must be a contiguous CPU tensor"):
        mine_cpu(st, torch.zeros(2, 4), torch.arange(2), 0, CFG)
    with pytest.raises(ConfigError, match=r"acts must be \(T, N\)"):
        mine_cpu(LayerStats.empty(4, CFG), torch.zeros(8), torch.arange(8), 0, CFG)
    with pytest.raises(ValueError, match=r"acts must have shape \(T, N\) = \(2, 4\), got \(2, 5\)"):
        mine_cpu(LayerStats.empty(4, CFG), torch.zeros(2, 5), torch.arange(2), 0, CFG)
