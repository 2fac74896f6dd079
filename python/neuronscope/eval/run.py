"""``neuronscope eval``: the paper's two claims measured side by side, for any list of methods.

- planted suite (ground truth, ``planted.standard_suite``): mode recall and precision (explained meanings ↔
  true modes matched by the IoU of their firing sets over the whole corpus, ≥ 0.5; near-duplicate true modes
  count as one), "Number" (meanings found vs true, and the share found exactly), held-out Score; per family;
- real neurons (a seeded sample across all layers): held-out Score, the distribution of the number of
  meanings, and the share polysemantic by ``metrics.POLYSEMANTIC_RULE``;
- for both: the histogram of meanings found per method (``Explanation.meanings``: the background term is
  not a mode), the share of meanings whose label names a concept (``Mode.concept``), and NeuronScope
  against every other method (paired Wilcoxon signed-rank on held-out Score).
Means carry 95% bootstrap intervals. Writes ``eval.json`` and ``eval.md`` (``tables.markdown``) under the
output directory; explanations are kept (and resumed) there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..explanations.model import Explanation, Mode
from ..io import write_json
from .metrics import POLYSEMANTIC_RULE, by_group, count_distribution, is_polysemantic, match_modes, paired, summarize
from .planted import build_planted_store, corpus_stream, mode_masks, read_ground_truth
from .tables import markdown

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


def _meanings(row: dict) -> list[Mode]:
    """The meanings of an explain row's explanation (what "Number" counts: no background term)."""
    return Explanation.from_dict(row["explanation"]).meanings


def _planted_rows(store, rows: list[dict]) -> list[dict]:
    truth = read_ground_truth(store)
    stream = corpus_stream(store)
    ids, seg = stream.tensors()
    ev = stream.evaluator
    true_masks = {i: mode_masks(n, stream) for i, n in enumerate(truth)}
    out = []
    for r in rows:
        if "error" in r:
            continue
        found = _meanings(r)
        fmask = (np.stack([ev.evaluate_mode(m, ids, seg).numpy() for m in found]) if found
                 else np.zeros((0, len(stream)), dtype=bool))
        n = truth[r["index"]]
        mm = match_modes(fmask, true_masks[r["index"]], n.groups)
        out.append({"neuron": r["index"], "index": r["index"], "method": r["method"], "kind": n.kind,
                    "score": _score(r), "recall": mm.recall, "precision": mm.precision,
                    "n_true": mm.n_true, "n_found": mm.n_found, "exact": float(mm.n_found == mm.n_true),
                    "named": sum(m.concept is not None for m in found)})
    return out


def _score(row: dict) -> float:
    """Held-out Score of a row; an undefined correlation (null: a constant prediction) explains nothing → 0."""
    s = (row.get("heldout") or {}).get("score")
    return 0.0 if s is None else float(s)


def _real_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        if "error" in r:
            continue
        found = _meanings(r)
        cov = [float(m.scores.get("coverage", 0.0)) for m in found]
        out.append({"neuron": f"{r['layer']}/{r['index']}", "layer": r["layer"], "index": r["index"],
                    "method": r["method"], "score": _score(r), "modes": len(found),
                    "multi": float(len(found) >= 2), "polysemantic": float(is_polysemantic(cov)),
                    "named": sum(m.concept is not None for m in found), "coverages": cov})
    return out


def reference_method(methods: Sequence[str]) -> str:
    """The method every other is compared against: ``neuronscope`` when evaluated, else the last one."""
    return "neuronscope" if "neuronscope" in methods else methods[-1]


def _common(items: list[dict], methods: Sequence[str], count_key: str) -> dict:
    """Per method: the meanings-found distribution and the concept-named share; NeuronScope against each."""
    ref = reference_method(methods)
    dist, named = {}, {}
    for m in methods:
        mine = [it for it in items if it["method"] == m]
        dist[m] = count_distribution([it[count_key] for it in mine])
        total = sum(it[count_key] for it in mine)
        k = sum(it["named"] for it in mine)
        named[m] = {"meanings": total, "named": k, "share": k / total if total else float("nan")}
    pairs = [p for m in methods if m != ref for p in [paired(items, ref, m)] if p is not None]
    return {"modes_found": dist, "concept_named": named, "reference": ref, "paired_score": pairs}


def evaluate(suite: str = "all", methods: Sequence[str] = ("top-tokens", "single-pass", "neuronscope"), *,
             backend: str = "offline", store: str | Path = "runs/minilm", out: str | Path = "runs/eval",
             n_real: int = 200, seed: int = 0, rounds: int = 4, llm: dict | None = None, progress: bool = True) -> dict:
    """Runs the suite(s) and returns the report (also written to ``out/eval.json`` and ``out/eval.md``)."""
    if suite not in SUITES:
        raise ConfigError(f"suite must be one of {', '.join(SUITES)}, got {suite!r}")
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ConfigError("methods must name at least one explainer method")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = _base_store(store, progress)
    report: dict = {"methods": methods, "backend": backend, "store": str(base.path), "seed": seed, "seconds": {}}
    clock = report["seconds"]
    if suite in ("planted", "all"):
        t0 = time.perf_counter()
        planted = build_planted_store(base, out / "planted", seed=seed)
        clock["planted_store"] = time.perf_counter() - t0
        neurons = [(0, i) for i in range(planted.n_neurons)]
        t0 = time.perf_counter()
        rows = _explain(planted, neurons, out / "planted_explanations.jsonl", methods, backend, rounds, llm, progress)
        clock["planted_explain"] = time.perf_counter() - t0
        items = _planted_rows(planted, rows)
        keys = ("score", "recall", "precision", "exact", "n_found", "n_true")
        per = {m: by_group([it for it in items if it["method"] == m], "kind", keys, seed) for m in methods}
        family_modes = {m: {k: count_distribution([it["n_found"] for it in items if it["method"] == m
                                                   and it["kind"] == k])
                            for k in sorted({it["kind"] for it in items})} for m in methods}
        report["planted"] = {"per_method": per, **_common(items, methods, "n_found"),
                             "modes_found_by_family": family_modes, "neurons": items}
    if suite in ("real", "all"):
        from ..agents import parse_neurons
        from ..scoring.run import StoreSource

        neurons = parse_neurons(f"sample:{n_real}", StoreSource(base), seed=seed)
        t0 = time.perf_counter()
        rows = _explain(base, neurons, out / "real_explanations.jsonl", methods, backend, rounds, llm, progress)
        clock["real_explain"] = time.perf_counter() - t0
        items = _real_rows(rows)
        per = {m: summarize([it for it in items if it["method"] == m], ("score", "modes", "multi", "polysemantic"),
                            seed) for m in methods}
        report["real"] = {"per_method": per, **_common(items, methods, "modes"), "polysemantic_rule": POLYSEMANTIC_RULE,
                          "neurons": items}
    write_json(out / "eval.json", report)
    (out / "eval.md").write_text(markdown(report))
    return report
