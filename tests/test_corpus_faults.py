"""Hostile corpora (issue 17 items 12-14): skipped lines not tracebacks, text never parsed into special
tokens, bounded work on a huge document, and a tokenizer id that ignores truncation and padding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuronscope.corpus import CorpusSpec, SkipCounts, build_token_store, iter_documents, tokenize, tokenizer_id


@pytest.fixture
def minilm_tok():
    """A fresh MiniLM fast tokenizer (tests below change its truncation/padding state)."""
    from transformers import AutoTokenizer

    from neuronscope.models import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("minilm"))


def test_hostile_jsonl_lines_are_counted_skips_not_tracebacks(tmp_path, minilm_tok):
    f = tmp_path / "c.jsonl"
    lines = [
        '{"text": "first"}',
        '{"text": "deep", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",  # RecursionError in json
        '{"text": ' + "7" * 5000 + "}",  # ValueError (int digit limit) in json; the text is a number
        '{"text": "big number beside", "n": ' + "7" * 5000 + "}",  # the number is unused: the text is kept
        '{"text": "lone \\ud800 surrogate"}',  # valid JSON, but tokenizers raise TypeError on it
        '{"text": "last"}',
    ]
    f.write_text("\n".join(lines) + "\n")
    skips = SkipCounts()
    assert list(iter_documents(CorpusSpec(str(f)), skips)) == ["first", "big number beside", "last"]
    assert skips.as_dict() == {"invalid_json": 1, "invalid_unicode": 1, "missing_field": 1}
    store, skipped = build_token_store(CorpusSpec(str(f)), minilm_tok, tmp_path / "tok", workers=1)
    assert store.n_docs == 3
    assert store.meta["skipped"] == {"invalid_json": 1, "invalid_unicode": 1, "missing_field": 1}
    assert "1 invalid unicode" in str(skipped)


@pytest.mark.parametrize("workers", [1, 2])
def test_special_token_text_is_tokenized_as_text(tmp_path, minilm_tok, workers):
    f = tmp_path / "c.txt"
    f.write_text("a [CLS] [SEP] [PAD] b\n")
    store, _ = build_token_store(CorpusSpec(str(f)), minilm_tok, tmp_path / "tok", workers=workers)
    ids = store.tokens.tolist()
    assert not set(ids) & set(minilm_tok.all_special_ids), ids  # not 101, 102, 0
    assert ids == minilm_tok("a [CLS] [SEP] [PAD] b", add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert minilm_tok.convert_ids_to_tokens(ids)[:5] == ["a", "[", "cl", "##s", "]"]


def test_llama_style_special_tokens_in_text_stay_text(tmp_path, sp_tokenizer):
    f = tmp_path / "c.txt"
    f.write_text("see <s> and </s> here\n")
    store, _ = build_token_store(CorpusSpec(str(f)), sp_tokenizer, tmp_path / "tok", workers=1)
    assert not set(store.tokens.tolist()) & {sp_tokenizer.bos_token_id, sp_tokenizer.eos_token_id}


def test_huge_line_with_max_tokens_tokenizes_a_bounded_prefix(tmp_path, minilm_tok, monkeypatch):
    f = tmp_path / "big.txt"
    text = " ".join(f"w{i % 997}" for i in range(700_000))  # one 4.6 MB line: one document
    f.write_text(text + "\n")
    seen: list[int] = []
    encode = tokenize._encode
    monkeypatch.setattr(tokenize, "_encode", lambda texts: (seen.extend(len(t) for t in texts), encode(texts))[1])
    store, _ = build_token_store(CorpusSpec(str(f), doc_split="line"), minilm_tok, tmp_path / "tok",
                                 max_tokens=2000, workers=1)
    assert (store.n_tokens, store.n_docs) == (2000, 1)
    assert store.meta["cut_at_max_tokens"]
    assert max(seen) <= tokenize.PIECE_CHARS
    assert sum(seen) <= 2 * tokenize.PIECE_CHARS  # not the 4.6 MB line
    want = minilm_tok(text[: tokenize.PIECE_CHARS], add_special_tokens=False)["input_ids"][:2000]
    assert store.tokens.tolist() == want


@pytest.mark.parametrize("workers", [1, 2])
def test_long_documents_are_cut_at_whitespace_into_exact_pieces(tmp_path, minilm_tok, monkeypatch, workers):
    monkeypatch.setattr(tokenize, "PIECE_CHARS", 500)
    long_doc = " ".join(f"word{i}" for i in range(3000))
    assert all(len(p) <= 500 for p in tokenize.split_text(long_doc, 500))
    assert "".join(tokenize.split_text(long_doc, 500)) == long_doc
    assert "".join(tokenize.split_text("x" * 1234, 500)) == "x" * 1234  # no whitespace: cut anyway
    f = tmp_path / "c.jsonl"
    f.write_text("\n".join(json.dumps({"text": t}) for t in ["short", long_doc, "last"]) + "\n")
    store, _ = build_token_store(CorpusSpec(str(f)), minilm_tok, tmp_path / "tok", workers=workers, chunk_docs=3)
    assert store.n_docs == 3
    got = store.tokens[store.doc_offsets[1] : store.doc_offsets[2]].tolist()
    assert got == minilm_tok(long_doc, add_special_tokens=False)["input_ids"]  # cut before spaces: exact


def test_reading_stops_once_max_tokens_are_in_hand(tmp_path, minilm_tok, monkeypatch):
    f = tmp_path / "c.jsonl"
    f.write_text("\n".join(json.dumps({"text": f"document number {i} " * 5}) for i in range(5000)) + "\n")
    read = [0]
    real = tokenize.iter_documents

    def counting(spec, skips):
        for doc in real(spec, skips):
            read[0] += 1
            yield doc

    monkeypatch.setattr(tokenize, "iter_documents", counting)
    store, _ = build_token_store(CorpusSpec(str(f)), minilm_tok, tmp_path / "tok", max_tokens=50, workers=2)
    assert store.n_tokens == 50
    assert read[0] < 1000  # Pool.imap read all 5000 documents ahead


def test_tokenizer_id_ignores_truncation_padding_and_path(minilm_tok, bpe_tokenizer):
    before = tokenizer_id(minilm_tok)
    minilm_tok("some text", truncation=True, max_length=4, padding="max_length")
    minilm_tok.backend_tokenizer.enable_truncation(7)
    minilm_tok.backend_tokenizer.enable_padding(length=33)
    minilm_tok.name_or_path = "/elsewhere/minilm"
    assert tokenizer_id(minilm_tok) == before
    assert tokenizer_id(bpe_tokenizer) != before
    minilm_tok.add_tokens(["neuronscopeword"])
    assert tokenizer_id(minilm_tok)["sha256"] != before["sha256"]  # an added token changes the ids of text


def test_token_store_writer_joins_pieces_into_one_document(tmp_path):
    from neuronscope.corpus.tokenstore import TokenStoreWriter

    w = TokenStoreWriter(tmp_path / "a")
    w.extend(np.array([1, 2], np.uint32))
    w.extend(np.array([], np.uint32))
    w.extend(np.array([3], np.uint32))
    w.end_doc()
    w.add(np.array([4], np.uint32))
    store = w.finish({})
    assert store.doc_offsets.tolist() == [0, 3, 4]
    w = TokenStoreWriter(tmp_path / "b")
    w.add(np.array([1, 2, 3], np.uint32))
    w.add(np.array([4], np.uint32))
    assert w.finish({}).fingerprint == store.fingerprint


@pytest.mark.parametrize("damage", ["garbage", "missing", "2-d", "floats", "decreasing"])
def test_damaged_docs_npy_is_named_not_called_pickled(tmp_path, minilm_tok, damage):
    """Issue 17 item 20: a garbage docs.npy was reported as "contains pickled data"."""
    from neuronscope.corpus.tokenstore import TokenStore
    from neuronscope.errors import StoreError

    f = tmp_path / "c.txt"
    f.write_text("one document here.\n\nand a second one.\n")
    build_token_store(CorpusSpec(str(f)), minilm_tok, tmp_path / "tok", workers=1)
    docs = tmp_path / "tok" / "docs.npy"
    TokenStore(tmp_path / "tok")  # sound before the damage
    if damage == "garbage":
        docs.write_bytes(b"\x80\x03not an npy file at all" * 10)
    elif damage == "missing":
        docs.unlink()
    elif damage == "2-d":
        np.save(docs, np.zeros((2, 2), dtype=np.int64))
    elif damage == "floats":
        np.save(docs, np.array([0.0, 1.5]))
    else:
        np.save(docs, np.array([0, 9, 3], dtype=np.int64))
    with pytest.raises(StoreError, match=r"docs\.npy") as e:
        TokenStore(tmp_path / "tok")
    assert "pickled" not in str(e.value)
    assert "mine again" in str(e.value)
