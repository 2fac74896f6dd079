"""delphi (EleutherAI) per-latent files: explanations and score files in the shapes delphi's own code writes.

Layout, as delphi's pipeline writes it (``explanations_path / f"{latent}.txt"``, ``scores_path / scorer /
f"{latent}.txt"``, both ``orjson.dumps`` of the result)::

    <out>/explanations/<module>_latent<N>.txt     the explanation, a JSON string
    <out>/scores/simulation/<module>_latent<N>.txt   delphi's simulation scorer format (below)
    <out>/scores/detection/<module>_latent<N>.txt    delphi's classifier scorers' format (below)
    <out>/neuronscope_export.json                 which simulator produced the scores, and the rules below

``<module>_latent<N>`` is delphi's ``str(Latent)``. For MLP neuron N of layer L neuronscope writes the
module ``layers.L.mlp`` (the sparsify name of a transformer block's MLP), so neuron 7 of layer 3 is
``layers.3.mlp_latent7``; another template can be given.

**simulation** (delphi ``scorers/simulator``: a list of ``ScoredSimulation``): one record per group of
held-out windows, ``{"distance", "scored_sequence_simulations", "ev_correlation_score", "rsquared_score",
"absolute_dev_explained_score"}``. delphi's distance is 0 for the overall group (every sequence, activating
and not) and ``q + 1`` for its activating quantile ``q``; here the held-out top windows are the activating
examples (one quantile, so distance 1) and the quantile-stratified and random windows the non-activating
ones, so the list holds the distance-1 group (top windows) and the distance-0 group (all windows, whose
``ev_correlation_score`` is the score neuronscope reports). Each window is a ``ScoredSequenceSimulation``
``{"distance", "simulation", "true_activations", "ev_correlation_score", "rsquared_score",
"absolute_dev_explained_score"}`` whose distance is the example's quantile (0) or -1 (non-activating), and
whose ``simulation`` is a ``SequenceSimulation`` (``tokens``, ``expected_activations``,
``activation_scale`` = ``"simulated_unnormalized_activations"``: the simulator's prediction in activation
units; empty distributions). ``true_activations`` are the neuron's real activations (delphi writes its
0–10 normalised ones; Pearson r is the same under that scaling). An undefined correlation is ``"nan"``, and
``rsquared_score`` / ``absolute_dev_explained_score`` are 0, as delphi writes them.

**detection** (delphi ``scorers/classifier``: a list of ``ClassifierOutput``): one record per held-out
window, ``{"str_tokens", "activations", "distance", "activating", "prediction", "probability",
"correct"}``. ``activating``: the window is a held-out top exemplar (distance 0; other windows -1, as
delphi's non-activating examples); ``prediction`` (bool): the explanation fires somewhere in the window (a
mode fires where its prediction reaches half its largest prediction on the held-out windows, the rule of
the coverage score); ``probability``: the window's largest prediction over the largest on all held-out
windows, in [0, 1]; ``correct``: ``prediction == activating``. The predictions come from the simulator
(``exec`` by default), not from an LLM as in delphi's detection scorer. delphi's ``log.load_data`` reads
every directory under ``scores/`` as classifier records (its own simulation files included); export
``scorers=("detection",)`` for a directory to give it.

delphi keeps one explanation per latent and run: a file with several explanations of one neuron (two
methods) is exported one method at a time, into separate directories.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, ExplanationError
from ..explanations.model import Explanation
from ..explanations.vocab import Vocab
from ..io import write_json, write_text
from ..scoring.evidence import WindowBatch
from ..scoring.score import ScoreResult
from ..scoring.simulate import Simulation
from .openai import window_scores
from .undefined import defined, delphi_value, is_undefined, read_correlation

DEFAULT_MODULE = "layers.{layer}.mlp"
SCORERS = ("simulation", "detection")
ACTIVATION_SCALE = "simulated_unnormalized_activations"
_LATENT = re.compile(r"(?P<module>.+)_latent(?P<index>[0-9]+)\.txt")


def latent_name(layer: int, index: int, module: str = DEFAULT_MODULE) -> str:
    """delphi's name of a latent, e.g. ``layers.3.mlp_latent7`` (``module`` may use ``{layer}``)."""
    return f"{module.format(layer=layer)}_latent{index}"


def _firing(sim: Simulation) -> torch.Tensor:
    """(T,) bool: where some mode fires (its prediction ≥ half its batch maximum, that maximum > 0)."""
    rows = sim.modes if sim.modes.shape[0] else sim.whole[None]
    rows = rows.detach().cpu().to(torch.float64)
    if rows.shape[1] == 0:
        return torch.zeros(0, dtype=torch.bool)
    top = rows.amax(1, keepdim=True)
    return ((rows >= 0.5 * top) & (top > 0)).any(0)


