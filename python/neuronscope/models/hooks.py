"""Capturing MLP neuron activations with forward pre-hooks on the down projections."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import torch

from .loading import Subject
from .registry import down_projection

ActivationCallback = Callable[[int, torch.Tensor], None]
"""Called as ``callback(layer, acts)`` with ``acts: (batch, seq, n_neurons)`` for every hooked layer."""


@contextmanager
def neuron_hooks(subject: Subject, layers: Sequence[int], callback: ActivationCallback) -> Iterator[None]:
    """Within the block, every forward pass calls ``callback`` with each selected layer's neurons.

    The hook reads the down projection's input, so the model's outputs are untouched.
    """
    handles = []
    try:
        for layer in layers:
            module = down_projection(subject.model, subject.spec, layer)

            def hook(_module: torch.nn.Module, args: tuple, _layer: int = layer) -> None:
                callback(_layer, args[0])

            handles.append(module.register_forward_pre_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


class _StopForward(Exception):
    """Raised by a hook after the last needed layer to skip the rest of the forward pass."""


@torch.inference_mode()
def layer_activations(
    subject: Subject,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    layers: Sequence[int],
) -> dict[int, torch.Tensor]:
    """Runs one forward pass and returns ``{layer: acts (batch, seq, n_neurons)}`` for ``layers``.

    Layers past the deepest requested one are not computed.
    """
    wanted = sorted(set(layers))
    out: dict[int, torch.Tensor] = {}

    def keep(layer: int, acts: torch.Tensor) -> None:
        out[layer] = acts.detach().clone()
        if layer == wanted[-1]:
            raise _StopForward

    with neuron_hooks(subject, wanted, keep), suppress(_StopForward):
        subject.model(input_ids=input_ids, attention_mask=attention_mask)
    return out
