"""The Triton miner (and the fused gated activation) against ``mine_ref``: exact stores, streaming, odd shapes.

On a CPU-only machine the kernels run under ``TRITON_INTERPRET=1`` (set before the kernels are
imported when no CUDA device is present); the ``gpu`` tests repeat the key checks on CUDA. Every test
fails if the miner falls back to ``mine_ref`` instead of running its kernels.
"""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from triton_required import forbid_reference_fallback, import_triton, kernel_device

triton = import_triton()

from neuronscope.kernels import _mine_merge, _mine_scan  # noqa: E402
from neuronscope.kernels.mine import fused_gated_act_mine, gated_act_ref, mine_ref, mine_stats, mine_topk  # noqa: E402

from neuronscope.errors import ConfigError  # noqa: E402
from neuronscope.mining import LayerStats, MiningConfig, hist_edges  # noqa: E402

CFG = MiningConfig(k=7, bottom_k=5, samples_per_stratum=3, seed=11)


@pytest.fixture(scope="module")
def device() -> str:
    return kernel_device(_mine_scan._mine_kernel)


@pytest.fixture(autouse=True)
def kernels_only(monkeypatch) -> None:
    forbid_reference_fallback(monkeypatch)


def assert_same(got: LayerStats, want: LayerStats, moments_rtol: float = 1e-9) -> None:
    """Every field identical; mean/M2 within ``moments_rtol`` (float64 sums in another order)."""
    for f in fields(want):
        g, w = getattr(got, f.name).cpu(), getattr(want, f.name).cpu()
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


def make_batches(gen: torch.Generator, n_batches: int, t: int, n: int, kind: str) -> list:
    """``[(acts (t, n) float32, positions (t,)), ...]`` of one kind of data at increasing positions."""
    edges = hist_edges(CFG)
    out = []
    for i in range(n_batches):
        if kind == "normal":
            acts = torch.randn(t, n, generator=gen) * torch.rand(n, generator=gen) * 3
        elif kind == "ties":  # a tiny value set: ties on value are decided by position
            acts = torch.tensor([-1.0, 0.0, 0.5, 1.0])[torch.randint(0, 4, (t, n), generator=gen)]
        elif kind == "decades":  # 1e-9 .. 1e9, both signs, many exactly on an edge or one ulp beside it
            mag = 10.0 ** (torch.rand(t, n, generator=gen, dtype=torch.float64) * 18 - 9)
            acts = (torch.where(torch.rand(t, n, generator=gen) < 0.5, -1.0, 1.0) * mag).float()
            on_edge = torch.rand(t, n, generator=gen) < 0.4
            acts[on_edge] = edges[torch.randint(0, len(edges), (int(on_edge.sum()),), generator=gen)]
            beside = on_edge & (torch.rand(t, n, generator=gen) < 0.5)
            away = torch.where(torch.rand(int(beside.sum()), generator=gen) < 0.5, -torch.inf, torch.inf)
            acts[beside] = torch.nextafter(acts[beside], away)
            acts[0, :4] = torch.tensor([0.0, -0.0, 1e-45, -1e-45])
            acts[1, :2] = torch.tensor([3.4e38, -3.4e38])
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
            pos = pos[torch.randperm(t, generator=gen)]
        elif kind == "repeats":
            pos = torch.randint(0, 10, (t,), generator=gen)
        out.append((acts, pos))
    return out


def stream(batches, cfg: MiningConfig, device: str, offset: int = 0, dtype=torch.float32, **kw):
    """Streams the batches (cast to ``dtype``) through mine_ref (CPU) and mine_stats (``device``)."""
    n = batches[0][0].shape[1]
    ref, got = LayerStats.empty(n, cfg), LayerStats.empty(n, cfg, device=device)
    for acts, pos in batches:
        acts = acts.to(dtype)
        mine_ref(ref, acts, pos, offset, cfg)
        assert mine_stats(got, acts.to(device), pos.to(device), offset, cfg, **kw) is got
    return ref, got


