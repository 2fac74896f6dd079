"""Per-layer streaming statistics of N neurons: the state every miner updates and every store holds."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..errors import StoreError
from .spec import MiningConfig


@dataclass
class LayerStats:
    """Streaming statistics of the N neurons of one layer (all tensors on CPU unless a miner moves them).

    Shapes: K = ``cfg.k``, Kb = ``cfg.bottom_k``, B = ``cfg.n_bins``, S = ``cfg.n_strata``,
    R = ``cfg.samples_per_stratum``.
    """

    topk_values: torch.Tensor  # (N, K) float32, descending
    topk_positions: torch.Tensor  # (N, K) int64, -1 = empty slot
    bottomk_values: torch.Tensor  # (N, Kb) float32, ascending
    bottomk_positions: torch.Tensor  # (N, Kb) int64
    count: torch.Tensor  # (N,) int64, finite values seen
    mean: torch.Tensor  # (N,) float64
    m2: torch.Tensor  # (N,) float64, sum of squared deviations (Welford / Chan)
    min: torch.Tensor  # (N,) float32 (+inf when empty)
    max: torch.Tensor  # (N,) float32 (-inf when empty)
    positive: torch.Tensor  # (N,) int64, values > 0
    nonfinite: torch.Tensor  # (N,) int64, NaN/inf values skipped
    hist: torch.Tensor  # (N, B) int64
    sample_values: torch.Tensor  # (N, S, R) float32
    sample_positions: torch.Tensor  # (N, S, R) int64, -1 = empty
    sample_priority: torch.Tensor  # (N, S, R) int64, descending, -1 = empty

    @classmethod
    def empty(cls, n: int, cfg: MiningConfig, device: torch.device | str = "cpu") -> LayerStats:
        """The statistics of no tokens at all."""
        k, kb, s, r = cfg.k, cfg.bottom_k, cfg.n_strata, cfg.samples_per_stratum

        def full(shape: tuple, value: float, dtype: torch.dtype) -> torch.Tensor:
            return torch.full(shape, value, dtype=dtype, device=device)

        return cls(
            topk_values=full((n, k), -float("inf"), torch.float32),
            topk_positions=full((n, k), -1, torch.int64),
            bottomk_values=full((n, kb), float("inf"), torch.float32),
            bottomk_positions=full((n, kb), -1, torch.int64),
            count=full((n,), 0, torch.int64),
            mean=full((n,), 0.0, torch.float64),
            m2=full((n,), 0.0, torch.float64),
            min=full((n,), float("inf"), torch.float32),
            max=full((n,), -float("inf"), torch.float32),
            positive=full((n,), 0, torch.int64),
            nonfinite=full((n,), 0, torch.int64),
            hist=full((n, cfg.n_bins), 0, torch.int64),
            sample_values=full((n, s, r), 0.0, torch.float32),
            sample_positions=full((n, s, r), -1, torch.int64),
            sample_priority=full((n, s, r), -1, torch.int64),
        )

    @property
    def n_neurons(self) -> int:
        return int(self.count.shape[0])

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Name → contiguous CPU tensor, for safetensors."""
        return {f.name: getattr(self, f.name).detach().cpu().contiguous() for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], cfg: MiningConfig, where: str = "") -> LayerStats:
        """Inverse of :meth:`to_tensors`, validating names and shapes against ``cfg``."""
        missing = [f.name for f in fields(cls) if f.name not in tensors]
        if missing:
            raise StoreError(f"{where}: missing tensors {missing}")
        out = cls(**{f.name: tensors[f.name] for f in fields(cls)})
        n = out.n_neurons
        expect = cls.empty(0, cfg)
        for f in fields(cls):
            got = tuple(getattr(out, f.name).shape)
            want = (n, *tuple(getattr(expect, f.name).shape)[1:])
            if got != want or getattr(out, f.name).dtype != getattr(expect, f.name).dtype:
                raise StoreError(
                    f"{where}: tensor {f.name!r} has shape {got} / {getattr(out, f.name).dtype}, "
                    f"expected {want} / {getattr(expect, f.name).dtype}"
                )
        return out

    def equal(self, other: LayerStats, moments_rtol: float = 0.0) -> bool:
        """True when every statistic is identical (moments within ``moments_rtol``)."""
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in ("mean", "m2") and moments_rtol > 0:
                if not torch.allclose(a, b, rtol=moments_rtol, atol=moments_rtol):
                    return False
            elif a.shape != b.shape or not torch.equal(a, b):
                return False
        return True
