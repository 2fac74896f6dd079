"""What the report shows of each neuron, gathered from a NeuronStore and an explanations file.

The renderer (``report.html``) takes plain dicts; this module builds them: the neuron's statistics,
histogram and quantiles from the store, its top exemplars with the activation of every context token,
and per explainer method the modes with their conditions, scores, the exemplars each mode fires on,
the refinement rounds and the agent transcript. Mode exemplars are found by running the mode's
conditions over the neuron's top-k windows (and, when a mode fires on none of those, over the
quantile samples), so what a reader sees under a mode is what that mode's executable explanation
actually selects.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Explanation
from ..mining.spec import bin_bounds
from ..models.registry import model_name
from ..records import Exemplar, NeuronRecord
from ..store import NeuronStore
from .markup import is_undefined

SHOW_TOP = 12
"""Top exemplars shown per neuron."""
SHOW_PER_MODE = 6
"""Exemplars shown under each mode."""


def _exemplar(e: Exemplar) -> dict:
    return {"pieces": list(e.pieces), "acts": None if e.acts is None else [round(float(a), 4) for a in e.acts],
            "focus": int(e.focus), "activation": round(float(e.activation), 4), "position": int(e.position)}


def _finite(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _scores(d: object, keys: tuple[str, ...]) -> dict:
    """The correlation scores among ``keys`` that ``d`` holds: a finite float, or None where it holds one that
    is undefined (None, NaN: a constant prediction or truth, or one token). Absent keys stay absent, so the
    page can tell "undefined" from "not scored"."""
    if not isinstance(d, dict):
        return {}
    out = {}
    for k in keys:
        if is_undefined(d, k):
            out[k] = None
        elif k in d and isinstance(d[k], int | float) and not isinstance(d[k], bool):
            out[k] = _finite(float(d[k]))
    return out


def defined_scores(explanation: dict) -> dict:
    """``explanation`` with undefined scores (NaN, "nan") left out, which ``Explanation.from_dict`` refuses;
    the view reads them from the row itself."""
    def keep(scores: object) -> object:
        if not isinstance(scores, dict):
            return scores
        return {k: v for k, v in scores.items() if not is_undefined(scores, k)}

    out = {**explanation, "scores": keep(explanation.get("scores", {}))}
    if isinstance(explanation.get("modes"), list):
        out["modes"] = [{**m, "scores": keep(m.get("scores", {}))} if isinstance(m, dict) and "scores" in m else m
                        for m in explanation["modes"]]
    return out


def _fires(evaluator: ConditionEvaluator, mode, windows: list[Exemplar], left: list[np.ndarray]) -> np.ndarray:
    """(len(windows),) bool: does the mode fire on each window's focus token (its left context included)."""
    out = np.zeros(len(windows), dtype=bool)
    if not mode.conditions:
        return out
    for i, (e, lc) in enumerate(zip(windows, left, strict=True)):
        ids = torch.as_tensor(np.concatenate([lc, np.asarray(e.token_ids, dtype=np.int64)]), dtype=torch.int64)
        seg = torch.zeros_like(ids)
        out[i] = bool(evaluator.evaluate_mode(mode, ids, seg)[len(lc) + e.focus])
    return out


def _left_context(store: NeuronStore, windows: list[Exemplar], n: int) -> list[np.ndarray]:
    """Up to n tokens before each window inside its document, so that prev-token conditions see them."""
    tok = store.tokens
    out = []
    for e in windows:
        start = e.position - e.focus
        d = int(tok.doc_of(start))
        out.append(tok.tokens[max(int(tok.doc_offsets[d]), start - n) : start].astype(np.int64))
    return out


