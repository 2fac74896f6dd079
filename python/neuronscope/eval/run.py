"""``neuronscope eval``: the paper's two claims measured side by side, per method.

- planted suite (ground truth): mode recall and precision (explained ↔ true modes matched by the IoU of
  their firing sets over the whole corpus, ≥ 0.5; near-duplicate true modes count as one), "Number"
  (modes found vs true), held-out Score; per neuron type;
- real neurons (a seeded sample across all layers): held-out Score, number of modes, share found
  polysemantic (≥ 2 modes).
Means carry 95% bootstrap intervals; methods are compared with the paired Wilcoxon signed-rank test.
Writes ``eval.json`` and ``eval.md`` under the output directory; explanations are kept (and resumed) there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Explanation
from ..io import write_json
from .metrics import match_modes, mean_ci, wilcoxon
from .planted import build_planted_store, mode_masks, read_ground_truth

SUITES = ("planted", "real", "all")


def _base_store(path: str | Path, progress: bool):
    from ..mining.run import mine
    from ..store import open_store

    path = Path(path)
    if (path / "manifest.json").exists():
        return open_store(path)
    return mine("minilm", "pydoc", path, progress=progress)


def _explain(store, neurons, out: Path, methods, backend, rounds, llm, progress) -> list[dict]:
    from ..agents import explain
    from ..scoring.run import StoreSource

    return explain(StoreSource(store), neurons, out, methods=methods, backend=backend, rounds=rounds,
                   progress=progress, llm=llm)


def _planted_rows(store, rows: list[dict]) -> list[dict]:
    truth = read_ground_truth(store)
    tok = store.tokens
    from ..explanations.vocab import Vocab

    ev = ConditionEvaluator(Vocab.from_tokenizer(store.tokenizer()))
    ids = torch.from_numpy(tok.tokens[:].astype(np.int64))
    seg = torch.from_numpy(tok.doc_of(np.arange(tok.n_tokens)).astype(np.int64))
    true_masks = {i: mode_masks(n, ev, ids, seg) for i, n in enumerate(truth)}
    out = []
    for r in rows:
        if "error" in r:
            continue
        e = Explanation.from_dict(r["explanation"])
        found = [m for m in e.modes if m.conditions]
        fmask = (np.stack([ev.evaluate_mode(m, ids, seg).numpy() for m in found]) if found
                 else np.zeros((0, len(ids)), dtype=bool))
        n = truth[r["index"]]
        mm = match_modes(fmask, true_masks[r["index"]], n.groups)
        out.append({"index": r["index"], "method": r["method"], "kind": n.kind, "score": r["heldout"]["score"],
                    "recall": mm.recall, "precision": mm.precision, "n_true": mm.n_true, "n_found": mm.n_found})
    return out


def _summary(items: list[dict], keys: Sequence[str], seed: int) -> dict:
    out = {"n": len(items)}
    for k in keys:
        m, lo, hi = mean_ci([it[k] for it in items], seed)
        out[k] = {"mean": m, "ci95": [lo, hi]}
    return out


def _paired(items: list[dict], methods: Sequence[str], key: str = "score") -> dict | None:
    if len(methods) < 2:
        return None
    a, b = methods[-1], methods[0]
    by = {}
    for it in items:
        by.setdefault(it["neuron"], {})[it["method"]] = it[key]
    pairs = [(v[a], v[b]) for v in by.values() if a in v and b in v]
    if not pairs:
        return None
    x, y = np.asarray(pairs).T
    stat, p = wilcoxon(x, y)
    return {"a": a, "b": b, "n": len(pairs), "mean_diff": float(np.mean(x - y)), "wilcoxon_stat": stat, "p": p,
            "a_better": int((x > y).sum()), "b_better": int((x < y).sum())}


def evaluate(suite: str = "all", methods: Sequence[str] = ("single-pass", "neuronscope"), *, backend: str = "offline",
             store: str | Path = "runs/minilm", out: str | Path = "runs/eval", n_real: int = 200, seed: int = 0,
             rounds: int = 4, llm: dict | None = None, progress: bool = True) -> dict:
    """Runs the suite(s) and returns the report (also written to ``out/eval.json`` and ``out/eval.md``)."""
    if suite not in SUITES:
        raise ConfigError(f"suite must be one of {', '.join(SUITES)}, got {suite!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = _base_store(store, progress)
    report: dict = {"methods": list(methods), "backend": backend, "store": str(base.path), "seed": seed}
    if suite in ("planted", "all"):
        planted = build_planted_store(base, out / "planted", seed=seed)
        neurons = [(0, i) for i in range(planted.n_neurons)]
        rows = _explain(planted, neurons, out / "planted_explanations.jsonl", methods, backend, rounds, llm, progress)
        items = _planted_rows(planted, rows)
        for it in items:
            it["neuron"] = it["index"]
        keys = ("score", "recall", "precision", "n_found", "n_true")
        per = {}
        for m in methods:
            mine = [it for it in items if it["method"] == m]
            per[m] = {"all": _summary(mine, keys, seed)}
            for kind in sorted({it["kind"] for it in mine}):
                per[m][kind] = _summary([it for it in mine if it["kind"] == kind], keys, seed)
        report["planted"] = {"per_method": per, "paired_score": _paired(items, methods), "neurons": items}
    if suite in ("real", "all"):
        from ..agents import parse_neurons
        from ..scoring.run import StoreSource

        neurons = parse_neurons(f"sample:{n_real}", StoreSource(base), seed=seed)
        rows = _explain(base, neurons, out / "real_explanations.jsonl", methods, backend, rounds, llm, progress)
        items = [{"neuron": (r["layer"], r["index"]), "layer": r["layer"], "index": r["index"], "method": r["method"],
                  "score": r["heldout"]["score"], "modes": len([m for m in r["explanation"]["modes"] if m["conditions"]]),
                  } for r in rows if "error" not in r]
        for it in items:
            it["polysemantic"] = float(it["modes"] >= 2)
        per = {m: _summary([it for it in items if it["method"] == m], ("score", "modes", "polysemantic"), seed)
               for m in methods}
        for it in items:
            it["neuron"] = f"{it['layer']}/{it['index']}"
        report["real"] = {"per_method": per, "paired_score": _paired(items, methods), "neurons": items}
    write_json(out / "eval.json", report)
    (out / "eval.md").write_text(markdown(report))
    return report


def _fmt(s: dict) -> str:
    return f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    lines = [f"Backend `{report['backend']}`, seed {report['seed']}; means with 95% bootstrap intervals.", ""]
    if "planted" in report:
        lines += ["**Planted neurons** (mode recall/precision: IoU ≥ 0.5 over the corpus)", "",
                  "| method | type | n | Score | mode recall | mode precision | modes found | true modes |",
                  "|---|---|---|---|---|---|---|---|"]
        for m, per in report["planted"]["per_method"].items():
            for kind, s in per.items():
                lines.append(f"| {m} | {kind} | {s['n']} | {_fmt(s['score'])} | {_fmt(s['recall'])} | "
                             f"{_fmt(s['precision'])} | {s['n_found']['mean']:.2f} | {s['n_true']['mean']:.2f} |")
        p = report["planted"]["paired_score"]
        if p:
            lines += ["", f"Score, {p['a']} − {p['b']}: mean {p['mean_diff']:+.3f} over {p['n']} neurons "
                          f"({p['a_better']} better, {p['b_better']} worse), Wilcoxon p = {p['p']:.2g}", ""]
    if "real" in report:
        lines += ["**Real neurons** (all-MiniLM-L6-v2, seeded sample across all layers, held-out Score)", "",
                  "| method | n | Score | modes | polysemantic share |", "|---|---|---|---|---|"]
        for m, s in report["real"]["per_method"].items():
            lines.append(f"| {m} | {s['n']} | {_fmt(s['score'])} | {_fmt(s['modes'])} | {_fmt(s['polysemantic'])} |")
        p = report["real"]["paired_score"]
        if p:
            lines += ["", f"Score, {p['a']} − {p['b']}: mean {p['mean_diff']:+.3f} over {p['n']} neurons "
                          f"({p['a_better']} better, {p['b_better']} worse), Wilcoxon p = {p['p']:.2g}"]
    return "\n".join(lines) + "\n"
