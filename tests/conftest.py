"""Shared fixtures: the embedded MiniLM subject, small tokenizers and tiny random decoder models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, os.cpu_count() or 1))
if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors through the interpreter; it must be on before any kernel is defined.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def minilm():
    from neuronscope.models import load_subject

    return load_subject("minilm")


def _pydoc_text() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A byte-level BPE tokenizer (GPT-2 style, 'Ġ' marks a leading space) trained on pydoc."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_pydoc_text(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="session")
def sp_tokenizer():
    """A SentencePiece-style (Metaspace '▁') BPE tokenizer that prepends <s>, like Llama's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(_pydoc_text(), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def tiny_config(arch: str, vocab: int = 400):
    """A randomly initialised, tiny config of each supported decoder architecture (no download)."""
    from transformers import (
        Gemma2Config,
        GemmaConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
        Qwen3Config,
    )

    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "mistral":
        return MistralConfig(**common, sliding_window=None)
    if arch == "qwen2":
        return Qwen2Config(**common)
    if arch == "qwen3":
        return Qwen3Config(**common, head_dim=8)
    if arch == "gemma":
        return GemmaConfig(**common, head_dim=8)
    if arch == "gemma2":
        return Gemma2Config(**common, head_dim=8)
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab, n_embd=32, n_inner=48, n_layer=2, n_head=4, n_positions=128)
    if arch == "gpt_neox":
        return GPTNeoXConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                             num_attention_heads=4, max_position_embeddings=128)
    raise ValueError(arch)


DECODERS = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gpt2", "gpt_neox"]


def tiny_subject(arch: str, tokenizer):
    from transformers import AutoModel

    from neuronscope.models import wrap_subject

    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_config(arch, vocab=len(tokenizer)), attn_implementation="eager")
    return wrap_subject(model, tokenizer, model_id=f"tiny-{arch}")


@pytest.fixture(scope="session")
def minilm_store(minilm, tmp_path_factory):
    """A small real store: MiniLM layers 1 and 3 over the first 6,000 pydoc tokens (k = 16)."""
    from neuronscope import MiningConfig, mine

    out = tmp_path_factory.mktemp("store") / "s"
    return mine(minilm, "pydoc", out, layers=[1, 3], config=MiningConfig(k=16, samples_per_stratum=2),
                max_tokens=6000, seq_len=128, progress=False)
