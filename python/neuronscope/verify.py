"""``neuronscope verify``: the expensive checks of a NeuronStore, those that read every token and tensor or run
the model (opening a store does the cheap ones: manifest, layer headers, token layout; see ``store_checks``).

1. open — the store opens (a failure ends the verification: nothing after it can be trusted);
2. tokens — every id inside the vocabulary, documents of at least one token, the corpus fingerprint
   recomputed from ``tokens.bin`` and ``docs.npy``;
3. each layer — ``count + nonfinite = tokens_seen``, histogram sums equal ``count``, finite moments with
   ``min <= mean <= max``; top-k (bottom-k) filled for ``min(k, count)`` slots with finite values sorted
   descending (ascending; ties by the lower position), top-1 equal to ``max`` (bottom-1 to ``min``), positions
   distinct and inside the mined sequences; samples inside them too;
4. recompute — the model is checked against the store (architecture, neurons, layers, vocabulary,
   positions), then a seeded sample of top-k values is recomputed by running it on the stored tokens at
   those positions (``activation_source``, exactly as mined) and compared within a tolerance per dtype.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import NeuronscopeError
from .mining.stats import LayerStats
from .store import NeuronStore, layer_file, open_store

if TYPE_CHECKING:
    from .models import Subject

TOLERANCE = {"float32": (1e-3, 1e-4), "bfloat16": (5e-2, 5e-2), "float16": (2e-2, 2e-2)}
"""``(rtol, atol)`` of a recomputed top-k value per model dtype: batches differ from mining's in padding
and batch mates, so the same model reproduces a value to rounding, not bit for bit."""


@dataclass
class VerifyReport:
    """What :func:`verify_store` checked: one line per check passed, one per problem found."""

    path: Path
    passed: list[str] = field(default_factory=list)
    """One line per check that found nothing wrong."""
    problems: list[str] = field(default_factory=list)
    """One line per problem (``layer 0: ...``, ``tokens: ...``); empty when the store is sound."""
    recomputed: int = 0
    """Top-k values recomputed with the model."""
    max_error: float = 0.0
    """Largest ``|recomputed - stored|`` among them."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """The report as printed by ``neuronscope verify``: ``ok``/``problem`` lines, then a summary."""
        n = len(self.problems)
        tail = "store ok" if self.ok else f"{n} problem{'s' * (n != 1)}"
        return ([f"ok       {line}" for line in self.passed] + [f"problem  {line}" for line in self.problems]
                + [f"verify {self.path}: {tail}"])


def verify_store(store: str | Path | NeuronStore, *, sample: int = 16, seed: int = 0, model: str | None = None,
                 device: str = "cpu", subject: Subject | None = None) -> VerifyReport:
    """Checks a NeuronStore thoroughly (see the module docstring) and reports every problem found.

    ``sample``: top-k values recomputed per layer (0: no model is loaded). ``model``: the subject model when
    the store's has moved (see :class:`~neuronscope.store.NeuronStore`). ``subject``: an already loaded
    :class:`~neuronscope.models.Subject` to recompute with (e.g. a random test model).
    """
    report = VerifyReport(Path(store.path if isinstance(store, NeuronStore) else store))
    try:
        store = store if isinstance(store, NeuronStore) else open_store(store, model=model)
    except NeuronscopeError as e:
        report.problems.append(f"open: {e}")
        return report
    report.passed.append(f"open: manifest, {len(store.layers)} layer header{'s' * (len(store.layers) != 1)} "
                         "and the token layout")
    _check_tokens(store, report)
    intervals = _mined_intervals(store)
    for layer in store.layers:
        try:
            st = store.stats(layer)
        except NeuronscopeError as e:
            report.problems.append(f"layer {layer}: {e}")
            continue
        found = _check_layer(store, layer, st, intervals)
        report.problems += found
        if not found:
            extremes = "top-k and bottom-k" if store.config.bottom_k else "top-k"
            report.passed.append(f"layer {layer}: {st.n_neurons} neurons: counts, histograms, moments, {extremes} "
                                 "order and positions, samples")
    if sample > 0 and report.ok:
        _recompute(store, report, sample, seed, device, subject)
    return report


def _check_tokens(store: NeuronStore, report: VerifyReport) -> None:
    tok, vocab = store.tokens, store.vocab_size
    ids, h, hi, step = tok.tokens, hashlib.sha256(), -1, 1 << 22
    for a in range(0, len(ids), step):
        chunk = np.ascontiguousarray(ids[a : a + step])
        h.update(chunk.tobytes())
        hi = max(hi, int(chunk.max()))
    h.update(np.asarray(tok.doc_offsets, dtype=np.int64).tobytes())
    found = []
    if vocab is not None and hi >= vocab:
        bad = np.flatnonzero(np.asarray(ids) >= vocab)
        found.append(f"tokens: {len(bad)} token ids outside the vocabulary of {vocab} (first at position "
                     f"{int(bad[0])}: id {int(ids[bad[0]])})")
    empty = np.flatnonzero(np.diff(tok.doc_offsets) <= 0)
    if len(empty):
        found.append(f"tokens: docs.npy offsets do not increase at document {int(empty[0])} ({len(empty)} documents)")
    if h.hexdigest()[:32] != tok.fingerprint:
        found.append(f"tokens: tokens.bin and docs.npy hash to {h.hexdigest()[:32]}, the token store's fingerprint "
                     f"is {tok.fingerprint} (the tokens were changed after mining)")
    report.problems += found
    if not found:
        report.passed.append(f"tokens: {tok.n_tokens} ids in [0, {hi}] (vocabulary {vocab}), {tok.n_docs} "
                             "documents, fingerprint matches")


def _mined_intervals(store: NeuronStore) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: the global token positions ``[lo, hi)`` of the mined sequences (all, for a planted store)."""
    if store.manifest.get("planted"):
        return np.array([0]), np.array([store.tokens.n_tokens])
    starts, lengths = store.packing.sequences(store.tokens)
    ranges = [(a, b) for a, b in store.sequence_ranges if b > a]
    return (np.array([starts[a] for a, _ in ranges], dtype=np.int64),
            np.array([starts[b - 1] + lengths[b - 1] for _, b in ranges], dtype=np.int64))


