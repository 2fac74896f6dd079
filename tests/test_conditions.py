"""Condition evaluation against a plain-Python per-token evaluation, for three tokenizer families."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from neuronscope.errors import ExplanationError
from neuronscope.explanations import (
    AllOf,
    ConditionEvaluator,
    Explanation,
    Mode,
    PrecedingRegex,
    PrevTokenIn,
    TokenIn,
    TokenRegex,
    Vocab,
    condition_from_dict,
)
from neuronscope.records import display_tokens


def _key(raw: str, case_sensitive: bool) -> str:
    """Independent normalisation from the tokenizer's own single-token decode."""
    s = raw.strip()
    if s.startswith("##"):
        s = s[2:]
    s = s.strip()
    return s if case_sensitive else s.lower()


def _reference(cond, ids: list[int], seg: list[int], raw: list[str], pieces: list[str]) -> list[bool]:
    def holds(c, t: int) -> bool:
        if isinstance(c, TokenIn):
            return _key(raw[ids[t]], c.case_sensitive) in {_key(x, c.case_sensitive) for x in c.tokens} - {""}
        if isinstance(c, TokenRegex):
            flags = 0 if c.case_sensitive else re.IGNORECASE
            return re.search(c.pattern, _key(raw[ids[t]], True), flags) is not None
        if isinstance(c, PrevTokenIn):
            u = t - c.offset
            if u < 0 or seg[u] != seg[t]:
                return False
            return _key(raw[ids[u]], c.case_sensitive) in {_key(x, c.case_sensitive) for x in c.tokens} - {""}
        if isinstance(c, PrecedingRegex):
            text = ""
            u = t - 1
            while u >= 0 and u >= t - c.window and seg[u] == seg[t]:
                text = pieces[ids[u]] + text
                u -= 1
            flags = 0 if c.case_sensitive else re.IGNORECASE
            return bool(text) and re.search(c.pattern, text, flags) is not None
        if isinstance(c, AllOf):
            return all(holds(s, t) for s in c.conditions)
        raise AssertionError(c)

    return [holds(cond, t) for t in range(len(ids))]


def _stream(tokenizer, rng: np.random.Generator, n_docs: int = 12):
    from pydoc_data.topics import topics

    keys = sorted(topics)
    ids, seg = [], []
    for d in range(n_docs):
        text = topics[keys[int(rng.integers(len(keys)))]][:600]
        doc = tokenizer(text, add_special_tokens=False)["input_ids"][:120]
        if d % 3 == 2:  # random ids too: rare and odd tokens
            doc = rng.integers(0, len(tokenizer), size=40).tolist()
        ids += doc
        seg += [d] * len(doc)
    return ids, seg


def _conditions(vocab_strings: list[str], ids: list[int], rng: np.random.Generator):
    frequent = [vocab_strings[i] for i in np.unique(ids)[:60]]
    pick = lambda n: tuple(rng.choice(frequent, size=n, replace=False).tolist())  # noqa: E731
    return [
        TokenIn(pick(5)),
        TokenIn(("The", "IS", "return", "def")),
        TokenIn(("The", "the"), case_sensitive=True),
        TokenRegex(r"^[0-9]+$"),
        TokenRegex(r"^[A-Z]", case_sensitive=True),
        TokenRegex("ing$|ed$"),
        PrevTokenIn(pick(4), offset=1),
        PrevTokenIn(("the", "a", "(", "."), offset=2),
        PrevTokenIn(pick(3), offset=5),
        PrecedingRegex(r"\bthe\b", window=4),
        PrecedingRegex(r"[(\[]", window=2),
        PrecedingRegex(r"def |class ", window=12, case_sensitive=True),
        AllOf((TokenRegex(r"^[a-z]+$"), PrevTokenIn(("the", "a"), offset=1))),
        AllOf((PrecedingRegex("return", window=6), TokenIn(pick(10)), PrevTokenIn(pick(8), offset=1))),
    ]


@pytest.fixture(scope="module", params=["bert", "gpt2", "llama"])
def tokenizer(request, minilm, bpe_tokenizer, sp_tokenizer):
    return {"bert": minilm.tokenizer, "gpt2": bpe_tokenizer, "llama": sp_tokenizer}[request.param]


