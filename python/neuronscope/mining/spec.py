"""What the miners compute, defined once: configuration, histogram grid, sample strata, priorities.

Every backend (the PyTorch reference, the C++ CPU miner, the Triton kernels) follows these
definitions bit for bit, so their stores can be compared and merged exactly.

Conventions
-----------
* Non-finite activations (NaN, ±inf) are excluded from every statistic and counted in ``nonfinite``.
* Top-k orders by value descending, ties broken by the lower global token position. Empty slots hold
  value ``-inf`` and position ``-1``. Bottom-k is top-k of the negated values (stored negated back).
* The histogram uses a fixed, data-independent grid that is symmetric around zero and logarithmic in
  magnitude (``bins_per_decade`` bins per decade between ``10**lo_decade`` and ``10**hi_decade``, one
  bin for ``|x| <= 10**lo_decade``, and two catch-all bins beyond ``±10**hi_decade``), so stores from
  any run, rank or model merge by adding counts. A value's bin is the number of edges strictly below it.
* Samples: the grid's bins are grouped into strata (the near-zero bin, then one stratum per decade on
  each side); each (neuron, stratum) keeps the ``samples_per_stratum`` tokens of highest pseudo-random
  priority (ties: lower position). The priority is a hash of (position, neuron, seed), so sampling
  is reproducible, order-independent and exactly mergeable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import ConfigError

MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class MiningConfig:
    """Per-neuron statistics to collect; stored in the manifest, must match for a merge."""

    k: int = 64
    """Top activations kept per neuron."""
    bottom_k: int = 0
    """Most negative activations kept per neuron (0 = off)."""
    bins_per_decade: int = 16
    """Histogram resolution: bins per factor of 10 in magnitude."""
    lo_decade: int = -4
    """Magnitudes at or below ``10**lo_decade`` share the near-zero bin."""
    hi_decade: int = 4
    """Magnitudes above ``10**hi_decade`` share a catch-all bin on each side."""
    samples_per_stratum: int = 8
    """Random tokens kept per (neuron, stratum)."""
    seed: int = 0
    """Seed of the sampling priorities."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be >= 1, got {self.k}")
        if self.bottom_k < 0:
            raise ConfigError(f"bottom_k must be >= 0, got {self.bottom_k}")
        if self.bins_per_decade < 1:
            raise ConfigError(f"bins_per_decade must be >= 1, got {self.bins_per_decade}")
        if self.hi_decade <= self.lo_decade:
            raise ConfigError(f"hi_decade ({self.hi_decade}) must exceed lo_decade ({self.lo_decade})")
        if self.samples_per_stratum < 0:
            raise ConfigError(f"samples_per_stratum must be >= 0, got {self.samples_per_stratum}")

    @property
    def n_decades(self) -> int:
        return self.hi_decade - self.lo_decade

    @property
    def n_bins(self) -> int:
        """Histogram bins B = 2 * (decades * bins_per_decade + 1) + 1."""
        return 2 * (self.n_decades * self.bins_per_decade + 1) + 1

    @property
    def n_strata(self) -> int:
        """Sample strata S = 2 * decades + 1."""
        return 2 * self.n_decades + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MiningConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def hist_edges(cfg: MiningConfig) -> torch.Tensor:
    """Histogram edges, ``(B - 1,)`` float32, strictly increasing, symmetric around 0."""
    j = np.arange(cfg.n_decades * cfg.bins_per_decade + 1, dtype=np.float64)
    pos = (10.0 ** (cfg.lo_decade + j / cfg.bins_per_decade)).astype(np.float32)
    return torch.from_numpy(np.concatenate([-pos[::-1], pos]).copy())


def bin_strata(cfg: MiningConfig) -> torch.Tensor:
    """Stratum of each histogram bin, ``(B,)`` int64; the near-zero bin is stratum ``decades``."""
    half = cfg.n_decades * cfg.bins_per_decade + 1  # bins on each side of the centre bin
    out = np.empty(cfg.n_bins, dtype=np.int64)
    centre = half
    out[centre] = cfg.n_decades
    for d in range(1, half + 1):
        decade = min((d - 1) // cfg.bins_per_decade, cfg.n_decades - 1)
        out[centre + d] = cfg.n_decades + 1 + decade
        out[centre - d] = cfg.n_decades - 1 - decade
    return torch.from_numpy(out)


def bin_bounds(cfg: MiningConfig, lo: float, hi: float) -> np.ndarray:
    """Lower/upper bound of every bin, ``(B, 2)`` float64, the outer bins clipped to ``[lo, hi]``."""
    edges = hist_edges(cfg).double().numpy()
    lower = np.concatenate([[min(lo, edges[0])], edges])
    upper = np.concatenate([edges, [max(hi, edges[-1])]])
    # The observed range bounds every bin: no quantile is read outside [min, max].
    return np.clip(np.stack([lower, upper], axis=1), lo, hi) if lo <= hi else np.stack([lower, upper], axis=1)


def hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer (xorshift-multiply) on int64 tensors; result in ``[0, 2**32)``.

    Only wrapping int64 multiplication and masks are used, so C++ and Triton reproduce it exactly.
    """
    x = (x ^ (x >> 32)) & MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def position_hash(positions: torch.Tensor, seed: int) -> torch.Tensor:
    """Hash of global token positions, ``(T,)`` int64 → ``(T,)`` int64 in ``[0, 2**31)``."""
    return hash32(positions.to(torch.int64) * 2 + (seed & MASK32) * 0x9E3779B1 + 1) >> 1


def neuron_hash(neuron_ids: torch.Tensor, seed: int) -> torch.Tensor:
    """Hash of global neuron ids (``layer * n_neurons + index``), int64 in ``[0, 2**31)``."""
    return hash32(neuron_ids.to(torch.int64) * 2 + (seed & MASK32) * 0x85EBCA77) >> 1


def priorities(pos_hash: torch.Tensor, neu_hash: torch.Tensor) -> torch.Tensor:
    """Sampling priority of every (token, neuron): ``(T,) x (N,) → (T, N)`` int64 in ``[0, 2**31)``.

    XOR of two independent uniform hashes: for a fixed neuron the tokens' priorities are i.i.d.
    uniform, so each stratum's kept tokens are a uniform random sample of that stratum.
    """
    return pos_hash[:, None] ^ neu_hash[None, :]