@pytest.mark.parametrize(("kind", "n_batches"),
                         [("normal", 3), ("ties", 2), ("decades", 2), ("nonfinite", 3), ("equal", 2), ("repeats", 2)])
def test_streaming_equals_reference_on_odd_shapes(device, kind, n_batches):
    gen = torch.Generator().manual_seed(len(kind))
    ref, got = stream(make_batches(gen, n_batches, 97, 1025, kind), CFG, device, offset=5 * 1025)
    assert_same(got, ref)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(device, dtype):
    gen = torch.Generator().manual_seed(7)
    batches = make_batches(gen, 2, 97, 1025, "normal")
    batches[1][0][3, :50] = 1e6  # inf in float16: counted as non-finite, like the reference does
    ref, got = stream(batches, CFG, device, offset=1025, dtype=dtype)
    assert_same(got, ref)


@pytest.mark.parametrize(
    ("t", "n", "cfg"),
    [
        (3, 70, CFG),  # T < k: empty slots stay (-inf, -1)
        (50, 1, CFG),  # a single neuron
        (40, 65, MiningConfig(k=1, bottom_k=0, samples_per_stratum=0)),  # no bottom-k, no samples
        (60, 33, MiningConfig(k=3, bottom_k=2, samples_per_stratum=2, bins_per_decade=1000)),  # dense grid
        (60, 33, MiningConfig(k=3, bottom_k=1, samples_per_stratum=4, bins_per_decade=1, lo_decade=-1,
                              hi_decade=0, seed=2**32 - 1)),  # coarsest grid, largest seed
        (60, 33, MiningConfig(k=3, bottom_k=2, samples_per_stratum=2, lo_decade=-30, hi_decade=30)),
    ],
)
def test_edge_configs(device, t, n, cfg):
    gen = torch.Generator().manual_seed(t * n)
    batches = []
    for i in range(3):
        acts = torch.randn(t, n, generator=gen) * 10.0 ** torch.randint(-5, 5, (1, n), generator=gen)
        acts[torch.rand(t, n, generator=gen) < 0.2] = 0.5
        batches.append((acts, torch.arange(t) + 7 * t * i))
    ref, got = stream(batches, cfg, device, offset=3)
    assert_same(got, ref)


def test_overflowing_candidates_are_collected_in_chunks(device):
    """A tiny candidate buffer forces the chunked re-collection on every batch: same store."""
    gen = torch.Generator().manual_seed(1)
    batches = make_batches(gen, 2, 45, 131, "normal") + make_batches(gen, 1, 45, 131, "ties")
    ref, got = stream(batches, CFG, device, capacity=140)
    assert_same(got, ref)


@pytest.mark.parametrize(("kind", "k", "capacity", "grid"), [
    ("normal", 5, None, "keys"), ("ties", 5, 20, "segments"), ("nonfinite", 40, None, "keys"),
    ("repeats", 5, None, "segments"),
])
def test_merge_kernel_equals_reference(device, kind, k, capacity, grid, monkeypatch):
    """The GPU's merge kernel (the interpreter normally merges with the reference's sort) on small
    shapes: 150 candidates per row arrive in several chunks of the kernel's candidate block."""
    monkeypatch.setattr(_mine_merge, "_MERGE_KERNEL_INTERPRETED", grid)

    def torch_merge(*_args):
        raise AssertionError("merged by the reference's sort, not by the merge kernel")

    monkeypatch.setattr(_mine_merge, "_merge_kind_torch", torch_merge)
    gen = torch.Generator().manual_seed(11)
    cfg = MiningConfig(k=k, bottom_k=3, samples_per_stratum=2, seed=3)
    batches = make_batches(gen, 3, 150, 9, kind)
    batches[0][0][:, 1] = -0.0  # signed zeros survive the merge bit for bit
    ref, got = stream(batches, cfg, device, offset=9, capacity=capacity)
    assert_same(got, ref)
    assert torch.equal(torch.signbit(got.topk_values.cpu()), torch.signbit(ref.topk_values))