def _sequence(w: dict[str, Any]) -> dict[str, Any]:
    return {"distance": 0 if w["kind"] == "top" else -1,
            "simulation": {"tokens": w["tokens"], "expected_activations": w["pred"],
                           "activation_scale": ACTIVATION_SCALE, "distribution_values": [],
                           "distribution_probabilities": [], "uncalibrated_simulation": None},
            "true_activations": w["true"], "ev_correlation_score": delphi_value(w["r"]),
            "rsquared_score": 0, "absolute_dev_explained_score": 0}


def _group(distance: int, seqs: list[dict[str, Any]], score: float) -> dict[str, Any]:
    return {"distance": distance, "scored_sequence_simulations": seqs, "ev_correlation_score": delphi_value(score),
            "rsquared_score": 0, "absolute_dev_explained_score": 0}


def simulation_records(res: ScoreResult, pair: tuple[WindowBatch, Simulation] | None,
                       vocab: Vocab | None) -> list[dict[str, Any]]:
    """The ``scores/simulation`` body of one explanation (module docstring); without the held-out batch and
    its simulation only the overall (distance 0) record, with no sequences."""
    if pair is None or vocab is None:
        return [_group(0, [], res.score if res.n_tokens >= 2 else math.nan)]
    batch, sim = pair
    windows = window_scores(batch, sim, vocab)
    seqs = [_sequence(w) for w in windows]
    top = batch.kind_mask("top")
    out = []
    if bool(top.any()):
        out.append(_group(1, [s for s, w in zip(seqs, windows, strict=True) if w["kind"] == "top"],
                          defined(res.top_score, sim.whole[top], batch.acts[top])))
    out.append(_group(0, seqs, defined(res.score, sim.whole, batch.acts)))
    return out


def detection_records(pair: tuple[WindowBatch, Simulation], vocab: Vocab) -> list[dict[str, Any]]:
    """The ``scores/detection`` body of one explanation: one ClassifierOutput per window (module docstring)."""
    batch, sim = pair
    windows = window_scores(batch, sim, vocab)
    fires = _firing(sim)
    pred = sim.whole.detach().cpu().to(torch.float64)
    peak = float(pred.max()) if pred.numel() else 0.0
    sizes = [int(w.ids.size) for w in batch.windows]
    out = []
    for w, f, p in zip(windows, fires.split(sizes), pred.split(sizes), strict=True):
        activating = w["kind"] == "top"
        prediction = bool(f.any())
        probability = min(1.0, max(0.0, float(p.max()) / peak)) if peak > 0 and p.numel() else 0.0
        out.append({"str_tokens": w["tokens"], "activations": w["true"], "distance": 0 if activating else -1,
                    "activating": activating, "prediction": prediction, "probability": probability,
                    "correct": prediction == activating})
    return out


def export_delphi(out_dir: str | Path, explanations: Sequence[Explanation],
                  results: Sequence[ScoreResult] | None = None, *,
                  simulations: Sequence[tuple[WindowBatch, Simulation] | None] | None = None,
                  vocab: Vocab | None = None, module: str = DEFAULT_MODULE,
                  scorers: Sequence[str] = SCORERS) -> list[Path]:
    """Writes every explanation (and its scores) as delphi per-latent files; returns the paths written.

    ``results[i]`` scores ``explanations[i]``; ``simulations[i]``, when given, is the held-out batch it was
    scored on with its Simulation (``vocab`` turns ids into token strings). ``scorers``: which score files
    to write, of ``simulation`` and ``detection`` (the latter needs the simulations). Writes are atomic,
    one file at a time.
    """
    out = Path(out_dir)
    n = len(explanations)
    bad = [s for s in scorers if s not in SCORERS]
    if bad or not scorers:
        raise ConfigError(f"delphi scorers must be some of {', '.join(SCORERS)}, got {', '.join(scorers) or 'none'}")
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
                              "explanation per latent: export one method at a time (--method) into separate "
                              "directories")
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
        pair = simulations[i] if simulations is not None else None
        bodies: dict[str, Any] = {}
        if "simulation" in scorers:
            bodies["simulation"] = simulation_records(results[i], pair, vocab)
        if "detection" in scorers and pair is not None and vocab is not None:
            bodies["detection"] = detection_records(pair, vocab)
        for scorer, body in bodies.items():
            path = out / "scores" / scorer / f"{name}.txt"
            write_text(path, json.dumps(body, ensure_ascii=False, allow_nan=False))
            written.append(path)
    if results:
        path = out / "neuronscope_export.json"
        write_json(path, {"format": "delphi", "module": module, "scorers": list(scorers),
                          "simulators": sorted({r.simulator for r in results}),
                          "activating": "held-out top exemplar windows (distance 0); other windows distance -1",
                          "prediction": "the explanation fires in the window (simulated, not an LLM judgement)"})
        written.append(path)
    return written


