"""Thread budget of the agent loop: small tensors run single-threaded, forward passes get the threads back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_MODEL_THREADS = [torch.get_num_threads()]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Runs the block with n intra-op threads (None: the count the process had before the agent took over).

    The agent's tensors are small (a few thousand tokens): extra threads only add synchronisation, so the
    loop runs single-threaded and gives the threads back for subject-model forward passes (probes).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(n if n is not None else _MODEL_THREADS[0])
    try:
        yield
    finally:
        torch.set_num_threads(old)


def remember_model_threads() -> None:
    """Records the process's thread count as the one forward passes get back (see :func:`torch_threads`)."""
    _MODEL_THREADS[0] = torch.get_num_threads()
