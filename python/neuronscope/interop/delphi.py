"""delphi-style per-latent text files (EleutherAI's delphi): one explanation file and one score file per latent.

Layout, as delphi's pipeline writes it and its result readers expect::

    <out>/explanations/<module>_latent<N>.txt       the explanation, JSON-encoded (a quoted string)
    <out>/scores/<scorer>/<module>_latent<N>.txt    that scorer's result for the latent, JSON

``<module>`` is the hookpoint name. For MLP neuron N of layer L neuronscope writes ``layers.L.mlp`` (the
sparsify name of a transformer block's MLP), so neuron 7 of layer 3 is ``layers.3.mlp_latent7``; another
template can be given. The scorer directory is named for the simulator (``exec``, ``embed``, ...).

A score file holds, when the per-window simulations are given, a list with one dict per held-out window,
like delphi's classifier scorers: ``str_tokens``, ``activations`` (true), ``prediction`` (the simulated
activation of every token), ``score`` (the window's Pearson r) and ``kind``; otherwise the summary
``{"score": r, "mode_scores": [...], "coverage": c, "mode_coverage": [...]}``. delphi keeps one explanation
per latent and run, so two explanations of one neuron go to two output directories.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ExplanationError
from ..explanations.model import Explanation
from ..explanations.vocab import Vocab
from ..io import write_text
from ..scoring.evidence import WindowBatch
from ..scoring.score import ScoreResult
from ..scoring.simulate import Simulation
from .openai import window_scores

DEFAULT_MODULE = "layers.{layer}.mlp"
_LATENT = re.compile(r"(?P<module>.+)_latent(?P<index>[0-9]+)\.txt")


def latent_name(layer: int, index: int, module: str = DEFAULT_MODULE) -> str:
    """delphi's name of a latent, e.g. ``layers.3.mlp_latent7`` (``module`` may use ``{layer}``)."""
    return f"{module.format(layer=layer)}_latent{index}"


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def export_delphi(out_dir: str | Path, explanations: Sequence[Explanation],
                  results: Sequence[ScoreResult] | None = None, *,
                  simulations: Sequence[tuple[WindowBatch, Simulation] | None] | None = None,
                  vocab: Vocab | None = None, module: str = DEFAULT_MODULE) -> list[Path]:
    """Writes every explanation (and its score) as delphi per-latent files; returns the paths written.

    ``results[i]`` scores ``explanations[i]``; ``simulations[i]``, when given, is the held-out batch it was
    scored on with its Simulation, written per window (``vocab`` turns ids into token strings). Writes
    are atomic, one file at a time.
    """
    out = Path(out_dir)
    n = len(explanations)
    if results is not None and len(results) != n:
        raise ConfigError(f"{len(results)} score results for {n} explanations")
    if simulations is not None and len(simulations) != n:
        raise ConfigError(f"{len(simulations)} simulations for {n} explanations")
    if simulations is not None and vocab is None and any(s is not None for s in simulations):
        raise ConfigError("exporting per-window simulations needs the vocab to write token strings")
    seen: dict[str, int] = {}
    for i, e in enumerate(explanations):
        name = latent_name(e.layer, e.index, module)
        if name in seen:
            raise ConfigError(f"explanations {seen[name]} and {i} are both for {name}; delphi keeps one "
                              "explanation per latent, export them to separate directories")
        seen[name] = i
        if not e.summary:
            raise ExplanationError(f"explanation of neuron {e.layer}/{e.index} has no text to export")
        if results is not None and (results[i].layer, results[i].index) != e.key:
            raise ConfigError(f"results[{i}] is for neuron {results[i].layer}/{results[i].index}, "
                              f"explanations[{i}] for {e.layer}/{e.index}")

    written = []
    for i, e in enumerate(explanations):
        name = latent_name(e.layer, e.index, module)
        path = out / "explanations" / f"{name}.txt"
        write_text(path, json.dumps(e.summary, ensure_ascii=False))
        written.append(path)
        if results is None:
            continue
        res = results[i]
        pair = simulations[i] if simulations is not None else None
        if pair is not None and vocab is not None:
            batch, sim = pair
            body: Any = [{"str_tokens": w["tokens"], "activations": w["true"], "prediction": w["pred"],
                          "score": w["r"], "kind": w["kind"]} for w in window_scores(batch, sim, vocab)]
        else:
            body = {"score": _finite(res.score), "mode_scores": [_finite(s) for s in res.mode_scores],
                    "coverage": _finite(res.coverage), "mode_coverage": [_finite(c) for c in res.mode_coverage]}
        path = out / "scores" / res.simulator / f"{name}.txt"
        write_text(path, json.dumps(body, ensure_ascii=False, allow_nan=False))
        written.append(path)
    return written


