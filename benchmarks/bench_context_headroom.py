"""How much held-out Score is there above the token look-up table at all? Context tables as a ceiling.

    python benchmarks/bench_context_headroom.py --n 200 --store runs/minilm \\
        --explanations runs/eval/real_explanations.jsonl --out benchmarks/results/context_headroom.json

Issue 15 asks NeuronScope for +0.05 held-out Score over the token look-up table (each token at its mean train
activation) on real MiniLM neurons. This measures what richer look-up tables, fitted on the same train windows
and scored on the same held-out windows as ``neuronscope eval``, reach: the token × previous-token table, the
token × next-token table (MiniLM is an encoder and reads both sides) and the token × both-neighbours table,
each backed off to the coarser table where a pair was never seen in train (a pair seen n times gets
(sum + k · coarser) / (n + k), k = 1). These tables are not explanations — a reader cannot predict from
thousands of bigram rows — but they bound what a token-level reading with one neighbour of context can gain.
The ``additive`` rows are the reading NeuronScope's context term makes (``agents/context_shifts.py``): each token
at its level plus a shift for its previous and for its next token, backfitted on the train windows — with every
shift, and with only the 5, 20 or 50 largest (by |shift| × occurrences): a short list a reader can apply.
Given ``--explanations`` (an eval run's ``real_explanations.jsonl``), the same table gets NeuronScope's and
the single-pass table's held-out Score from it, for the same neurons.

With ``--survey N`` (default 64, the agent's ``AgentConfig.survey_windows``) the token table is also fitted on
the train windows plus the survey windows NeuronScope gets (``feedback.store_survey``, the same seeded windows):
``survey_table``, the data-matched reference that says how much of NeuronScope's gain is the extra evidence.

Two further sections say where the rest of the held-out Score lies:

- ``evidence``: the token table scored on the odd held-out windows, fitted on the train windows, on half of
  them, and on the train windows plus the even held-out windows — how much of its error is sampling;
- ``unseen``: the held-out tokens never seen in train (their share of tokens and of the held-out variance),
  the token table with them set to their true activation (a ceiling for generalising to unseen words),
  and with them filled from their 20 nearest train tokens in MiniLM's input word embeddings (cosine^4
  weights; a reading that generalises by meaning, as an uninterpretable reference).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

Key = Callable[[Sequence[str], int], object]


def _keys(pieces: list[str]) -> dict[str, Key]:
    def nb(ids: Sequence[str], t: int, d: int) -> str:
        return ids[t + d] if 0 <= t + d < len(ids) else "<edge>"

    return {"token": lambda ids, t: ids[t],
            "prev": lambda ids, t: (ids[t], nb(ids, t, -1)),
            "next": lambda ids, t: (ids[t], nb(ids, t, 1)),
            "both": lambda ids, t: (ids[t], nb(ids, t, -1), nb(ids, t, 1))}


def _fit(keys: list, y: np.ndarray) -> tuple[dict, dict]:
    s: dict = defaultdict(float)
    n: dict = defaultdict(int)
    for k, v in zip(keys, y.tolist(), strict=True):
        s[k] += v
        n[k] += 1
    return s, n


def _pearson(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(p, y)[0, 1]) if p.std() > 0 and y.std() > 0 else 0.0


def tables(train: list[tuple[list[str], np.ndarray]], held: list[tuple[list[str], np.ndarray]],
           k: float = 1.0) -> dict[str, float]:
    """Held-out Pearson r of each look-up table (module docstring); windows are (lowercased pieces, acts)."""
    keys = _keys([])

    def flat(wins, key: Key) -> list:
        return [key(ids, t) for ids, _ in wins for t in range(len(ids))]

    y_tr = np.concatenate([a for _, a in train])
    y_ho = np.concatenate([a for _, a in held])
    s, n = _fit(flat(train, keys["token"]), y_tr)
    tok_ho = flat(held, keys["token"])
    base = np.array([s[x] / n[x] if x in n else 0.0 for x in tok_ho])
    out = {"token": _pearson(base, y_ho)}

    def backed(name: str, coarse: np.ndarray) -> np.ndarray:
        s2, n2 = _fit(flat(train, keys[name]), y_tr)
        ho = flat(held, keys[name])
        return np.array([(s2[x] + k * c) / (n2[x] + k) if x in n2 else c for x, c in zip(ho, coarse, strict=True)])

    prev = backed("prev", base)
    out["prev"] = _pearson(prev, y_ho)
    out["next"] = _pearson(backed("next", base), y_ho)
    out["both"] = _pearson(backed("both", prev), y_ho)
    return out


def additive(train: list[tuple[list[str], np.ndarray]], held: list[tuple[list[str], np.ndarray]],
             lam: float = 3.0, sizes: Sequence[int] = (5, 20, 50)) -> dict[str, float]:
    """Held-out Pearson r of ``level[token] + shift[previous token] + shift[next token]``, backfitted on the
    train windows (shifts shrunk by ``lam`` pseudo-occurrences), with every shift and with only the ``k`` of
    largest |shift| × count (levels refitted under them): how much a short list of neighbour shifts can do."""
    vocab: dict[str, int] = {}

    def arrays(wins):
        t, p, n, y = [], [], [], []
        for ids, a in wins:
            k = np.asarray([vocab.setdefault(x, len(vocab)) for x in ids], np.int64)
            t.append(k)
            p.append(np.r_[-1, k[:-1]])
            n.append(np.r_[k[1:], -1])
            y.append(a)
        return [np.concatenate(x) for x in (t, p, n, y)]

    t, p, n, y = arrays(train)
    T, P, N, Y = arrays(held)
    size = len(vocab) + 1  # the last slot: no neighbour (the edge), never shifted

    def mean_by(idx, r, shrink):
        idx = np.where(idx < 0, size - 1, idx)
        s = np.bincount(idx, r, size)
        c = np.bincount(idx, None, size)
        out = np.where(c > 0, s / np.maximum(c + shrink, 1e-9), 0.0)
        out[size - 1] = 0.0
        return out, c

    def at(v, idx):
        return v[np.where(idx < 0, size - 1, idx)]

    level = mean_by(t, y, 0.0)[0]
    b = np.zeros(size)
    c = np.zeros(size)
    for _ in range(8):
        level = mean_by(t, y - at(b, p) - at(c, n), 0.0)[0]
        b, nb = mean_by(p, y - at(level, t) - at(c, n), lam)
        c, nc = mean_by(n, y - at(level, t) - at(b, p), lam)
    out = {"additive_all": _pearson(at(level, T) + at(b, P) + at(c, N), Y)}
    for k in sizes:
        order = np.argsort(-np.r_[np.abs(b) * nb, np.abs(c) * nc])[:k]
        bs, cs = np.zeros(size), np.zeros(size)
        bs[order[order < size]] = b[order[order < size]]
        cs[order[order >= size] - size] = c[order[order >= size] - size]
        lv = mean_by(t, y - at(bs, p) - at(cs, n), 0.0)[0]
        out[f"additive_{k}"] = _pearson(at(lv, T) + at(bs, P) + at(cs, N), Y)
    return out


def evidence(train: list[tuple[list[str], np.ndarray]], held: list[tuple[list[str], np.ndarray]]) -> dict:
    """Token-table Score on the odd held-out windows, fitted on more or less evidence (module docstring)."""
    odd, even = held[1::2], held[0::2]
    return {f"fit_{name}": tables(fit, odd)["token"]
            for name, fit in (("train", train), ("half_train", train[0::2]), ("train_plus_half_heldout", train + even))}


class WordVectors:
    """A subject token's static meaning: the mean of MiniLM's input word embeddings over the WordPiece
    tokenisation of its normalised text (any subject vocabulary), unit length, cached per id."""

    def __init__(self, vocab) -> None:
        from neuronscope.embedding import minilm

        self.tok, model = minilm()
        self.table = model.embeddings.word_embeddings.weight.detach().numpy().astype(np.float64)
        self.vocab = vocab
        self.cache: dict[int, np.ndarray] = {}

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        from neuronscope.explanations.model import normalise

        for i in ids.tolist():
            if i not in self.cache:
                text = normalise(self.vocab.pieces[i], True) or self.vocab.pieces[i]
                sub = self.tok(text, add_special_tokens=False)["input_ids"] or [self.tok.unk_token_id]
                v = self.table[sub].mean(0)
                self.cache[i] = v / (np.linalg.norm(v) + 1e-12)
        return np.stack([self.cache[i] for i in ids.tolist()])


def unseen(train_ids: np.ndarray, y_tr: np.ndarray, held_ids: np.ndarray, y_ho: np.ndarray, emb: WordVectors,
           k: int = 20) -> dict:
    """(T_tr,) ids, (T_tr,) acts, (T_ho,) ids, (T_ho,) acts, word vectors → the ``unseen`` section."""
    s: dict = defaultdict(float)
    n: dict = defaultdict(int)
    for i, v in zip(train_ids.tolist(), y_tr.tolist(), strict=True):
        s[i] += v
        n[i] += 1
    seen = np.asarray([i in n for i in held_ids.tolist()])
    base = np.asarray([s[i] / n[i] if i in n else 0.0 for i in held_ids.tolist()])
    d = (y_ho - y_ho.mean()) ** 2
    out = {"unseen_token_share": float(1 - seen.mean()),
           "unseen_variance_share": float(d[~seen].sum() / d.sum()) if d.sum() > 0 else 0.0,
           "token": _pearson(base, y_ho)}
    oracle = base.copy()
    oracle[~seen] = y_ho[~seen]
    out["unseen_true"] = _pearson(oracle, y_ho)
    fill = base.copy()
    new = np.unique(held_ids[~seen])
    if len(new):
        sid = np.asarray(list(n))
        means = np.asarray([s[i] / n[i] for i in sid])
        sim = emb[new] @ emb[sid].T
        top = np.argsort(-sim, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(sim, top, 1), 0) ** 4
        guess = dict(zip(new.tolist(), ((w * means[top]).sum(1) / (w.sum(1) + 1e-12)).tolist(), strict=True))
        fill[~seen] = [guess[i] for i in held_ids[~seen].tolist()]
    out["unseen_nearest_words"] = _pearson(fill, y_ho)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default="runs/minilm")
    p.add_argument("--explanations", default=None)
    p.add_argument("--survey", type=int, default=64,
                   help="also the token table fitted on train + the agent's survey windows (0: off)")
    p.add_argument("--out", default="benchmarks/results/context_headroom.json")
    a = p.parse_args()

    from neuronscope import open_store
    from neuronscope.agents import parse_neurons
    from neuronscope.agents.feedback import store_survey
    from neuronscope.eval.metrics import wilcoxon
    from neuronscope.scoring.run import StoreSource

    t0 = time.perf_counter()
    src = StoreSource(open_store(a.store))
    neurons = parse_neurons(f"sample:{a.n}", src, seed=a.seed)
    vocab = src.vocab
    def wins(ws):
        return [([vocab.pieces[int(i)].strip().lower() for i in w.ids], w.acts.astype(np.float64)) for w in ws]

    emb = WordVectors(vocab)
    rows = []
    by_layer: dict[int, list[int]] = defaultdict(list)
    for layer, idx in neurons:
        by_layer[layer].append(idx)
    for layer, idxs in sorted(by_layer.items()):  # one evidence pass per layer (the same windows as the eval)
        for ev in src.evidence(layer, idxs):
            tr, ho = wins(ev.train), wins(ev.heldout)
            row = {"layer": layer, "index": ev.index, **tables(tr, ho), **additive(tr, ho),
                   "evidence": evidence(tr, ho)}
            if a.survey > 0:  # the same survey windows the agent gets (seeded by the neuron): a data-matched table
                src.activations.prepare([layer])
                row["survey_table"] = tables(tr + wins(store_survey(src.store, src.activations, ev, a.survey)),
                                             ho)["token"]
            ids = [np.concatenate([w.ids for w in part]) for part in (ev.train, ev.heldout)]
            acts = [np.concatenate([w.acts for w in part]).astype(np.float64) for part in (ev.train, ev.heldout)]
            row["unseen"] = unseen(ids[0], acts[0], ids[1], acts[1], emb)
            rows.append(row)
    scored = {}
    if a.explanations:
        for line in Path(a.explanations).read_text().splitlines():
            r = json.loads(line)
            if "error" not in r:
                scored[(r["layer"], r["index"], r["method"])] = float((r.get("heldout") or {}).get("score") or 0.0)
        for r in rows:
            for m in ("single-pass", "neuronscope"):
                if (r["layer"], r["index"], m) in scored:
                    r[m] = scored[(r["layer"], r["index"], m)]
    names = ["token", "prev", "next", "both", "additive_all", "additive_5", "additive_20", "additive_50"]
    names += [m for m in ("survey_table", "single-pass", "neuronscope") if rows and all(m in r for r in rows)]
    summary = {}
    for m in names:
        x = np.array([r[m] for r in rows])
        tok = np.array([r["token"] for r in rows])
        summary[m] = {"score": float(x.mean()), "minus_token_table": float((x - tok).mean()),
                      "better": int((x > tok).sum()), "worse": int((x < tok).sum()),
                      "wilcoxon_p": float(wilcoxon(x, tok)[1]) if m != "token" else None}
    for section in ("evidence", "unseen"):
        if all(section in r for r in rows) and rows:
            summary[section] = {k: float(np.mean([r[section][k] for r in rows])) for k in rows[0][section]}
    from _results import write

    write(Path(a.out).name, {"command": " ".join(sys.argv), "n_neurons": len(rows), "store": a.store,
                             "seconds": time.perf_counter() - t0, "summary": summary, "neurons": rows})
    for m, s in summary.items():
        if "score" in s:
            print(f"{m:12s} {s['score']:.4f}  − token table {s['minus_token_table']:+.4f}  better {s['better']}")
        else:
            print(m, {k: round(v, 4) for k, v in s.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
