"""OpenAI neuron-explainer interop: ``NeuronRecord`` files as an evidence source, scored explanations out.

Reading. OpenAI's published activation datasets hold one JSON object per neuron at
``<root>/<layer>/<neuron>.json`` (or ``<root>/neurons/<layer>/<neuron>.json``), written by their
``FastDataclass`` serializer: objects may carry a ``"dataclass_name"`` tag (``NeuronRecord``,
``ActivationRecord``, ``NeuronId``) and the moments may be ``NaN`` (Python's ``json`` writes it) or
``null``. Records hold decoded token strings (``" the"``), not ids, so one :class:`Vocab` per directory
numbers every distinct string in first-seen order (a neuron's most-positive records, then its quantile
samples, then its random sample, each in file order) and is shared by every neuron read from it.

The train / held-out split is the one documented in ``scoring.evidence``: the most-positive records are
ranked by their largest activation (stable, so OpenAI's already sorted lists keep their order) and
interleaved, even ranks to train and odd ranks to held-out (kind ``top``, focus on the record's argmax);
each stratum of ``random_sample_by_quantile`` is interleaved the same way (kind ``quantile``: a whole
sequence was sampled, so no focus); so is ``random_sample`` (kind ``random``). Records carry no left
context (``Window.left`` is empty) and no global positions (``start`` = -1). Empty records are skipped.

Refused with a StoreError (ExplanationError for explanation files) naming the file: leading zeros (``0/01.json``,
``00/3.json``), a symlink out of the directory (links within it are followed), nesting too deep, ``10**400``.

Writing. ``<out>/<layer>/<neuron>.jsonl`` holds one ``NeuronSimulationResults`` line, the shape OpenAI's
``load_neuron_explanations`` reads, with one ``ScoredExplanation`` per explanation of the neuron
(exporting another explanation of the same neuron adds an entry; re-exporting the same text replaces
its entry). Only the text and the scores fit that shape: modes and conditions stay in neuronscope's own
explanations JSONL.
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

from ..errors import ConfigError, ExplanationError, NeuronscopeError, StoreError
from ..explanations.files import write_jsonl
from ..explanations.model import Explanation
from ..explanations.vocab import Vocab
from ..scoring.evidence import NeuronEvidence, Window, WindowBatch
from ..scoring.score import ScoreResult
from ..scoring.simulate import Simulation
from .undefined import defined, openai_value, read_correlation

_NUMBER = re.compile(r"[0-9]+")
_F32_MAX = float(np.finfo(np.float32).max)


def _checked(root: Path, path: Path, name: str, err: type[NeuronscopeError]) -> int:
    """The number ``name`` spells; refuses leading zeros and a link leading out of ``root``."""
    if name != str(int(name)):
        raise err(f"{path}: layer and neuron numbers must have no leading zeros (rename it to {int(name)})")
    if path.is_symlink() and not (real := path.resolve()).is_relative_to(root.resolve()):
        raise err(f"{path} links to {real}, outside {root}: refused (copy the file into the directory instead)")
    return int(name)


def _numbered_files(root: Path, suffix: str, err: type[NeuronscopeError]) -> list[tuple[int, int, Path]]:
    """``(layer, index, path)`` of every ``<root>/<layer>/<index><suffix>``, sorted (refusals: module docstring)."""
    out = []
    for d in root.iterdir():
        if not (d.is_dir() and _NUMBER.fullmatch(d.name)):
            continue
        layer = _checked(root, d, d.name, err)
        for f in d.iterdir():
            if f.name.endswith(suffix) and _NUMBER.fullmatch(f.name[: -len(suffix)]) and f.is_file():
                out.append((layer, _checked(root, f, f.name[: -len(suffix)], err), f))
    out.sort(key=lambda t: (t[0], t[1]))
    return out


def _load_json(text: str | bytes, message: str, err: type[NeuronscopeError]) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, the int digit limit, nesting too deep
        raise err(f"{message} ({e})") from None


def _tagged(obj: Any, name: str, where: str, err: type[NeuronscopeError]) -> dict[str, Any]:
    """``obj`` as a dict whose optional ``dataclass_name`` tag is ``name``; ``where`` (``<file>`` or
    ``<file>: <field path>``) locates the object in every message."""
    if not isinstance(obj, dict):
        raise err(f"{where} must be a {name} object, got {type(obj).__name__}")
    tag = obj.get("dataclass_name")
    if tag is not None and tag != name:
        raise err(f"{where}: dataclass_name is {tag!r}, expected {name!r}")
    return obj


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _float(v: int | float, where: str, err: type[NeuronscopeError] = StoreError) -> float:
    try:  # an int beyond float range (10**400) raises OverflowError in float() and math.isfinite()
        return float(v)
    except OverflowError:
        raise err(f"{where} is a number too large for a float ({len(str(abs(v)))} digits)") from None


def _optional_number(obj: dict[str, Any], key: str, file: str) -> float | None:
    """A top-level moment: None when absent, null or NaN (OpenAI writes NaN for "not computed")."""
    if (v := obj.get(key)) is None:
        return None
    if not _is_number(v):
        raise StoreError(f"{file}: {key} must be a number or null, got {v!r}")
    v = _float(v, f"{file}: {key}")
    return v if math.isfinite(v) else None


def _check_neuron_id(obj: dict[str, Any], layer: int, index: int, file: str, err: type[NeuronscopeError]) -> None:
    # A file whose neuron_id disagrees with its path was copied or renamed wrongly; trusting either
    # one silently would attach evidence (or scores) to the wrong neuron.
    nid = obj.get("neuron_id")
    if nid is None:
        return
    nid = _tagged(nid, "NeuronId", f"{file}: neuron_id", err)
    got = (nid.get("layer_index"), nid.get("neuron_index"))
    if got != (layer, index):
        raise err(f"{file}: neuron_id is layer {got[0]!r} neuron {got[1]!r} but the file is for {layer}/{index}")


def _activation_record(obj: Any, where: str) -> tuple[list[str], np.ndarray]:
    """``(tokens, acts)`` of one ActivationRecord: L strings and (L,) float32."""
    rec = _tagged(obj, "ActivationRecord", where, StoreError)
    tokens, acts = rec.get("tokens"), rec.get("activations")
    if not isinstance(tokens, list):
        raise StoreError(f"{where}.tokens must be a list of strings, got {type(tokens).__name__}")
    for i, t in enumerate(tokens):
        if not isinstance(t, str):
            raise StoreError(f"{where}.tokens[{i}] must be a string, got {t!r}")
    if not isinstance(acts, list):
        raise StoreError(f"{where}.activations must be a list of numbers, got {type(acts).__name__}")
    for i, a in enumerate(acts):
        # np.asarray(dtype=float) would accept "1.5" and True; a NaN would turn every score into NaN.
        if not _is_number(a) or not math.isfinite(a := _float(a, f"{where}.activations[{i}]")):
            raise StoreError(f"{where}.activations[{i}] must be a finite number, got {a!r}")
        if abs(a) > _F32_MAX:  # it would become inf in the float32 array
            raise StoreError(f"{where}.activations[{i}] is {a:g}, beyond float32 range")
    if len(tokens) != len(acts):
        raise StoreError(f"{where} has {len(tokens)} tokens but {len(acts)} activations")
    return tokens, np.asarray(acts, dtype=np.float32)


def _record_list(value: Any, where: str) -> list[Any]:
    if value is not None and not isinstance(value, list):
        raise StoreError(f"{where} must be a list of ActivationRecords, got {type(value).__name__}")
    return value or []


class OpenAIRecords:
    """An OpenAI ``NeuronRecord`` directory as an evidence source (same interface as a NeuronStore source).

    ``path``: the dataset directory, holding ``<layer>/<neuron>.json`` or ``neurons/<layer>/<neuron>.json``.
    Files are read on demand; nothing is cached but the shared vocabulary.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_dir():
            raise StoreError(f"NeuronRecord directory {path} does not exist")
        self.path = path
        self.root = path / "neurons" if (path / "neurons").is_dir() else path
        self.vocab = Vocab.from_strings([])
        self.vocab.name = f"openai:{path}"
        self._neurons: list[tuple[int, int]] | None = None

    def neurons(self) -> list[tuple[int, int]]:
        """Every ``(layer, neuron)`` with a record file, sorted."""
        if self._neurons is None:
            self._neurons = [(layer, index) for layer, index, _ in _numbered_files(self.root, ".json", StoreError)]
            if not self._neurons:
                raise StoreError(f"{self.root} holds no <layer>/<neuron>.json NeuronRecord files")
        return list(self._neurons)

    def file(self, layer: int, index: int) -> Path:
        """The record file of one neuron (it may not exist; see :meth:`has`)."""
        return self.root / str(int(layer)) / f"{int(index)}.json"

    def has(self, layer: int, index: int) -> bool:
        return self.file(layer, index).is_file()

    def read(self, layer: int, index: int) -> dict[str, Any]:
        """The raw NeuronRecord object of one neuron (tag and neuron_id checked, records not yet)."""
        f = self.file(layer, index)
        if not f.is_file():
            raise StoreError(f"no NeuronRecord for neuron {layer}/{index} in {self.root} (expected {f})")
        for p in (f.parent, f):
            _checked(self.root, p, p.stem, StoreError)
        obj = _load_json(f.read_bytes(), f"{f}: not a valid JSON NeuronRecord", StoreError)  # bad UTF-8 too
        obj = _tagged(obj, "NeuronRecord", str(f), StoreError)
        _check_neuron_id(obj, layer, index, str(f), StoreError)
        return obj

    def evidence(self, layer: int, indices: Sequence[int]) -> list[NeuronEvidence]:
        """Train/held-out windows of neurons ``indices`` of ``layer`` (split: see the module docstring)."""
        return [self._evidence(int(layer), int(i)) for i in indices]

    def _evidence(self, layer: int, index: int) -> NeuronEvidence:
        raw = self.read(layer, index)
        file = str(self.file(layer, index))

        def parse(value: Any, field: str) -> list[tuple[list[str], np.ndarray]]:
            recs = [_activation_record(r, f"{file}: {field}[{i}]")
                    for i, r in enumerate(_record_list(value, f"{file}: {field}"))]
            return [(t, a) for t, a in recs if t]

        # Everything is validated before any id is assigned, so a bad file leaves the vocabulary alone.
        top = parse(raw.get("most_positive_activation_records"), "most_positive_activation_records")
        strata = [parse(s, f"random_sample_by_quantile[{q}]")
                  for q, s in enumerate(_record_list(raw.get("random_sample_by_quantile"),
                                                     f"{file}: random_sample_by_quantile"))]
        rand = parse(raw.get("random_sample"), "random_sample")
        if not top and not rand and not any(strata):
            raise StoreError(f"{file} holds no non-empty activation records")
        stats = self._stats(raw, [a for _, a in top], file)

        def windows(recs: list[tuple[list[str], np.ndarray]], kind: str) -> list[Window]:
            return [Window(ids=self.vocab.encode(t), acts=a, kind=kind,
                           focus=int(np.argmax(a)) if kind == "top" else -1) for t, a in recs]

        groups = [windows(top, "top"), *(windows(s, "quantile") for s in strata), windows(rand, "random")]
        # Stable sort: OpenAI's lists are already in descending order and keep it exactly.
        groups[0].sort(key=lambda w: -float(w.acts.max()))
        train, held = [], []
        for group in groups:
            train += group[0::2]
            held += group[1::2]
        return NeuronEvidence(layer=layer, index=index, vocab=self.vocab, train=train, heldout=held,
                              stats=stats, source=file)

    @staticmethod
    def _stats(raw: dict[str, Any], top: list[np.ndarray], file: str) -> dict[str, float]:
        """mean, std, skewness, kurtosis (finite ones), max over the top records, ``boundary<i>``."""
        stats: dict[str, float] = {}
        for key in ("mean", "skewness", "kurtosis"):
            if (v := _optional_number(raw, key, file)) is not None:
                stats[key] = v
        var = _optional_number(raw, "variance", file)
        if var is not None:
            if var < 0:
                raise StoreError(f"{file}: variance is negative ({var})")
            stats["std"] = math.sqrt(var)
        if top:
            stats["max"] = max(float(a.max()) for a in top)
        bounds = raw.get("quantile_boundaries")
        if bounds is not None:
            if not isinstance(bounds, list):
                raise StoreError(f"{file}: quantile_boundaries must be a list of numbers or null")
            for i, b in enumerate(bounds):
                if not _is_number(b):
                    raise StoreError(f"{file}: quantile_boundaries[{i}] must be a number, got {b!r}")
                if math.isfinite(_float(b, f"{file}: quantile_boundaries[{i}]")):
                    # Their quantile levels are not in the file: kept by position, not as a store's ``q<level>``.
                    stats[f"boundary{i}"] = float(b)
        return stats


