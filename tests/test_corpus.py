"""Corpus readers, skip accounting, tokenization and packing."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neuronscope.corpus import CorpusSpec, SkipCounts, TokenStore, build_token_store, iter_documents
from neuronscope.corpus.packing import Packing, make_packing
from neuronscope.errors import CorpusError


def docs(spec: CorpusSpec) -> tuple[list[str], dict]:
    skips = SkipCounts()
    return list(iter_documents(spec, skips)), skips.as_dict()


def test_jsonl_bad_lines_are_skipped_and_counted(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_bytes(b'{"text": "first doc"}\n{not json\n{"body": "x"}\n{"text": 3}\n{"text": "   "}\n\n'
                  b'{"text": "bad \xff utf8"}\n{"text": "second doc"}\n')
    got, skipped = docs(CorpusSpec(str(f)))
    assert got == ["first doc", "second doc"]
    assert skipped == {"empty": 2, "invalid_json": 1, "invalid_utf8": 1, "missing_field": 2}


def test_jsonl_custom_field(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"body": "hello"}) + "\n")
    assert docs(CorpusSpec(str(f), text_field="body"))[0] == ["hello"]


def test_txt_paragraphs_lines_and_file(tmp_path):
    f = tmp_path / "c.txt"
    f.write_bytes(b"one\ntwo\n\n\nthree \xfe\nfour\n")
    assert docs(CorpusSpec(str(f)))[0] == ["one\ntwo", "four"]
    assert docs(CorpusSpec(str(f)))[1] == {"invalid_utf8": 1}
    assert docs(CorpusSpec(str(f), doc_split="line"))[0] == ["one", "two", "four"]
    assert docs(CorpusSpec(str(f), doc_split="file"))[0] == ["one\ntwo\n\n\nfour"]


def test_parquet_and_directory_order(tmp_path):
    pq.write_table(pa.table({"text": ["a b", None, "c d", ""]}), tmp_path / "b.parquet")
    (tmp_path / "a.txt").write_text("zero")
    got, skipped = docs(CorpusSpec(str(tmp_path)))
    assert got == ["zero", "a b", "c d"]
    assert skipped == {"empty": 1, "missing_field": 1}


def test_parquet_missing_column_and_corrupt_file(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(CorpusError, match="no column 'text'"):
        docs(CorpusSpec(str(tmp_path / "a.parquet")))
    (tmp_path / "b.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CorpusError, match=r"b\.parquet"):
        docs(CorpusSpec(str(tmp_path / "b.parquet")))


def test_saved_hf_dataset_directory(tmp_path):
    # The layout datasets.save_to_disk writes: Arrow stream files listed in state.json.
    table = pa.table({"text": ["alpha", "beta", ""]})
    arrow = str(tmp_path / "data-00000-of-00001.arrow")
    with pa.OSFile(arrow, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (tmp_path / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (tmp_path / "dataset_info.json").write_text("{}")
    got, skipped = docs(CorpusSpec(str(tmp_path)))
    assert got == ["alpha", "beta"]
    assert skipped == {"empty": 1}


def test_pydoc_and_missing_sources():
    got, _ = docs(CorpusSpec("pydoc"))
    assert len(got) > 50
    assert any("assert" in d for d in got)
    with pytest.raises(CorpusError, match="not found"):
        docs(CorpusSpec("/nonexistent/corpus.jsonl"))


def test_empty_corpus_is_an_error(tmp_path, minilm):
    f = tmp_path / "e.jsonl"
    f.write_text('{"text": ""}\n{oops\n')
    with pytest.raises(CorpusError, match=r"no usable document.*1 empty.*1 invalid json"):
        build_token_store(CorpusSpec(str(f)), minilm.tokenizer, tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_tokenization_is_exact_untruncated_and_parallel_safe(tmp_path, minilm):
    long_doc = " ".join(f"word{i}" for i in range(3000))  # far beyond the tokenizer's 512 limit
    f = tmp_path / "c.jsonl"
    f.write_text("\n".join(json.dumps({"text": t}) for t in ["short one", long_doc, "last"]) + "\n")
    a, _ = build_token_store(CorpusSpec(str(f)), minilm.tokenizer, tmp_path / "a", workers=1)
    b, _ = build_token_store(CorpusSpec(str(f)), minilm.tokenizer, tmp_path / "b", workers=2, chunk_docs=1)
    assert a.fingerprint == b.fingerprint
    assert np.array_equal(a.tokens, b.tokens)
    want = minilm.tokenizer(long_doc, add_special_tokens=False)["input_ids"]
    assert a.tokens[a.doc_offsets[1] : a.doc_offsets[2]].tolist() == want
    assert len(want) > 3000
    c, _ = build_token_store(CorpusSpec(str(f)), minilm.tokenizer, tmp_path / "c", max_tokens=10)
    assert c.n_tokens == 10
    assert c.meta["cut_at_max_tokens"]


@pytest.mark.parametrize("mode", ["stream", "doc"])
def test_packing_covers_every_token_once(tmp_path, minilm, mode):
    f = tmp_path / "c.txt"
    f.write_text("\n\n".join(" ".join(["tok"] * n) for n in (5, 130, 1, 64, 300)))
    ts, _ = build_token_store(CorpusSpec(str(f)), minilm.tokenizer, tmp_path / "t")
    pk = make_packing(minilm.tokenizer, minilm.model.config, 64, mode)
    assert (pk.prefix, pk.suffix) == ([101], [102])  # [CLS] ... [SEP]
    starts, lengths = pk.sequences(ts)
    covered = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths, strict=False)])
    assert np.array_equal(covered, np.arange(ts.n_tokens))
    if mode == "doc":
        docs_of = [set(ts.doc_of(np.arange(s, s + n)).tolist()) for s, n in zip(starts, lengths, strict=False)]
        assert all(len(d) == 1 for d in docs_of)
    ids, mask, index, positions = pk.batch(ts, starts[:4], lengths[:4])
    assert np.array_equal(ids.view(-1)[index].numpy(), ts.tokens[positions.numpy()])
    assert int(mask.sum()) == int(lengths[:4].sum()) + 8


def test_packing_rejects_too_short_sequences():
    with pytest.raises(ValueError, match="no room"):
        Packing(seq_len=2, prefix=[1], suffix=[2], pad_id=0)


def test_token_store_corruption_is_detected(tmp_path, minilm):
    ts, _ = build_token_store(CorpusSpec("pydoc"), minilm.tokenizer, tmp_path / "t", max_tokens=100)
    with open(ts.path / "tokens.bin", "ab") as f:
        f.write(b"\0\0")
    from neuronscope.errors import StoreError

    with pytest.raises(StoreError, match="does not hold 100 tokens"):
        TokenStore(ts.path)
