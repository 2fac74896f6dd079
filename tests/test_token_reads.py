"""Mining reads tokens with pread, never through the token store's memory map: every page of a map that is
touched stays resident, so streaming 16M tokens through it added their 64 MB to the miner's peak RSS (the
scaling benchmark's one growing figure); 10⁹ tokens would add 4 GB."""

from __future__ import annotations

import os

import numpy as np
import pytest

from neuronscope.corpus import CorpusSpec, build_token_store
from neuronscope.corpus.packing import make_packing
from neuronscope.corpus.tokenstore import TokenStore
from neuronscope.errors import StoreError


@pytest.fixture(scope="module")
def store(tmp_path_factory, minilm):
    out = tmp_path_factory.mktemp("tok") / "t"
    ts, _ = build_token_store(CorpusSpec("pydoc"), minilm.tokenizer, out, max_tokens=5000)
    return ts


def test_read_equals_the_stored_ids(store):
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = int(rng.integers(0, store.n_tokens))
        n = int(rng.integers(0, store.n_tokens - a + 1))
        np.testing.assert_array_equal(store.read(a, n), np.asarray(store.tokens[a : a + n]))
    for a, n in ((-1, 2), (store.n_tokens - 1, 2), (store.n_tokens + 5, 1)):
        with pytest.raises(StoreError, match="outside"):
            store.read(a, n)


def test_read_in_a_forked_child_opens_its_own_file(store):
    store.read(0, 3)  # the parent's descriptor exists
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh descriptor, the same ids
        try:
            ok = bool(np.array_equal(store.read(10, 7), np.asarray(store.tokens[10:17])))
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"


class NoMap(TokenStore):
    """A token store whose memory map must not be touched."""

    @property
    def tokens(self):
        raise AssertionError("the memory map was read")

    @tokens.setter
    def tokens(self, value):
        pass


def test_packing_reads_without_the_memory_map(store, minilm):
    pk = make_packing(minilm.tokenizer, minilm.model.config, 128, "stream")
    starts, lengths = pk.sequences(store)
    ids, _mask, index, positions = pk.batch(NoMap(store.path), starts[:4], lengths[:4])
    flat = ids.numpy().reshape(-1)[index.numpy()]
    np.testing.assert_array_equal(flat, np.asarray(store.tokens)[positions.numpy()])