def _f32_list(values: torch.Tensor | np.ndarray) -> list[float]:
    """Shortest decimal that reads back as the same float32 (``0.1``, not ``0.10000000149011612``)."""
    arr = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float32)
    return [float(s) for s in arr.astype(str)]


def window_scores(batch: WindowBatch, sim: Simulation, vocab: Vocab) -> list[dict[str, Any]]:
    """Per window of ``batch``: tokens, true and predicted activations, and their Pearson r.

    ``sim.whole``: (T,) predictions over the scored tokens of ``batch``. Returns one dict per window with
    ``tokens`` (L strings), ``true`` and ``pred`` (L floats), ``r`` (NaN where it is undefined: fewer than
    two tokens or a constant side; see ``interop.undefined``) and ``kind``.
    """
    pred = sim.whole.detach().to("cpu", torch.float64)
    if pred.shape != (batch.n_tokens,):
        raise ConfigError(f"simulation covers {tuple(pred.shape)} tokens, the batch has ({batch.n_tokens},)")
    true = batch.acts.detach().to("cpu", torch.float64)
    win = batch.window.cpu()
    n = len(batch.windows)

    def per_window(x: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
        return torch.zeros(n, dtype=torch.float64).scatter_reduce_(0, win, x, reduce, include_self=False)

    # Centred two-pass sums per window: one vectorised pass instead of a Python loop of corrcoefs.
    count = per_window(torch.ones_like(pred))
    dx = pred - (per_window(pred) / count.clamp(min=1))[win]
    dy = true - (per_window(true) / count.clamp(min=1))[win]
    den = torch.sqrt(per_window(dx * dx) * per_window(dy * dy))
    constant = (per_window(pred, "amax") == per_window(pred, "amin")) | (
        per_window(true, "amax") == per_window(true, "amin"))
    undefined = (count < 2) | constant | ~(den > 0)
    r = torch.where(undefined, torch.nan, per_window(dx * dy) / torch.where(undefined, 1.0, den)).clamp(-1, 1)
    sizes = [int(w.ids.size) for w in batch.windows]
    out = []
    for w, p, t, rw in zip(batch.windows, sim.whole.split(sizes), batch.acts.split(sizes), r.tolist(), strict=True):
        out.append({"tokens": [vocab.pieces[int(i)] for i in w.ids], "true": _f32_list(t), "pred": _f32_list(p),
                    "r": float(rw), "kind": w.kind})
    return out


def export_openai(out_dir: str | Path, explanation: Explanation, result: ScoreResult,
                  batch: WindowBatch | None = None, sims: Simulation | None = None, *,
                  vocab: Vocab | None = None) -> Path:
    """Writes (or updates) ``<out_dir>/<layer>/<neuron>.jsonl`` in OpenAI's ``NeuronSimulationResults`` shape.

    ``result``: the explanation's score (its ``score`` becomes ``ev_correlation_score``). With ``batch``
    (the held-out windows it was scored on) and ``sims`` (the explanation's Simulation over that batch)
    each window is written as a ``ScoredSequenceSimulation``; ``vocab`` then turns ids back into token
    strings. Undefined correlations (a constant side, fewer than two tokens; recomputed from ``batch``
    and ``sims`` when given) are written as ``null``, as OpenAI's orjson-written files hold their NaN.
    Returns the file written (atomically).
    """
    if (result.layer, result.index) != explanation.key:
        raise ConfigError(f"score of neuron {result.layer}/{result.index} given for the explanation of "
                          f"neuron {explanation.layer}/{explanation.index}")
    text = explanation.summary
    if not text:
        raise ExplanationError(f"explanation of neuron {explanation.layer}/{explanation.index} has no text to export")
    if (batch is None) != (sims is None):
        raise ConfigError("give both batch and sims (per-window simulations) or neither")
    seqs = []
    score = result.score if result.n_tokens >= 2 else math.nan
    if batch is not None and sims is not None:
        if vocab is None:
            raise ConfigError("exporting per-window simulations needs the vocab to write token strings")
        score = defined(result.score, sims.whole, batch.acts)
        for w in window_scores(batch, sims, vocab):
            seqs.append({
                "dataclass_name": "ScoredSequenceSimulation",
                "simulation": {"dataclass_name": "SequenceSimulation", "tokens": w["tokens"],
                               "expected_activations": w["pred"], "activation_scale": "neuron_activations",
                               "distribution_values": [], "distribution_probabilities": []},
                "true_activations": w["true"], "ev_correlation_score": openai_value(w["r"])})
    entry = {"dataclass_name": "ScoredExplanation", "explanation": text,
             "scored_simulation": {"dataclass_name": "ScoredSimulation", "scored_sequence_simulations": seqs,
                                   "ev_correlation_score": openai_value(score),
                                   "rsquared_score": None, "absolute_dev_explained_score": None}}
    path = Path(out_dir) / str(explanation.layer) / f"{explanation.index}.jsonl"
    entries = _existing_entries(path, explanation.layer, explanation.index)
    same = [i for i, e in enumerate(entries) if e.get("explanation") == text]
    if same:
        entries[same[0]] = entry
    else:
        entries.append(entry)
    write_jsonl(path, [{"dataclass_name": "NeuronSimulationResults",
                        "neuron_id": {"dataclass_name": "NeuronId", "layer_index": explanation.layer,
                                      "neuron_index": explanation.index},
                        "scored_explanations": entries}])
    return path


def _results_objects(path: Path, layer: int, index: int) -> list[tuple[str, dict[str, Any]]]:
    """``(where, NeuronSimulationResults)`` of every non-empty line of an explanation file."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ExplanationError(f"{path}: not UTF-8 text ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        obj = _load_json(line, f"{where}: not valid JSON", ExplanationError)
        obj = _tagged(obj, "NeuronSimulationResults", where, ExplanationError)
        _check_neuron_id(obj, layer, index, where, ExplanationError)
        items = obj.get("scored_explanations")
        if not isinstance(items, list):
            raise ExplanationError(f"{where}: scored_explanations must be a list")
        for i, item in enumerate(items):
            _tagged(item, "ScoredExplanation", f"{where}: scored_explanations[{i}]", ExplanationError)
        out.append((where, obj))
    return out


def _existing_entries(path: Path, layer: int, index: int) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [e for _, obj in _results_objects(path, layer, index) for e in obj["scored_explanations"]]


def read_openai_explanations(path: str | Path) -> list[Explanation]:
    """Every scored explanation under ``<path>/<layer>/<neuron>.jsonl`` as a free-text Explanation.

    Each becomes ``Explanation(layer, index, modes=[], method="openai", text=...)`` with
    ``scores["score"]`` = its ``ev_correlation_score`` when finite; a ``null`` or NaN score (OpenAI's
    "undefined") is left out of ``scores`` and named in ``meta["undefined_scores"]``. Empty explanation
    strings are skipped.
    Sorted by (layer, neuron), file order within a neuron.
    """
    root = Path(path)
    if not root.is_dir():
        raise ExplanationError(f"OpenAI explanations directory {root} does not exist")
    out = []
    for layer, index, f in _numbered_files(root, ".jsonl", ExplanationError):
        for where, obj in _results_objects(f, layer, index):
            for i, item in enumerate(obj["scored_explanations"]):
                at = f"{where}: scored_explanations[{i}]"
                text = item.get("explanation")
                if not isinstance(text, str):
                    raise ExplanationError(f"{at}.explanation must be a string, got {text!r}")
                if not text.strip():
                    continue
                scores: dict[str, float] = {}
                meta: dict[str, Any] = {"source": str(f)}
                sim = item.get("scored_simulation")
                if sim is not None:
                    sim = _tagged(sim, "ScoredSimulation", f"{at}.scored_simulation", ExplanationError)
                    ev, field = sim.get("ev_correlation_score"), f"{at}.scored_simulation.ev_correlation_score"
                    if ev is not None and not _is_number(ev):
                        raise ExplanationError(f"{field} must be a number")
                    r = read_correlation(ev if ev is None else _float(ev, field, ExplanationError))
                    if r is not None and math.isfinite(r):
                        scores["score"] = r
                    else:  # null / NaN: OpenAI's "undefined" (constant prediction or truth), not 0
                        meta["undefined_scores"] = ["score"]
                out.append(Explanation(layer=layer, index=index, modes=[], method="openai", text=text,
                                       scores=scores, meta=meta))
    return out
