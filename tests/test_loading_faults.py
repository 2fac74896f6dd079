"""Model loading faults (issue 17 item 18): pickle weights only with an opt-in, a device this torch cannot
use named before anything loads."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_subject
from neuronscope.errors import ConfigError, ModelError
from neuronscope.models import load_subject, wrap_subject
from neuronscope.models.hooks import layer_activations
from neuronscope.models.loading import ALLOW_PICKLE_ENV, check_device


@pytest.fixture
def pickle_only_dir(tmp_path, sp_tokenizer, monkeypatch):
    """A tiny llama directory whose weights are only ``pytorch_model.bin``; returns (subject, path)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    subject = tiny_subject("llama", sp_tokenizer)
    subject.model.save_pretrained(tmp_path)
    sp_tokenizer.save_pretrained(tmp_path)
    torch.save(load_file(tmp_path / "model.safetensors"), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    return subject, tmp_path


def test_pickle_only_model_is_refused_by_default(pickle_only_dir, monkeypatch):
    _, path = pickle_only_dir
    loaded_pickle = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: (loaded_pickle.append(a), real_load(*a, **k))[1])
    with pytest.raises(ModelError, match=r"holds only pickle weights \(pytorch_model\.bin\).*--allow-pickle"):
        load_subject(str(path))
    assert not loaded_pickle  # refused before any unpickling


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_pickle_weights_load_when_the_user_opts_in(pickle_only_dir, monkeypatch, how):
    subject, path = pickle_only_dir
    if how == "argument":
        loaded = load_subject(str(path), allow_pickle=True)
    else:
        monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
        loaded = load_subject(str(path))
    ids = torch.randint(3, 300, (1, 9))
    want, got = (layer_activations(s, ids, None, [1])[1] for s in (subject, loaded))
    torch.testing.assert_close(got, want)


def test_safetensors_are_used_when_both_are_present(pickle_only_dir):
    subject, path = pickle_only_dir
    subject.model.save_pretrained(path)  # model.safetensors beside pytorch_model.bin
    (path / "pytorch_model.bin").write_bytes(b"not a pickle at all")  # never read
    assert load_subject(str(path)).model_type == "llama"


def _cpu_only_torch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None, raising=False)


def test_cuda_on_cpu_only_torch_is_a_named_error_not_an_assertion(pickle_only_dir, monkeypatch, sp_tokenizer):
    _, path = pickle_only_dir
    _cpu_only_torch(monkeypatch)
    message = r"device 'cuda' is not available: torch .* was built without CUDA \(a CPU-only install\); available: cpu"
    with pytest.raises(ConfigError, match=message):
        load_subject(str(path), device="cuda")  # checked before the pickle-only refusal: nothing loads
    with pytest.raises(ConfigError, match=message):
        wrap_subject(tiny_subject("llama", sp_tokenizer).model, sp_tokenizer, model_id="tiny", device="cuda")


def test_device_names_are_checked(monkeypatch):
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"device 'gpu0' is not a torch device name .*available: cpu"):
        check_device("gpu0")
    _cpu_only_torch(monkeypatch)
    with pytest.raises(ConfigError, match=r"device 'cuda:1' is not available"):
        check_device("cuda:1")
