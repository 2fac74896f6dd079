"""The C++ CPU miner: one fused, multithreaded pass per batch, bit-exact with :func:`mine_ref`.

Everything but the moments (float64 mean/M2, equal within ~1e-12 relative) matches the reference exactly.
"""

from __future__ import annotations

from dataclasses import fields
from functools import lru_cache

import numpy as np
import torch

from .. import native
from ..errors import ConfigError
from .spec import MASK32, MiningConfig, bin_strata, hist_edges
from .stats import LayerStats


@lru_cache(maxsize=16)
def _grid(cfg: MiningConfig) -> tuple[np.ndarray, np.ndarray]:
    """The histogram edges ``(B - 1,)`` float32 and bin strata ``(B,)`` int64, from the spec itself."""
    return hist_edges(cfg).numpy(), bin_strata(cfg).numpy()


@torch.no_grad()
def mine_cpu(
    st: LayerStats,
    acts: torch.Tensor,
    positions: torch.Tensor,
    neuron_offset: int,
    cfg: MiningConfig,
    threads: int = 0,
) -> LayerStats:
    """Folds one batch of activations into ``st`` (in place) and returns it; same contract as ``mine_ref``.

    acts: (T, N) on the CPU, any real dtype (converted to contiguous float32); positions: (T,) global token
    positions; neuron_offset: global id of neuron 0 of this layer (``layer * N``), used by the sampling
    hash; threads: worker threads over blocks of neurons (0 = all hardware threads). Every tensor of ``st``
    must be a contiguous CPU tensor of the dtype and shape ``LayerStats.empty(N, cfg)`` gives.
    """
    if acts.device.type != "cpu" or positions.device.type != "cpu":
        raise ConfigError(f"mine_cpu needs CPU tensors, got acts on {acts.device}, positions on {positions.device}")
    if acts.dim() != 2:
        raise ConfigError(f"acts must be (T, N), got shape {tuple(acts.shape)}")
    state = {}
    for f in fields(st):
        t = getattr(st, f.name)
        if t.device.type != "cpu" or not t.is_contiguous():
            raise ConfigError(f"LayerStats.{f.name} must be a contiguous CPU tensor (it is updated in place)")
        state[f.name] = t.numpy()
    edges, strata = _grid(cfg)
    native.core().mine_update(
        state,
        acts.detach().to(torch.float32).contiguous().numpy(),
        positions.detach().to(torch.int64).contiguous().numpy(),
        edges,
        strata,
        neuron_offset=int(neuron_offset),
        seed=cfg.seed & MASK32,
        threads=int(threads),
    )
    return st
