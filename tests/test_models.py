"""Where the neurons are: hooked values equal a manual recomputation of each architecture's MLP."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import DECODERS, tiny_subject
from neuronscope.errors import ModelError, UnsupportedModelError
from neuronscope.models import blocks, load_subject
from neuronscope.models.hooks import layer_activations
from neuronscope.models.registry import get_path


def manual_mlp_neurons(subject, layer: int, x: torch.Tensor) -> torch.Tensor:
    """The MLP's hidden units recomputed by hand from the MLP's input ``x``."""
    mlp = get_path(blocks(subject.model, subject.spec)[layer], subject.spec.mlp)
    t = subject.model_type
    if subject.spec.kind == "gated":
        return mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
    if t == "gpt2":
        return mlp.act(mlp.c_fc(x))
    if t == "gpt_neox":
        return mlp.act(mlp.dense_h_to_4h(x))
    if t == "bert":
        return mlp.intermediate_act_fn(mlp.dense(x))
    raise AssertionError(t)


def check_hooked_equals_manual(subject, ids: torch.Tensor, mask: torch.Tensor) -> None:
    inputs: dict[int, torch.Tensor] = {}
    handles = []
    for layer in range(subject.n_layers):
        mlp = get_path(blocks(subject.model, subject.spec)[layer], subject.spec.mlp)
        handles.append(mlp.register_forward_pre_hook(
            lambda _m, args, _l=layer: inputs.__setitem__(_l, args[0].detach().clone())))
    try:
        hooked = layer_activations(subject, ids, mask, list(range(subject.n_layers)))
    finally:
        for h in handles:
            h.remove()
    for layer in range(subject.n_layers):
        with torch.no_grad():
            want = manual_mlp_neurons(subject, layer, inputs[layer])
        assert hooked[layer].shape == (*ids.shape, subject.n_neurons)
        torch.testing.assert_close(hooked[layer], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", DECODERS)
def test_decoder_hooks_match_manual_mlp(arch, bpe_tokenizer):
    subject = tiny_subject(arch, bpe_tokenizer)
    assert subject.n_neurons == 48
    assert subject.n_layers == 2
    ids = torch.randint(3, len(bpe_tokenizer), (2, 11))
    check_hooked_equals_manual(subject, ids, torch.ones_like(ids))


def test_minilm_hooks_match_manual_mlp(minilm):
    assert (minilm.n_layers, minilm.n_neurons, minilm.model_type) == (6, 1536, "bert")
    enc = minilm.tokenizer(["the quick brown fox", "def f(x): return x"], padding=True, return_tensors="pt")
    check_hooked_equals_manual(minilm, enc["input_ids"], enc["attention_mask"])


def test_load_from_local_directory_without_download(tmp_path, sp_tokenizer, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    subject = tiny_subject("llama", sp_tokenizer)
    subject.model.save_pretrained(tmp_path)
    sp_tokenizer.save_pretrained(tmp_path)
    loaded = load_subject(str(tmp_path))
    assert loaded.model_type == "llama"
    assert loaded.n_neurons == 48
    ids = torch.randint(3, 300, (1, 9))
    a = layer_activations(subject, ids, None, [1])[1]
    b = layer_activations(loaded, ids, None, [1])[1]
    torch.testing.assert_close(a, b)


def test_unsupported_architecture_lists_supported(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8}))
    with pytest.raises(UnsupportedModelError, match=r"unsupported architecture 't5'.*llama.*qwen3"):
        load_subject(str(tmp_path))


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_subject(str(tmp_path / "nope" / "model"))