def method_view(row: dict, record: NeuronRecord, evaluator: ConditionEvaluator, left: list[np.ndarray],
                sample_left: list[np.ndarray]) -> dict:
    """One explainer's section of a neuron page from its ``explain`` output line."""
    raw = row["explanation"]
    e = Explanation.from_dict(defined_scores(raw) if isinstance(raw, dict) else raw)
    raw_modes = raw.get("modes") if isinstance(raw, dict) and isinstance(raw.get("modes"), list) else []
    held = row.get("heldout") or {}
    top = record.top
    modes = []
    for k, m in enumerate(e.modes):
        fires = _fires(evaluator, m, top, left)
        picked = [top[i] for i in np.flatnonzero(fires)[:SHOW_PER_MODE]]
        if not picked and record.samples:
            sf = _fires(evaluator, m, record.samples, sample_left)
            cand = sorted((record.samples[i] for i in np.flatnonzero(sf)), key=lambda x: -x.activation)
            picked = cand[:SHOW_PER_MODE]
        raw_scores = raw_modes[k].get("scores") if k < len(raw_modes) and isinstance(raw_modes[k], dict) else None
        modes.append({
            "label": m.label, "description": m.description, "conditions": [c.describe() for c in m.conditions],
            "strength": _finite(m.strength), **_scores(raw_scores, ("score",)),
            "coverage": _finite(m.scores.get("coverage")),
            "share": float(fires.mean()) if len(top) else None,
            "exemplars": [_exemplar(x) for x in picked],
        })
    return {
        "text": e.text or e.summary, **_scores(held, ("score", "top_score")),
        "coverage": _finite(held.get("coverage")), "seconds": _finite(row.get("seconds")),
        "backend": row.get("backend"), "modes": modes, "rounds": list(row.get("rounds") or []),
        "transcript": list(row.get("transcript") or []),
    }


def neuron_view(store: NeuronStore, evaluator: ConditionEvaluator, layer: int, index: int,
                rows: Iterable[dict], activations=None) -> dict:
    """The whole page of one neuron (see ``report.html.render_site`` for the schema)."""
    if activations is None:  # the store's own source (build_report passes one shared, prepared source)
        from ..activations import activation_source

        activations = activation_source(store)
    record = store.neuron(layer, index, context=(12, 4), activations=activations)
    lower_upper = bin_bounds(store.config, record.min, record.max)
    counts = record.hist.astype(np.int64)
    left = _left_context(store, record.top, 8)
    sample_left = _left_context(store, record.samples, 8)
    methods = {r["method"]: method_view(r, record, evaluator, left, sample_left) for r in rows}
    return {
        "layer": layer, "index": index, "model": model_name(store.model_id),
        "stats": {"count": record.count, "mean": _finite(record.mean), "std": _finite(record.std),
                  "min": _finite(record.min), "max": _finite(record.max),
                  "frac_positive": _finite(record.frac_positive)},
        "quantiles": {f"{q:g}": _finite(v) for q, v in record.quantiles.items()},
        "hist": {"lower": lower_upper[:, 0].tolist(), "upper": lower_upper[:, 1].tolist(),
                 "counts": counts.tolist()},
        "top": [_exemplar(x) for x in record.top[:SHOW_TOP]],
        "methods": methods,
    }


def index_row(view: dict, href: str, primary: str = "neuronscope", baseline: str = "single-pass") -> dict:
    """The index table's row of one neuron page (``report.html``'s ``index_rows`` entry).

    The primary method's score and, when both methods are there, the baseline's; a score the view lacks is
    left out of the row (an undefined one is kept, as None or NaN).
    """
    methods = view.get("methods") or {}
    main = methods.get(primary) or next(iter(methods.values()), None) or {}
    base = methods.get(baseline) if primary in methods else None
    modes = [m for m in main.get("modes") or [] if isinstance(m, dict)]
    row = {
        "layer": view["layer"], "index": view["index"], "n_modes": len(modes),
        "description": "; ".join(m.get("description") or "" for m in modes) or main.get("text", ""),
        "labels": [m.get("label") or "" for m in modes], "max_act": (view.get("stats") or {}).get("max"),
        "href": href,
    }
    if "score" in main:
        row["score"] = main["score"]
    if isinstance(base, dict) and "score" in base:
        row["baseline_score"] = base["score"]
    return row