def test_every_condition_kind_matches_per_token_reference(tokenizer):
    rng = np.random.default_rng(0)
    vocab = Vocab.from_tokenizer(tokenizer)
    raw = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    pieces = display_tokens(tokenizer, list(range(len(tokenizer))))
    ids, seg = _stream(tokenizer, rng)
    ev = ConditionEvaluator(vocab)
    ids_t, seg_t = torch.tensor(ids), torch.tensor(seg)
    conds = _conditions([_key(r, True) for r in raw], ids, rng)
    fired = 0
    for c in conds:
        got = ev.evaluate(c, ids_t, seg_t).tolist()
        assert got == _reference(c, ids, seg, raw, pieces), c.describe()
        fired += any(got)
    assert fired >= len(conds) - 3  # the generated conditions are not vacuous
    many = ev.evaluate_many(conds, ids_t, seg_t)
    assert many.shape == (len(conds), len(ids))
    mode = Mode("m", conditions=conds[:3])
    want = np.any([_reference(c, ids, seg, raw, pieces) for c in conds[:3]], axis=0)
    assert ev.evaluate_mode(mode, ids_t, seg_t).numpy().tolist() == want.tolist()


def test_normalisation_markers(minilm, bpe_tokenizer, sp_tokenizer):
    for tok, word in ((minilm.tokenizer, "function"), (bpe_tokenizer, "the"), (sp_tokenizer, "the")):
        vocab = Vocab.from_tokenizer(tok)
        ids = tok(f"x {word} {word.upper()}", add_special_tokens=False)["input_ids"]
        mask = vocab.mask_in([f" {word.capitalize()}"])
        hits = [vocab.pieces[i] for i in ids if mask[i]]
        assert hits, (tok, [vocab.pieces[i] for i in ids])
    bert = Vocab.from_tokenizer(minilm.tokenizer)
    sub = [i for i, p in enumerate(bert.pieces) if p == "ing"]  # "##ing" shows as "ing" glued to its word
    assert sub
    assert bert.mask_in(["##ing"])[sub[0]]
    assert bert.mask_in(["ing"])[sub[0]]


def test_offsets_never_cross_segments():
    vocab = Vocab.from_strings(["a", "b", "c"])
    ev = ConditionEvaluator(vocab)
    ids = torch.tensor([0, 1, 0, 1, 2])
    seg = torch.tensor([0, 0, 1, 1, 1])
    assert ev.evaluate(PrevTokenIn(("b",)), ids, seg).tolist() == [False, False, False, False, True]
    assert ev.evaluate(PrevTokenIn(("a",)), ids, seg).tolist() == [False, True, False, True, False]
    assert ev.evaluate(PrecedingRegex("ab", window=4), ids, seg).tolist() == [False] * 4 + [True]
    with pytest.raises(ExplanationError, match="ids"):
        ev.evaluate(TokenIn(("a",)), torch.tensor([0, 3]), torch.tensor([0, 0]))


def test_json_round_trip_and_validation():
    e = Explanation(2, 17, [
        Mode("months", "month names", [TokenIn(("January", "february")), PrevTokenIn(("in",), offset=2)], 3.5,
             exemplars=[10, 99], scores={"score": 0.5}),
        Mode("dollar digits", "a digit after $", [AllOf((TokenRegex(r"^\d+$"), PrecedingRegex(r"\$\s*$", 2)))], 1.25),
    ], method="neuronscope", text="months; dollar amounts", meta={"rounds": 3})
    d = e.to_dict()
    back = Explanation.from_dict(d)
    assert back.to_dict() == d
    assert back.modes[1].conditions[0] == e.modes[1].conditions[0]
    assert back.max_offset == 2

    bad = [
        ({**d, "schema": 99}, "schema"),
        ({**d, "modes": [{"label": ""}]}, r"modes\[0\].label"),
        ({**d, "modes": [{"label": "x", "conditions": [{"kind": "nope"}]}]}, r"conditions\[0\].kind"),
        ({**d, "modes": [{"label": "x", "conditions": [{"kind": "token_regex", "pattern": "("}]}]},
         "not a valid regex"),
        ({**d, "modes": [{"label": "x", "conditions": [{"kind": "token", "tokens": "abc"}]}]}, "list of strings"),
        ({**d, "modes": [{"label": "x", "conditions": [{"kind": "prev_token", "tokens": ["a"], "offset": 0}]}]},
         "offset"),
        ({**d, "modes": [{"label": "x", "conditions": [{"kind": "all", "conditions": [{"kind": "token",
                                                                                       "tokens": ["a"]}]}]}]},
         "at least two"),
        ({**d, "modes": [{"label": "x", "strength": float("nan")}]}, "strength"),
        ({**d, "extra": 1}, "unknown field"),
        ({**d, "modes": [], "text": ""}, "neither"),
    ]
    for obj, msg in bad:
        with pytest.raises(ExplanationError, match=msg):
            Explanation.from_dict(obj)
    with pytest.raises(ExplanationError, match="must be an object"):
        condition_from_dict([1, 2])
