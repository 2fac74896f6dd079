"""Mining inside the forward pass (models.fused) on tiny random models of every decoder architecture.

The fused MLPs must leave the model's outputs unchanged (float32: within a few ulps; bfloat16: within
bfloat16 rounding) and their statistics must equal ``mine_ref`` of exactly what each down projection
reads. Runs the kernels under ``TRITON_INTERPRET=1`` without a CUDA device, and fails if the miner falls
back to ``mine_ref`` instead of running them.
"""

from __future__ import annotations

import pytest
import torch

from triton_required import forbid_reference_fallback, import_triton, kernel_device

import_triton()

from neuronscope.kernels import _mine_scan  # noqa: E402

from conftest import DECODERS, tiny_subject  # noqa: E402
from neuronscope.errors import ConfigError  # noqa: E402
from neuronscope.mining import LayerStats, MiningConfig, mine_ref  # noqa: E402
from neuronscope.models import blocks, down_projection  # noqa: E402
from neuronscope.models.fused import fused_mining  # noqa: E402
from neuronscope.models.hooks import _StopForward, neuron_hooks  # noqa: E402
from test_kernels_mine import assert_same  # noqa: E402

CFG = MiningConfig(k=5, bottom_k=3, samples_per_stratum=2, seed=4)
GATED = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"}


@pytest.fixture(scope="module")
def device() -> str:
    return kernel_device(_mine_scan._mine_kernel)


@pytest.fixture(autouse=True)
def kernels_only(monkeypatch) -> None:
    forbid_reference_fallback(monkeypatch)


def _batch(seed: int, vocab: int):
    """Two padded sequences: ids (2, 13), mask, the valid rows of the flattened batch, their positions."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, 13), generator=gen)
    mask = torch.ones(2, 13, dtype=torch.long)
    mask[1, 9:] = 0
    index = mask.reshape(-1).nonzero()[:, 0]
    return ids, mask, index, torch.arange(index.numel()) + 1000 * seed


def _run(subject, batches, layers, backend, dtype=torch.float32):
    """Mines ``batches`` with fused_mining; returns (outputs, stats, reference stats, modes)."""
    n, dev = subject.n_neurons, subject.device
    stats = {layer: LayerStats.empty(n, CFG, device=dev) for layer in layers}
    ref = {layer: LayerStats.empty(n, CFG) for layer in layers}
    ctx = {}

    def capture(layer, acts):  # what the down projection reads, inside the same (fused) forward
        mine_ref(ref[layer], acts.reshape(-1, n)[ctx["index"]].cpu(), ctx["positions"].cpu(), layer * n, CFG)

    outs = []
    with torch.inference_mode(), fused_mining(subject, layers, stats, CFG, backend=backend) as fm, \
            neuron_hooks(subject, layers, capture):
        for ids, mask, index, positions in batches:
            ctx["index"], ctx["positions"] = index.to(dev), positions.to(dev)
            fm.set_batch(ctx["index"], ctx["positions"])
            outs.append(subject.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).last_hidden_state)
    return outs, stats, ref, fm.modes


@pytest.mark.parametrize("arch", DECODERS)
def test_outputs_unchanged_and_stats_exact(arch, bpe_tokenizer, device):
    subject = tiny_subject(arch, bpe_tokenizer)
    subject.model.to(device)
    batches = [_batch(1, len(bpe_tokenizer)), _batch(2, len(bpe_tokenizer))]
    with torch.inference_mode():
        plain = [subject.model(input_ids=i.to(device), attention_mask=m.to(device)).last_hidden_state
                 for i, m, _, _ in batches]
    layers = list(range(subject.n_layers))
    outs, stats, ref, modes = _run(subject, batches, layers, "triton")
    assert set(modes.values()) == ({"fused"} if arch in GATED else {"hook"})
    for got, want in zip(outs, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for layer in layers:
        assert_same(stats[layer], ref[layer])
    # The patches are gone: the class forward is back and no hook is left on the down projections.
    for layer in layers:
        assert "forward" not in vars(blocks(subject.model, subject.spec)[layer].mlp)
        assert not down_projection(subject.model, subject.spec, layer)._forward_pre_hooks


@pytest.mark.parametrize("arch", ["llama", "gemma"])
def test_bfloat16_outputs_within_rounding(arch, bpe_tokenizer, device):
    subject = tiny_subject(arch, bpe_tokenizer)
    subject.model.to(device=device, dtype=torch.bfloat16)
    batches = [_batch(3, len(bpe_tokenizer))]
    ids, mask, _, _ = batches[0]
    with torch.inference_mode():
        plain = subject.model(input_ids=ids.to(device), attention_mask=mask.to(device)).last_hidden_state
    outs, stats, ref, modes = _run(subject, batches, [0, 1], "triton")
    assert set(modes.values()) == {"fused"}
    torch.testing.assert_close(outs[0], plain, rtol=2e-2, atol=2e-2)
    for layer in (0, 1):
        assert_same(stats[layer], ref[layer], moments_rtol=1e-9)


def test_forced_reference_backend_uses_hooks(bpe_tokenizer, device):
    subject = tiny_subject("qwen2", bpe_tokenizer)
    subject.model.to(device)
    _, stats, ref, modes = _run(subject, [_batch(4, len(bpe_tokenizer))], [1], "ref")
    assert modes == {1: "hook"}
    assert_same(stats[1], ref[1])


def test_stop_after_deepest_and_errors(bpe_tokenizer, device):
    subject = tiny_subject("llama", bpe_tokenizer)
    subject.model.to(device)
    ids, mask, index, positions = _batch(5, len(bpe_tokenizer))
    stats = {0: LayerStats.empty(subject.n_neurons, CFG, device=device)}
    with torch.inference_mode(), fused_mining(subject, [0], stats, CFG, backend="triton",
                                              stop_after_deepest=True) as fm:
        with pytest.raises(ConfigError, match="set_batch"):
            subject.model(input_ids=ids.to(device), attention_mask=mask.to(device))
        fm.set_batch(index.to(device), positions.to(device))
        with pytest.raises(_StopForward):
            subject.model(input_ids=ids.to(device), attention_mask=mask.to(device))
    assert int(stats[0].count.sum()) == index.numel() * subject.n_neurons
    with pytest.raises(ConfigError, match="no LayerStats"), fused_mining(subject, [0, 1], stats, CFG):
        pass