def _inside(positions: np.ndarray, intervals: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    lo, hi = intervals
    i = np.searchsorted(lo, positions, side="right") - 1
    return (i >= 0) & (positions < hi[np.maximum(i, 0)]) if len(lo) else np.zeros(positions.shape, bool)


def _check_layer(store: NeuronStore, layer: int, st: LayerStats,
                 intervals: tuple[np.ndarray, np.ndarray]) -> list[str]:
    """Every statistic of one layer against the definitions of ``mining/spec.py``; one line per failed check."""
    found: list[str] = []
    t = {name: v.numpy() for name, v in st.to_tensors().items()}
    n, count = st.n_neurons, t["count"]

    def flag(bad: np.ndarray, what: str) -> None:
        idx = np.flatnonzero(bad)
        if len(idx):
            found.append(f"{layer_file(layer)}: {what} for {len(idx)} of {n} neurons "
                         f"(first: {', '.join(str(i) for i in idx[:5])})")

    seen = store.n_tokens_seen
    flag(count + t["nonfinite"] != seen, f"count + nonfinite differ from tokens_seen {seen}")
    flag(t["hist"].sum(1) != count, "histogram counts differ from count")
    flag((t["positive"] < 0) | (t["positive"] > count), "positive outside [0, count]")
    has = count > 0
    lo, hi, mean = t["min"].astype(np.float64), t["max"].astype(np.float64), t["mean"]
    finite = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(mean) & np.isfinite(t["m2"])
    flag(has & ~finite, "non-finite min, max, mean or M2")
    slack = 1e-6 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
    flag(has & finite & ((lo > hi) | (mean < lo - slack) | (mean > hi + slack) | (t["m2"] < 0)),
         "min <= mean <= max or M2 >= 0 broken")
    for name, k, extreme, sign in (("top-k", store.config.k, t["max"], 1.0),
                                   ("bottom-k", store.config.bottom_k, t["min"], -1.0)):
        if k == 0:
            continue
        prefix = name.split("-")[0]
        values, pos = t[f"{prefix}k_values"], t[f"{prefix}k_positions"]
        filled = pos >= 0
        flag(filled.sum(1) != np.minimum(k, count), f"{name}: filled slots differ from min(k, count)")
        flag((filled[:, 1:] & ~filled[:, :-1]).any(1), f"{name}: an empty slot before a filled one")
        flag((filled & ~np.isfinite(values)).any(1), f"{name}: non-finite values")
        v, both = sign * values, filled[:, 1:] & filled[:, :-1]
        order = (v[:, :-1] < v[:, 1:]) | ((v[:, :-1] == v[:, 1:]) & (pos[:, :-1] > pos[:, 1:]))
        flag((both & order).any(1), f"{name}: values not sorted {'descending' if sign > 0 else 'ascending'}")
        flag(has & filled[:, 0] & (values[:, 0] != extreme), f"{name}: first value differs from the "
             f"{'max' if sign > 0 else 'min'}")
        ranked = np.sort(np.where(filled, pos, -1 - np.arange(k)), axis=1)
        flag((ranked[:, 1:] == ranked[:, :-1]).any(1), f"{name}: a position kept twice")
        flag((filled & ~_inside(pos, intervals)).any(1), f"{name}: positions outside the mined sequences")
    spos = t["sample_positions"].reshape(n, -1)
    sfilled = spos >= 0
    flag((sfilled & ~_inside(spos, intervals)).any(1), "samples: positions outside the mined sequences")
    flag((sfilled & ~np.isfinite(t["sample_values"].reshape(n, -1))).any(1), "samples: non-finite values")
    return found


def _recompute(store: NeuronStore, report: VerifyReport, sample: int, seed: int, device: str,
               subject: Subject | None) -> None:
    from .activations import SubjectActivations, activation_source
    from .models import load_subject

    dtype = store.manifest["model"].get("dtype", "float32")
    rtol, atol = TOLERANCE[dtype]
    planted = bool(store.manifest.get("planted"))
    try:
        if subject is None and not planted:
            subject = load_subject(store.subject_model(), device=device, dtype=dtype)
        source = activation_source(store, subject)
        if isinstance(source, SubjectActivations):
            mismatch = _model_mismatch(store, source.subject())
            if mismatch:
                report.problems += [f"model: {m}" for m in mismatch]
                return
    except NeuronscopeError as e:
        report.problems.append(f"recompute: {e}")
        return
    rng, errors = np.random.default_rng(seed), []
    for layer in store.layers:
        st = store.stats(layer)
        filled = (st.topk_positions >= 0).sum(1).numpy()
        cand = np.flatnonzero(filled)
        neurons = np.sort(rng.choice(cand, size=min(sample, len(cand)), replace=False))
        slots = rng.integers(0, filled[neurons]) if len(neurons) else neurons
        pos = st.topk_positions.numpy()[neurons, slots]
        want = st.topk_values.numpy()[neurons, slots].astype(np.float64)
        try:
            got = np.diagonal(source.at(layer, neurons, pos)).astype(np.float64) if len(neurons) else want
        except (NeuronscopeError, RuntimeError, IndexError, ValueError) as e:
            report.problems.append(f"recompute: layer {layer}: {type(e).__name__}: {e}")
            continue
        err = np.abs(got - want)
        report.recomputed += len(err)
        report.max_error = max(report.max_error, float(err.max(initial=0.0)))
        for i in np.flatnonzero(err > atol + rtol * np.abs(want)):
            errors.append(f"recompute: layer {layer} neuron {int(neurons[i])}: top-k value {want[i]:.6g} at "
                          f"position {int(pos[i])} recomputes to {got[i]:.6g} with {store.model_id}")
    report.problems += errors[:10] + ([f"recompute: ... and {len(errors) - 10} more"] if len(errors) > 10 else [])
    if not errors and report.recomputed:
        report.passed.append(f"recompute: {report.recomputed} top-k values match the model (max error "
                             f"{report.max_error:.2g}, tolerance {rtol:g} relative + {atol:g})")


def _model_mismatch(store: NeuronStore, subject: Subject) -> list[str]:
    """How the loaded model differs from the one the store was mined with (nothing to recompute then)."""
    m, out = store.manifest, []
    if subject.model_type != m["architecture"]:
        out.append(f"{store.model_id} is a {subject.model_type!r} model, the store was mined on "
                   f"{m['architecture']!r}")
    if subject.n_neurons != store.n_neurons:
        out.append(f"{store.model_id} has {subject.n_neurons} neurons per layer, the store {store.n_neurons}")
    if max(store.layers) >= subject.n_layers:
        out.append(f"{store.model_id} has {subject.n_layers} layers, the store holds layer {max(store.layers)}")
    emb = subject.model.get_input_embeddings()
    rows = getattr(emb, "num_embeddings", None)
    if rows is not None and store.vocab_size is not None and store.vocab_size > rows:
        out.append(f"{store.model_id} embeds {rows} token ids, the store's vocabulary has {store.vocab_size}")
    cfg = subject.model.config
    max_pos = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if max_pos is not None and store.packing.seq_len > max_pos:
        out.append(f"packing seq_len {store.packing.seq_len} exceeds the {max_pos} positions of {store.model_id}")
    return out