def test_gpu_tile_shape_under_the_interpreter(device, monkeypatch):
    """The CUDA tile shape (the interpreter normally uses bigger tiles) on a ragged grid."""
    monkeypatch.setattr(_mine_scan, "_BLOCKS_INTERPRETED", (_mine_scan._BLOCK_T, _mine_scan._BLOCK_N))
    gen = torch.Generator().manual_seed(2)
    ref, got = stream(make_batches(gen, 2, 45, 2 * _mine_scan._BLOCK_N + 3, "nonfinite"), CFG, device, offset=7)
    assert_same(got, ref)


def test_index_mines_only_the_given_rows(device):
    gen = torch.Generator().manual_seed(3)
    rows = torch.randn(70, 259, generator=gen)
    index = torch.sort(torch.randperm(70, generator=gen)[:53]).values
    rows[~torch.isin(torch.arange(70), index)] = float("nan")  # padding rows must not count
    pos = torch.arange(53) * 5 + 11
    ref = mine_ref(LayerStats.empty(259, CFG), rows[index], pos, 0, CFG)
    got = mine_stats(LayerStats.empty(259, CFG, device=device), rows.to(device), pos.to(device), 0, CFG,
                     index=index.to(device))
    assert_same(got, ref)


def test_topk_alone(device):
    """mine_topk updates the top-k and bottom-k exactly as mine_stats does and leaves the rest alone."""
    gen = torch.Generator().manual_seed(9)
    ref = LayerStats.empty(300, CFG)
    got = LayerStats.empty(300, CFG, device=device)
    for acts, pos in make_batches(gen, 2, 61, 300, "nonfinite") + make_batches(gen, 1, 61, 300, "ties"):
        mine_ref(ref, acts, pos, 0, CFG)
        mine_topk(got, acts.to(device), pos.to(device), CFG)
    empty = LayerStats.empty(300, CFG)
    for f in fields(ref):
        want = getattr(ref if f.name.startswith(("topk", "bottomk")) else empty, f.name)
        assert torch.equal(getattr(got, f.name).cpu(), want), f.name


def _gated_inputs(gen, shape, dtype):
    gate = (torch.randn(shape, generator=gen) * 3).to(dtype)
    up = torch.randn(shape, generator=gen).to(dtype)
    return gate, up


