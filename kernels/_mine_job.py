"""The constants of one mining call, shared by the scan and the merge: the rows of the batch, their hashes,
the grid and the candidate buffers (no kernel here; :mod:`.mine` is the public launcher)."""

from __future__ import annotations

from dataclasses import fields
from functools import lru_cache

import torch

from neuronscope.errors import ConfigError
from neuronscope.mining.spec import MiningConfig, hist_edges, neuron_hash, position_hash
from neuronscope.mining.stats import LayerStats

__all__ = ["BatchRows", "MineJob", "batch_rows", "check_state"]


class BatchRows:
    """The rows of one batch to mine, built once and shared by all its layers.

    pos: (R,) int64 global position of every row of the flattened activations, -1 for rows not mined
    (padding); masked: whether any row is skipped. Build it with :func:`batch_rows`.
    """

    def __init__(self, pos: torch.Tensor, masked: bool) -> None:
        self.pos, self.masked = pos, masked
        self._hashes: dict[int, torch.Tensor] = {}

    @property
    def n_rows(self) -> int:
        return int(self.pos.shape[0])

    def hashes(self, seed: int) -> torch.Tensor:
        """position_hash of every row, (R,) int32 (the sampling priorities' token half)."""
        if seed not in self._hashes:
            self._hashes[seed] = position_hash(self.pos, seed).to(torch.int32)
        return self._hashes[seed]


def batch_rows(n_rows: int, positions: torch.Tensor, index: torch.Tensor | None = None,
               device: torch.device | str | None = None) -> BatchRows:
    """The mined rows of a batch of ``n_rows`` flattened rows: all of them at ``positions: (n_rows,)``,
    or only the rows ``index: (V,)`` (unique) at ``positions: (V,)``."""
    device = torch.device(device) if device is not None else positions.device
    positions = positions.to(device=device, dtype=torch.int64)
    if index is None:
        if positions.shape != (n_rows,):
            raise ConfigError(f"positions must be ({n_rows},) to match acts, got {tuple(positions.shape)}")
        return BatchRows(positions.contiguous(), False)
    if index.dim() != 1 or positions.shape != index.shape:
        raise ConfigError(f"index and positions must be 1-D of the same length, got {tuple(index.shape)} "
                          f"and {tuple(positions.shape)}")
    full = torch.full((n_rows,), -1, dtype=torch.int64, device=device)
    full[index.to(device=device, dtype=torch.int64)] = positions
    return BatchRows(full, True)


def check_state(st: LayerStats, n: int, cfg: MiningConfig, device: torch.device) -> None:
    """ConfigError unless every tensor of ``st`` is contiguous on ``device`` with the dtype and shape
    ``LayerStats.empty(n, cfg)`` gives (the kernels update it in place)."""
    want = LayerStats.empty(0, cfg)
    for f in fields(st):
        t, w = getattr(st, f.name), getattr(want, f.name)
        if t.device != device or not t.is_contiguous() or t.dtype != w.dtype:
            raise ConfigError(f"LayerStats.{f.name} must be a contiguous {w.dtype} tensor on {device} "
                              f"(it is updated in place), got {t.dtype} on {t.device}")
        if tuple(t.shape) != (n, *w.shape[1:]):
            raise ConfigError(f"LayerStats.{f.name} has shape {tuple(t.shape)}, expected {(n, *w.shape[1:])}")


@lru_cache(maxsize=64)
def _positive_edges(cfg: MiningConfig, device: torch.device) -> torch.Tensor:
    """The positive histogram edges (M,) on ``device``, from the spec itself (the kernel's binning table)."""
    return hist_edges(cfg)[cfg.n_decades * cfg.bins_per_decade + 1 :].to(device).contiguous()


@lru_cache(maxsize=128)
def _neuron_hashes(n: int, offset: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """neuron_hash of the layer's global neuron ids, as int32 (kernel) and int64 (merge)."""
    nh = neuron_hash(torch.arange(n, device=device) + offset, seed)
    return nh.to(torch.int32), nh


class MineJob:
    """One mining call's constants: the rows, their hashes, the grid and the candidate buffers.

    The buffers hold ``cap`` candidate keys per kind (top-k, bottom-k, samples) back to back in ``cand``;
    ``counts`` (3,) int32 is how many each pass found (beyond ``cap``: collect again in chunks).
    """

    def __init__(self, st: LayerStats, src: torch.Tensor, rows: BatchRows, neuron_offset: int,
                 cfg: MiningConfig, capacity: int | None, samples: bool = True) -> None:
        dev = src.device
        self.st, self.src, self.pos, self.rowmask, self.cfg = st, src, rows.pos, rows.masked, cfg
        self.rows, self.n = src.shape
        self.edges = _positive_edges(cfg, dev)
        self.m = self.edges.numel()
        self.samples = samples and cfg.samples_per_stratum > 0
        self.ph = rows.hashes(cfg.seed) if self.samples else rows.pos
        self.nh, self.nh64 = _neuron_hashes(self.n, int(neuron_offset), cfg.seed, dev)
        per_row = max(2 * cfg.k, 2 * cfg.bottom_k, 8 * cfg.samples_per_stratum, 32)
        self.cap = int(capacity) if capacity else max(1 << 16, per_row * self.n)
        self.cand = torch.empty(3 * self.cap, dtype=torch.int64, device=dev)
        self.counts = torch.zeros(3, dtype=torch.int32, device=dev)

    def thresholds(self) -> list[torch.Tensor]:
        """Views of the last entry of every row (read with the row stride by the kernel; no copies)."""
        st, cfg = self.st, self.cfg
        dummy = st.topk_values
        out = [st.topk_values[:, -1], st.topk_positions[:, -1]]
        out += [st.bottomk_values[:, -1], st.bottomk_positions[:, -1]] if cfg.bottom_k else [dummy, dummy]
        if self.samples:
            out += [st.sample_priority[:, :, -1], st.sample_positions[:, :, -1]]
        else:
            out += [dummy, dummy]
        return out
