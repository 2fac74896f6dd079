"""Mining inside the model's forward pass: the gated MLPs run the fused Triton activation + mining kernel.

For gated architectures (llama, mistral, qwen2, qwen3, gemma, gemma2) whose activation the kernel knows
(SiLU, GELU-tanh), :func:`fused_mining` swaps each selected MLP's ``forward`` for
``down(fused_gated_act_mine(gate(x), up(x)))``: the activation, the gating product and every statistic
of the layer come out of one kernel pass, and the down projection reads the kernel's output. That output
is ``act(gate) * up`` computed in float32 and rounded once, so a float32 model's outputs change by at
most an ulp or so and a bfloat16 model's stay within bfloat16 rounding (the stock MLP rounds twice).
Every other layer (non-gated architectures, other activations, a device Triton cannot use, a forced
``ref``/``cpu`` backend) is mined from a forward pre-hook on the down projection, as ``mine`` does.

    with fused_mining(subject, layers, stats, cfg, backend="triton") as fm:
        for ids, mask, index, positions in batches:
            fm.set_batch(index, positions)
            subject.model(input_ids=ids, attention_mask=mask)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..mining.backend import resolve_backend
from ..mining.spec import MiningConfig
from ..mining.stats import LayerStats
from .hooks import _StopForward
from .loading import Subject
from .registry import blocks, down_projection, get_path

Mode = Literal["fused", "hook"]

_SILU = {"SiLUActivation", "SiLU"}
_GELU_TANH = {"GELUTanh", "PytorchGELUTanh", "NewGELUActivation", "FastGELUActivation", "GeluTanh"}


def gated_activation(mlp: nn.Module) -> Literal["silu", "gelu_tanh"] | None:
    """The fused kernel's name for ``mlp.act_fn``, or None when the kernel does not implement it."""
    act = getattr(mlp, "act_fn", None)
    name = type(act).__name__
    if name in _SILU:
        return "silu"
    if name in _GELU_TANH or (isinstance(act, nn.GELU) and act.approximate == "tanh"):
        return "gelu_tanh"
    return None


def _fusable(mlp: nn.Module) -> bool:
    """A stock gated MLP: gate/up/down projections and an activation, no instance-level forward
    (accelerate's offload hooks and similar wrappers install one; they keep the hook path)."""
    return (all(isinstance(getattr(mlp, p, None), nn.Module) for p in ("gate_proj", "up_proj", "down_proj"))
            and "forward" not in vars(mlp) and gated_activation(mlp) is not None)


@dataclass
class FusedMining:
    """The handle of an active :func:`fused_mining` block; call :meth:`set_batch` before every forward."""

    modes: dict[int, Mode] = field(default_factory=dict)
    """How each layer is mined: ``fused`` (kernel inside the MLP) or ``hook`` (pre-hook + miner)."""
    backend: str = "ref"
    """The miner used by the hook path (``triton``, ``cpu`` or ``ref``)."""
    index: torch.Tensor | None = None
    """(V,) int64 rows of the flattened (batch * seq) activations to mine (the valid tokens)."""
    positions: torch.Tensor | None = None
    """(V,) int64 global token positions of those rows."""

    _rows: object = field(default=None, init=False, repr=False)
    """kernels.mine.BatchRows of the current batch, built by its first mined layer."""

    def set_batch(self, index: torch.Tensor, positions: torch.Tensor) -> None:
        """The valid rows of the next forward pass and their global positions, both (V,) on the model's device."""
        if index.dim() != 1 or index.shape != positions.shape:
            raise ConfigError(f"index and positions must be 1-D of the same length, got {tuple(index.shape)} "
                              f"and {tuple(positions.shape)}")
        self.index, self.positions, self._rows = index, positions, None

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(index, positions) of the current batch; raises if :meth:`set_batch` was not called."""
        if self.index is None or self.positions is None:
            raise ConfigError("call set_batch(index, positions) before the forward pass")
        return self.index, self.positions

    def rows(self, n_rows: int, device: torch.device):
        """The batch's mined rows as ``kernels.mine.BatchRows`` (built once, shared by every layer)."""
        self.batch()
        if self._rows is None or self._rows.n_rows != n_rows:
            from ..kernels.mine import batch_rows

            self._rows = batch_rows(n_rows, self.positions, self.index, device)
        return self._rows