@pytest.mark.parametrize("act", ["silu", "gelu_tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fused_gated_activation_output_and_mining(device, act, dtype):
    gen = torch.Generator().manual_seed(4)
    gate, up = _gated_inputs(gen, (3, 33, 1025), dtype)
    if dtype == torch.float16:
        gate[0, 0, :8], up[0, 0, :8] = 300.0, 300.0  # the product overflows float16: non-finite, excluded
    index = torch.tensor([0, 1, 2, 5, 8, 13, 21, 34, 40, 55, 60, 61, 62, 63, 64, 65, 66, 67, 68, 98])
    pos = torch.arange(index.numel()) * 2 + 500
    st = LayerStats.empty(1025, CFG, device=device)
    out = fused_gated_act_mine(gate.to(device), up.to(device), act, st, index.to(device), pos.to(device), 2050,
                               CFG).cpu()
    assert out.shape == gate.shape
    assert out.dtype == dtype

    # Tolerance per dtype: the kernel's error against float32 math is at most twice that of the
    # model's own same-dtype computation (act in dtype, then product in dtype), plus a float32 ulp.
    g32, u32 = gate.float(), up.float()
    a32 = torch.nn.functional.silu(g32) if act == "silu" else torch.nn.functional.gelu(g32, approximate="tanh")
    exact = a32 * u32
    model = ((torch.nn.functional.silu(gate) if act == "silu"
              else torch.nn.functional.gelu(gate, approximate="tanh")) * up).float()
    finite = torch.isfinite(exact.to(dtype).float())
    err_kernel = (out.float() - exact).abs()[finite]
    err_model = (model - exact).abs()[finite]
    assert float(err_kernel.max()) <= 2 * float(err_model.max()) + 1e-6 * float(exact.abs().max())
    assert torch.equal(torch.isfinite(out), torch.isfinite(gated_act_ref(gate, up, act)))

    # The statistics are exactly those of the rows the down projection reads.
    ref = mine_ref(LayerStats.empty(1025, CFG), out.reshape(-1, 1025)[index], pos, 2050, CFG)
    assert_same(st, ref)


def test_fused_gated_activation_without_mining(device):
    gen = torch.Generator().manual_seed(5)
    gate, up = _gated_inputs(gen, (41, 300), torch.float32)
    out = fused_gated_act_mine(gate.to(device), up.to(device), "silu").cpu()
    torch.testing.assert_close(out, gated_act_ref(gate, up, "silu"), rtol=2e-6, atol=1e-6)


def test_fused_streaming_over_batches(device):
    """Three batches through the fused kernel equal the reference fed the kernel's outputs."""
    gen = torch.Generator().manual_seed(6)
    st = LayerStats.empty(257, CFG, device=device)
    ref = LayerStats.empty(257, CFG)
    for i in range(3):
        gate, up = _gated_inputs(gen, (59, 257), torch.bfloat16)
        pos = torch.arange(59) + 59 * i
        out = fused_gated_act_mine(gate.to(device), up.to(device), "gelu_tanh", st, None, pos.to(device), 0, CFG)
        mine_ref(ref, out.cpu(), pos, 0, CFG)
    assert_same(st, ref)


def test_grids_beyond_float32_fall_back_to_the_reference(device, monkeypatch):
    """The one documented fallback (edges below float32's normal range): the guard that every other test
    runs under catches it, and without the guard the store is the reference's."""
    cfg = MiningConfig(k=3, bottom_k=2, samples_per_stratum=2, lo_decade=-40, hi_decade=2)
    acts, pos = torch.randn(20, 9, generator=torch.Generator().manual_seed(12)), torch.arange(20)
    with pytest.raises(AssertionError, match="fell back to mine_ref"):
        mine_stats(LayerStats.empty(9, cfg, device=device), acts.to(device), pos.to(device), 0, cfg)
    monkeypatch.undo()
    got = mine_stats(LayerStats.empty(9, cfg, device=device), acts.to(device), pos.to(device), 0, cfg)
    assert_same(got, mine_ref(LayerStats.empty(9, cfg), acts, pos, 0, cfg))


def test_bad_arguments_are_clear_errors(device):
    st = LayerStats.empty(8, CFG, device=device)
    acts = torch.zeros(4, 8, device=device)
    pos = torch.arange(4, device=device)
    with pytest.raises(ConfigError, match="acts must be"):
        mine_stats(st, acts[0], pos, 0, CFG)
    with pytest.raises(ConfigError, match="positions must be"):
        mine_stats(st, acts, pos[:3], 0, CFG)
    with pytest.raises(ConfigError, match="has shape"):
        mine_stats(LayerStats.empty(9, CFG, device=device), acts, pos, 0, CFG)
    with pytest.raises(ConfigError, match="index and positions"):
        mine_stats(st, acts, pos, 0, CFG, index=torch.arange(3, device=device))
    with pytest.raises(ConfigError, match="act must be"):
        fused_gated_act_mine(acts, acts, "relu")
    with pytest.raises(ConfigError, match="gate and up"):
        fused_gated_act_mine(acts, acts[:3], "silu")
    with pytest.raises(ConfigError, match="needs positions"):
        fused_gated_act_mine(acts, acts, "silu", st)


@pytest.mark.gpu
def test_cuda_kernels_equal_reference():
    gen = torch.Generator().manual_seed(8)
    batches = make_batches(gen, 3, 997, 4099, "normal") + make_batches(gen, 1, 997, 4099, "nonfinite")
    ref, got = stream(batches, CFG, "cuda", offset=4099, dtype=torch.bfloat16)
    assert_same(got, ref)
