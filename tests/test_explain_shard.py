"""``explain --shard K/N``: N runs split the neurons without overlap or gap and their outputs concatenate into
exactly the rows of one run."""

from __future__ import annotations

import json

import pytest

from neuronscope.agents import explain
from neuronscope.agents.run import parse_shard, shard_neurons
from neuronscope.errors import ConfigError


def test_shards_partition_any_neuron_list():
    neurons = [(layer, i) for layer in (0, 3, 11) for i in range(0, 500, 7)]
    for n in (1, 2, 3, 8):
        parts = [shard_neurons(neurons, f"{k}/{n}") for k in range(n)]
        assert sorted(x for p in parts for x in p) == sorted(neurons)  # no gap
        assert sum(len(p) for p in parts) == len(neurons)  # no overlap
        assert max(len(p) for p in parts) - min(len(p) for p in parts) <= len(neurons) // n // 2 + 2  # balanced
    # The owner depends on the neuron alone: a sub-list puts each neuron in the same shard.
    sub = neurons[::5]
    assert shard_neurons(sub, "1/3") == [x for x in shard_neurons(neurons, "1/3") if x in set(sub)]
    assert shard_neurons(neurons, None) == neurons


@pytest.mark.parametrize("bad", ["3/3", "-1/2", "1/0", "a/b", "1-2"])
def test_bad_shards_are_config_errors(bad):
    with pytest.raises(ConfigError, match="shard"):
        parse_shard(bad)


def test_shard_outputs_concatenate_into_one_run(minilm_store, tmp_path):
    from neuronscope.scoring.run import StoreSource

    source = StoreSource(minilm_store)
    neurons = [(1, i) for i in range(6)] + [(3, i) for i in range(3)]

    def run(out, shard=None):
        explain(source, neurons, out, methods=("single-pass", "top-tokens"), progress=False, shard=shard)
        return [json.loads(x) for x in out.read_text().splitlines()]

    whole = run(tmp_path / "all.jsonl")
    parts = [run(tmp_path / f"part{k}.jsonl", f"{k}/3") for k in range(3)]
    assert all(parts)
    merged = [r for p in parts for r in p]

    def key(r):
        return r["layer"], r["index"], r["method"]

    def same(r):
        return {k: v for k, v in r.items() if k != "seconds"}

    assert sorted(map(key, merged)) == sorted(map(key, whole))
    by = {key(r): same(r) for r in whole}
    assert all(same(r) == by[key(r)] for r in merged)
