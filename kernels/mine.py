"""Fused activation mining: one Triton pass per batch updates every neuron's LayerStats (public launcher).

The work is in three private modules: :mod:`._mine_scan` (``_mine_kernel``: moments, histogram and the
candidates of the top-k, bottom-k and sample reservoirs in one pass over the activations, optionally
fused into a gated MLP's activation; ``_fold_kernel``), :mod:`._mine_merge` (``_merge_kernel``: the
candidates merged exactly into the sorted rows) and :mod:`._mine_job` (the rows of a batch and one
call's buffers). The store equals :func:`mine_ref` bit for bit but the moments (float64, equal within
~1e-12 relative). One host sync per call reads the candidate counts. When a batch holds more candidates
than the buffers (the first batches of a run, when every element beats an empty slot), the overflowing
kinds are collected again over chunks of rows, each chunk merged before the next so the thresholds rise.
"""

from __future__ import annotations

from typing import Literal

import torch

from neuronscope.errors import ConfigError
from neuronscope.mining.reference import mine_ref
from neuronscope.mining.spec import MiningConfig
from neuronscope.mining.stats import LayerStats

from ._device import triton_ok as _triton_ok  # models.fused asks whether the kernels run on a device
from ._mine_job import BatchRows, MineJob, batch_rows, check_state
from ._mine_merge import merge_kind
from ._mine_scan import ACTIVATIONS, act_only, launch

__all__ = [
    "BatchRows", "batch_rows", "fused_gated_act_mine", "gated_act_ref", "mine_ref", "mine_stats", "mine_topk",
]

Activation = Literal["silu", "gelu_tanh"]
_MAX_CANDIDATES = (1 << 31) - 1  # the int32 candidate counters: a pass covers at most this many elements


def _grid_ok(cfg: MiningConfig) -> bool:
    """Whether the kernel's binning is exact for this grid: normal float32 edges, and few enough bins per
    side that the float32 log estimate is off by less than one bin (spec defaults: 129 per side)."""
    return cfg.lo_decade >= -37 and cfg.hi_decade <= 38 and cfg.n_decades * cfg.bins_per_decade < (1 << 15)