def _pooled(pairs: list[tuple[Any, Any]]) -> float:
    """Pearson r over the tokens of all (prediction, truth) pairs pooled; NaN where undefined."""
    x = np.concatenate([np.asarray(p, dtype=np.float64) for p, _ in pairs] or [np.zeros(0)])
    y = np.concatenate([np.asarray(t, dtype=np.float64) for _, t in pairs] or [np.zeros(0)])
    if x.shape != y.shape or is_undefined(x, y):
        return math.nan
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else math.nan


def _is_list_of(obj: Any, key: str) -> bool:
    return isinstance(obj, list) and bool(obj) and all(isinstance(r, dict) and key in r for r in obj)


def _correlation_score(obj: Any, where: Path) -> float | None:
    """The overall Pearson score a score file holds (NaN: undefined), or None when it holds none.

    delphi's simulation list: the ``distance == 0`` record's ``ev_correlation_score``; without one (delphi
    writes it only when there were non-activating examples), Pearson r over every sequence pooled.
    Classifier records (fuzz, detection) carry no correlation. Files of neuronscope 0.1 (a summary
    ``{"score": ...}``, or windows with ``prediction`` lists) are still read.
    """
    if _is_list_of(obj, "scored_sequence_simulations"):
        overall = [r for r in obj if r.get("distance") == 0]
        if overall:
            r = read_correlation(overall[0].get("ev_correlation_score"))
            if r is None:
                raise ExplanationError(f"{where}: ev_correlation_score of distance 0 must be a number or \"nan\"")
            return r
        try:
            return _pooled([(s["simulation"]["expected_activations"], s["true_activations"])
                            for rec in obj for s in rec["scored_sequence_simulations"]])
        except (KeyError, TypeError, ValueError):
            raise ExplanationError(f"{where}: a scored sequence simulation lacks its activations") from None
    if isinstance(obj, dict) and "score" in obj:
        return read_correlation(obj["score"])
    if _is_list_of(obj, "prediction") and all(isinstance(w["prediction"], list) for w in obj):
        try:
            return _pooled([(w["prediction"], w["activations"]) for w in obj])
        except (KeyError, TypeError, ValueError):
            return None
    return None


def read_delphi_explanations(path: str | Path) -> list[Explanation]:
    """Explanations from a delphi run directory (holding ``explanations/``) or an explanations directory.

    Each ``<module>_latent<N>.txt`` becomes ``Explanation(layer, N, modes=[], method="delphi", text=...)``,
    the layer being the first integer of ``<module>``. Correlation scores found beside it under
    ``scores/<scorer>/`` (delphi's simulation files, see :func:`_correlation_score`) go to
    ``scores[<scorer>]``, and to ``scores["score"]`` when there is exactly one; an undefined one (``"nan"``)
    is left out of ``scores`` and named in ``meta["undefined_scores"]``. Classifier files (fuzz, detection)
    carry no correlation and are left out. Empty explanations are skipped. Sorted by (layer, N).
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
        found: dict[str, float] = {}
        for d in score_dirs:
            sf = d / f.name
            if not sf.is_file():
                continue
            try:
                obj = json.loads(sf.read_text(encoding="utf-8"))  # json reads delphi's NaN too
            except json.JSONDecodeError as e:
                raise ExplanationError(f"{sf}: not valid JSON ({e})") from None
            r = _correlation_score(obj, sf)
            if r is not None:
                found[d.name] = r
        if len(found) == 1:
            found["score"] = next(iter(found.values()))
        meta: dict[str, Any] = {"source": str(f), "module": m["module"]}
        undefined = sorted(k for k, v in found.items() if not math.isfinite(v))
        if undefined:
            meta["undefined_scores"] = undefined
        out.append(Explanation(layer=int(layer_m[0]), index=int(m["index"]), modes=[], method="delphi",
                               text=text, scores={k: v for k, v in found.items() if math.isfinite(v)}, meta=meta))
    out.sort(key=lambda e: e.key)
    return out