def _pooled_pearson(windows: list[dict[str, Any]]) -> float:
    """Pearson r of predictions vs activations over the tokens of all windows pooled (constant → 0)."""
    x = np.concatenate([np.asarray(w["prediction"], dtype=np.float64) for w in windows] or [np.zeros(0)])
    y = np.concatenate([np.asarray(w["activations"], dtype=np.float64) for w in windows] or [np.zeros(0)])
    if x.size < 2:
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else 0.0


def _correlation_score(obj: Any) -> float | None:
    """The Pearson score held by one of our score files, or None for another scorer's file (fuzz, ...)."""
    if isinstance(obj, dict):
        s = obj.get("score")
        return float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) else None
    if isinstance(obj, list) and obj and all(
            isinstance(w, dict) and isinstance(w.get("prediction"), list) and isinstance(w.get("activations"), list)
            and len(w["prediction"]) == len(w["activations"]) for w in obj):
        try:
            return _pooled_pearson(obj)
        except (TypeError, ValueError):
            return None
    return None


def read_delphi_explanations(path: str | Path) -> list[Explanation]:
    """Explanations from a delphi run directory (holding ``explanations/``) or an explanations directory.

    Each ``<module>_latent<N>.txt`` becomes ``Explanation(layer, N, modes=[], method="delphi", text=...)``,
    the layer being the first integer of ``<module>``. Scores found beside it under
    ``scores/<scorer>/`` in the shapes :func:`export_delphi` writes go to ``scores[<scorer>]`` (pooled
    Pearson over the windows for a per-window file), and to ``scores["score"]`` when there is exactly one;
    delphi's own fuzz/detection files carry no correlation and are left out. Empty explanations are
    skipped. Sorted by (layer, N).
    """
    root = Path(path)
    exp_dir = root / "explanations" if (root / "explanations").is_dir() else root
    if not exp_dir.is_dir():
        raise ExplanationError(f"delphi directory {root} does not exist")
    score_dirs = sorted(d for d in (exp_dir.parent / "scores").glob("*") if d.is_dir())
    out = []
    for f in sorted(exp_dir.iterdir()):
        m = _LATENT.fullmatch(f.name)
        if m is None or not f.is_file():
            continue
        layer_m = re.search(r"[0-9]+", m["module"])
        if layer_m is None:
            raise ExplanationError(f"{f}: module {m['module']!r} names no layer number")
        raw = f.read_text(encoding="utf-8")
        try:
            text = json.loads(raw)
        except json.JSONDecodeError:
            text = raw.strip()  # some delphi versions wrote the bare text
        if not isinstance(text, str):
            raise ExplanationError(f"{f}: expected a JSON string explanation, got {type(text).__name__}")
        if not text.strip():
            continue
        scores: dict[str, float] = {}
        for d in score_dirs:
            sf = d / f.name
            if not sf.is_file():
                continue
            try:
                obj = json.loads(sf.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ExplanationError(f"{sf}: not valid JSON ({e})") from None
            r = _correlation_score(obj)
            if r is not None:
                scores[d.name] = r
        if len(scores) == 1:
            scores["score"] = next(iter(scores.values()))
        out.append(Explanation(layer=int(layer_m[0]), index=int(m["index"]), modes=[], method="delphi",
                               text=text, scores=scores, meta={"source": str(f), "module": m["module"]}))
    out.sort(key=lambda e: e.key)
    return out