@contextmanager
def fused_mining(
    subject: Subject,
    layers: Sequence[int],
    stats: dict[int, LayerStats],
    cfg: MiningConfig,
    *,
    backend: str | None = None,
    stop_after_deepest: bool = False,
) -> Iterator[FusedMining]:
    """Within the block, every forward pass of ``subject.model`` folds each layer of ``layers`` into ``stats``.

    stats: layer → LayerStats of ``subject.n_neurons`` neurons on the model's device (updated in place).
    backend: as ``mine``'s (``NEURONSCOPE_BACKEND`` when None); the MLPs are fused only when it resolves
    to ``triton`` and the model is on CUDA (or the CPU under ``TRITON_INTERPRET=1``). The neuron offset
    of layer ``l`` is ``l * n_neurons``, as in ``mine``. stop_after_deepest: raise
    ``models.hooks._StopForward`` once the deepest selected layer is mined, skipping the rest of the
    forward (suppress it around the call, as ``mine`` does). The patched forwards and hooks are removed
    on exit, also on errors.
    """
    layers = sorted(set(int(x) for x in layers))
    missing = [x for x in layers if x not in stats]
    if missing:
        raise ConfigError(f"stats has no LayerStats for layers {missing}")
    device = subject.device
    name, miner = resolve_backend(backend, device)
    fuse_ok = name == "triton" and _kernel_runs_on(device)
    n = subject.n_neurons
    deepest = layers[-1] if layers else None
    handle = FusedMining(backend=name)
    patched: list[nn.Module] = []
    hooks = []
    try:
        for layer in layers:
            mlp = get_path(blocks(subject.model, subject.spec)[layer], subject.spec.mlp)
            if fuse_ok and subject.spec.kind == "gated" and _fusable(mlp):
                mlp.forward = _fused_forward(mlp, layer, stats[layer], cfg, n, handle,
                                             stop_after_deepest and layer == deepest)
                patched.append(mlp)
                handle.modes[layer] = "fused"
            else:
                hook = _mining_hook(layer, stats[layer], cfg, n, handle, miner, name,
                                    stop_after_deepest and layer == deepest)
                hooks.append(down_projection(subject.model, subject.spec, layer).register_forward_pre_hook(hook))
                handle.modes[layer] = "hook"
        yield handle
    finally:
        for mlp in patched:
            del mlp.forward  # the class's forward is visible again
        for h in hooks:
            h.remove()


def _kernel_runs_on(device: torch.device) -> bool:
    from ..kernels.mine import _triton_ok

    return _triton_ok(torch.empty(0, device=device))


def _fused_forward(mlp: nn.Module, layer: int, st: LayerStats, cfg: MiningConfig, n: int, handle: FusedMining,
                   stop: bool):
    from ..kernels.mine import fused_gated_act_mine

    act = gated_activation(mlp)

    def forward(x: torch.Tensor) -> torch.Tensor:
        gate, up = mlp.gate_proj(x), mlp.up_proj(x)
        rows = handle.rows(gate.numel() // gate.shape[-1], gate.device)
        h = fused_gated_act_mine(gate, up, act, st, neuron_offset=layer * n, cfg=cfg, rows=rows)
        if stop:
            raise _StopForward
        return mlp.down_proj(h)

    return forward


def _mining_hook(layer: int, st: LayerStats, cfg: MiningConfig, n: int, handle: FusedMining, miner, name: str,
                 stop: bool):
    def hook(_module: nn.Module, args: tuple) -> None:
        acts = args[0]
        flat = acts.reshape(-1, acts.shape[-1])
        if name == "triton":  # mines the valid rows in place, no gathered copy
            from ..kernels.mine import mine_stats

            mine_stats(st, flat, None, layer * n, cfg, rows=handle.rows(flat.shape[0], flat.device))
        else:
            index, positions = handle.batch()
            miner(st, flat.index_select(0, index), positions, layer * n, cfg)
        if stop:
            raise _StopForward

    return hook