def _collect(job: MineJob, first: list[int], row0: int, row1: int) -> None:
    """Merges the candidates of a pass over rows [row0, row1); kinds that overflowed are collected again
    over chunks of those rows."""
    over = [c > job.cap for c in first]
    for kind, c in enumerate(first):
        if c and not over[kind]:
            merge_kind(job, kind, job.cand[kind * job.cap : kind * job.cap + c])
    if not any(over):
        return
    # Every element is at most one candidate per kind, so ``cap // N`` rows always fit. Start with about
    # the rows that fill the buffers of an empty state and double while the thresholds keep candidates
    # few: the merges then handle O(k N log T) candidates instead of every element.
    cfg = job.cfg
    size = max(1, min(job.cap // job.n, 2 * max(cfg.k, cfg.bottom_k, cfg.samples_per_stratum)))
    start = row0
    while start < row1:
        end = min(row1, start + size)
        job.counts.zero_()
        launch(job, row0=start, row1=end, kinds=tuple(over), stats=False)
        got = job.counts.tolist()
        if max(got) > job.cap:  # only after growing: retry the chunk smaller
            size = max(1, size // 2)
            continue
        for kind in range(3):
            if over[kind]:
                merge_kind(job, kind, job.cand[kind * job.cap : kind * job.cap + got[kind]])
        start = end
        if 3 * max(got) <= job.cap:  # thresholds have risen: take bigger chunks
            size *= 2


def _mine(st: LayerStats, src: torch.Tensor, rows: BatchRows, neuron_offset: int, cfg: MiningConfig,
          capacity: int | None, gated: tuple | None = None) -> None:
    """The full update: one stats + candidates pass (per slice of rows whose flat indices fit in int32),
    the stats folded, the candidates merged."""
    if rows.n_rows != src.shape[0] or rows.pos.device != src.device:
        raise ConfigError(f"rows describe {rows.n_rows} rows on {rows.pos.device}, acts have {src.shape[0]} "
                          f"on {src.device}")
    job = MineJob(st, src, rows, neuron_offset, cfg, capacity)
    kinds = (True, cfg.bottom_k > 0, job.samples)
    step = max(1, _MAX_CANDIDATES // job.n)
    for row0 in range(0, job.rows, step):
        row1 = min(job.rows, row0 + step)
        job.counts.zero_()
        launch(job, row0=row0, row1=row1, kinds=kinds, stats=True, gated=gated)
        _collect(job, job.counts.tolist(), row0, row1)  # the one host sync per layer and batch


@torch.no_grad()
def mine_stats(
    st: LayerStats,
    acts: torch.Tensor,
    positions: torch.Tensor | None,
    neuron_offset: int,
    cfg: MiningConfig,
    *,
    index: torch.Tensor | None = None,
    rows: BatchRows | None = None,
    capacity: int | None = None,
) -> LayerStats:
    """Folds one batch of activations into ``st`` (in place) and returns it; same contract as ``mine_ref``.

    acts: (T, N) float32/bfloat16/float16 (rows may be strided), positions: (T,) int64 global token
    positions; or, with ``index: (V,)``, acts are (R, N) rows of which only ``index`` (unique row ids)
    are mined, at ``positions: (V,)`` — no gathered copy is made; or ``rows`` (from :func:`batch_rows`,
    built once per batch and shared by its layers) replaces positions and index. neuron_offset: global
    id of neuron 0 (``layer * N``), for the sampling hash. Every tensor of ``st`` must be contiguous on
    acts' device. capacity: candidates buffered per kind before collecting again in chunks (tests
    shrink it). Runs the Triton kernel on CUDA tensors (or CPU ones under ``TRITON_INTERPRET=1``);
    otherwise, and for grids beyond float32's normal range (``lo_decade < -37``, ``hi_decade > 38``),
    it falls back to :func:`mine_ref`.
    """
    if acts.dim() != 2:
        raise ConfigError(f"acts must be (T, N), got shape {tuple(acts.shape)}")
    if not acts.dtype.is_floating_point:
        raise ConfigError(f"acts must be a floating tensor, got {acts.dtype}")
    if rows is None:
        if positions is None:
            raise ConfigError("give positions (or rows)")
        rows = batch_rows(acts.shape[0], positions, index, acts.device)
    if not (_triton_ok(acts) and _grid_ok(cfg)):
        return _mine_ref_rows(st, acts, rows, neuron_offset, cfg)
    if acts.stride(1) != 1:
        acts = acts.contiguous()
    check_state(st, acts.shape[1], cfg, acts.device)
    if acts.shape[0] and acts.shape[1]:
        _mine(st, acts, rows, neuron_offset, cfg, capacity)
    return st


def _mine_ref_rows(st: LayerStats, acts: torch.Tensor, rows: BatchRows, neuron_offset: int,
                   cfg: MiningConfig) -> LayerStats:
    """mine_ref on the mined rows of ``acts``: the launchers' one fallback (tests replace it to prove that
    the kernels ran)."""
    if not rows.masked:
        return mine_ref(st, acts, rows.pos, neuron_offset, cfg)
    index = (rows.pos >= 0).nonzero()[:, 0]
    return mine_ref(st, acts.index_select(0, index), rows.pos[index], neuron_offset, cfg)


@torch.no_grad()
def mine_topk(st: LayerStats, acts: torch.Tensor, positions: torch.Tensor, cfg: MiningConfig) -> LayerStats:
    """Streaming top-k (and bottom-k when ``cfg.bottom_k``) alone: only those fields of ``st`` change.

    acts: (T, N) on CUDA (or the CPU under ``TRITON_INTERPRET=1``), positions: (T,). The same threshold
    filter and exact merge as :func:`mine_stats`, without the other statistics: the bandwidth-bound
    core of mining, benchmarked on its own.
    """
    if acts.dim() != 2:
        raise ConfigError(f"acts must be (T, N), got shape {tuple(acts.shape)}")
    if not _triton_ok(acts):
        raise ConfigError(f"mine_topk needs CUDA tensors (or TRITON_INTERPRET=1), got {acts.device}")
    acts = acts if acts.stride(1) == 1 else acts.contiguous()
    rows = batch_rows(acts.shape[0], positions, None, acts.device)
    check_state(st, acts.shape[1], cfg, acts.device)
    if acts.numel():
        job = MineJob(st, acts, rows, 0, cfg, None, samples=False)
        step = max(1, _MAX_CANDIDATES // job.n)
        for row0 in range(0, job.rows, step):
            row1 = min(job.rows, row0 + step)
            job.counts.zero_()
            launch(job, row0=row0, row1=row1, kinds=(True, cfg.bottom_k > 0, False), stats=False)
            _collect(job, job.counts.tolist(), row0, row1)
    return st


def gated_act_ref(gate: torch.Tensor, up: torch.Tensor, act: Activation) -> torch.Tensor:
    """``act(gate) * up`` computed in float32 and rounded once to the input dtype; shapes (..., N)."""
    g = gate.to(torch.float32)
    a = torch.nn.functional.silu(g) if act == "silu" else torch.nn.functional.gelu(g, approximate="tanh")
    return (a * up.to(torch.float32)).to(gate.dtype)


@torch.no_grad()
def fused_gated_act_mine(
    gate: torch.Tensor,
    up: torch.Tensor,
    act: Activation,
    st: LayerStats | None = None,
    index: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
    neuron_offset: int = 0,
    cfg: MiningConfig | None = None,
    *,
    rows: BatchRows | None = None,
    capacity: int | None = None,
) -> torch.Tensor:
    """Returns ``act(gate) * up`` (same shape and dtype as ``gate``, computed in float32) and mines it.

    gate, up: (..., N), flattened to (R, N) rows. With ``st``: the rows ``index`` (V,) — all rows when
    None — at ``positions`` (V,) (or (R,)), or the prebuilt ``rows``, are folded into ``st`` in the same
    kernel pass, exactly as ``mine_ref(st, out.reshape(R, N)[index], positions, neuron_offset, cfg)``
    would. Without CUDA (and without ``TRITON_INTERPRET=1``) it computes :func:`gated_act_ref` and mines
    with ``mine_ref``.
    """
    if act not in ACTIVATIONS:
        raise ConfigError(f"act must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    if gate.shape != up.shape or gate.dtype != up.dtype or gate.device != up.device:
        raise ConfigError(f"gate and up must match in shape, dtype and device, got {tuple(gate.shape)} "
                          f"{gate.dtype} {gate.device} and {tuple(up.shape)} {up.dtype} {up.device}")
    if not gate.dtype.is_floating_point or gate.dim() < 1:
        raise ConfigError(f"gate must be a floating tensor (..., N), got {gate.dtype} {tuple(gate.shape)}")
    if st is not None and ((positions is None and rows is None) or cfg is None):
        raise ConfigError("mining needs positions (or rows) and cfg along with st")
    n = gate.shape[-1]
    g2, u2 = gate.reshape(-1, n), up.reshape(-1, n)
    if st is not None and rows is None:
        rows = batch_rows(g2.shape[0], positions, index, gate.device)
    if not _triton_ok(gate):
        out = gated_act_ref(gate, up, act)
        if st is not None:
            _mine_ref_rows(st, out.reshape(-1, n), rows, neuron_offset, cfg)
        return out
    g2 = g2 if g2.stride(1) == 1 else g2.contiguous()
    u2 = u2 if u2.stride(1) == 1 else u2.contiguous()
    out = torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)
    o2 = out.view(-1, n)
    if g2.shape[0] == 0 or n == 0:
        return out
    if st is None or not _grid_ok(cfg):
        act_only(g2, u2, o2, act)
        if st is not None:
            mine_stats(st, o2, None, neuron_offset, cfg, rows=rows)  # falls back to mine_ref
        return out
    check_state(st, n, cfg, gate.device)
    _mine(st, o2, rows, neuron_offset, cfg, capacity, gated=(g2, u2, act))
    return out
