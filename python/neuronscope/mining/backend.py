"""Choosing the miner implementation: Triton on CUDA, the C++ core on CPU, the PyTorch reference anywhere.

``NEURONSCOPE_BACKEND=ref|cpu|triton`` (or the ``backend`` argument) forces one. Nothing here touches a
device at import time.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from .. import native
from ..errors import ConfigError
from .reference import mine_ref
from .spec import MiningConfig
from .stats import LayerStats

MinerFn = Callable[[LayerStats, torch.Tensor, torch.Tensor, int, MiningConfig], LayerStats]
BACKENDS = ("auto", "ref", "cpu", "triton")


def _triton_miner() -> MinerFn | None:
    try:
        from neuronscope.kernels.mine import mine_stats  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        return None
    return mine_stats


def resolve_backend(name: str | None, device: torch.device | str) -> tuple[str, MinerFn]:
    """The (name, function) of the miner to use for activations on ``device``."""
    name = (name or os.environ.get("NEURONSCOPE_BACKEND") or "auto").lower()
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    is_cuda = torch.device(device).type == "cuda"
    if name == "auto":
        if is_cuda and _triton_miner() is not None:
            name = "triton"
        elif not is_cuda and native.available():
            name = "cpu"
        else:
            name = "ref"
    if name == "ref":
        return name, mine_ref
    if name == "cpu":
        if is_cuda:
            raise ConfigError("backend 'cpu' needs activations on the CPU; use --device cpu or another backend")
        if not native.available():
            raise ConfigError(f"backend 'cpu' is unavailable: {native.unavailable_reason()}")
        from .cpu import mine_cpu

        return name, mine_cpu
    fn = _triton_miner()
    if fn is None:
        raise ConfigError("backend 'triton' is unavailable: install triton (pip install triton)")
    return name, fn
