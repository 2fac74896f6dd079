"""Triton for the kernel tests, and proof that the kernels (not their reference fallback) ran.

Without Triton, or without a device to run the kernels on (CUDA, or the CPU with ``TRITON_INTERPRET=1``),
the kernel tests skip, unless ``NEURONSCOPE_REQUIRE_TRITON=1`` (set by ``scripts/test.sh``): then they
fail, so that CI never passes by skipping them.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import NoReturn

import pytest
import torch

REQUIRE_ENV = "NEURONSCOPE_REQUIRE_TRITON"


def unavailable(reason: str) -> NoReturn:
    """Skips the calling test (or test module), or fails it when Triton is required."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 forbids skipping the Triton tests", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_triton() -> ModuleType:
    """The ``triton`` module; without it the caller skips (or fails, see the module docstring)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel is defined
    try:
        import triton
    except ImportError as e:
        reason = f"triton is not importable ({e}; pip install triton)"
    else:
        return triton
    unavailable(reason)  # outside the except: the failure reads as itself, not as a chained ImportError


def kernel_device(kernel: object) -> str:
    """Where the kernel tests run: ``"cuda"``, or ``"cpu"`` when ``kernel`` (a ``@triton.jit`` function)
    was defined under the interpreter."""
    if torch.cuda.is_available():
        return "cuda"
    if type(kernel).__name__ != "InterpretedFunction":
        unavailable("no CUDA device and the kernels were imported without TRITON_INTERPRET=1")
    return "cpu"


def forbid_reference_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes the Triton miner fail where it would silently mine with ``mine_ref`` instead of its kernels
    (a device it cannot run on, a grid beyond float32's normal range)."""
    from neuronscope.kernels import mine as km

    def fallback(*_args, **_kwargs):
        raise AssertionError("the Triton miner fell back to mine_ref: its kernels did not run")

    monkeypatch.setattr(km, "_mine_ref_rows", fallback)
