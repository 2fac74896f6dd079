"""Where the kernels of this package run: a CUDA device, or the CPU under Triton's interpreter.

Shared by every launcher (``mine``, ``corr``). Imports no Triton (``corr``'s reference path works without
it) and queries no device at import time.
"""

from __future__ import annotations

import os

import torch

__all__ = ["interpreting", "sm_count", "triton_ok"]


def interpreting() -> bool:
    """Whether kernels run under the interpreter (``TRITON_INTERPRET`` set to anything but 0)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_ok(t: torch.Tensor) -> bool:
    """Whether a kernel can run on ``t``'s device: CUDA, or the CPU under ``TRITON_INTERPRET=1``."""
    return t.device.type == "cuda" or (interpreting() and t.device.type == "cpu")


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of the CUDA ``device`` (grids are sized in programs per SM)."""
    return torch.cuda.get_device_properties(device).multi_processor_count
