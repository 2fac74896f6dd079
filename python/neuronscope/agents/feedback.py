"""What the agents get from the subject model: contextual features of tokens, and probe activations.

Features for mode clustering are the subject layer's whole MLP activation vector at each token
(the model's own contextual representation at the neuron's layer) when a NeuronStore is at hand;
all-MiniLM-L6-v2 contextual token embeddings otherwise (imported records carry no model).
Probes are corpus windows, outside the neuron's evidence, where a mode's conditions fire, and probe
texts written by an LLM; their activations come from the store's activation source (the subject model,
or the planted definition), so the refinement sees real feedback.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Mode, TokenIn, normalise
from ..scoring.evidence import NeuronEvidence, Window, WindowBatch, corpus_window
from .threads import torch_threads
from .workspace import FeatureFn, ProbeFn

ProbeTextFn = Callable[[list[str]], list[Window]]
"""``probe_texts(texts)`` → one window per text with the neuron's real activations."""


def scored_positions(batch: WindowBatch) -> np.ndarray:
    """(T,) int64 global position of every scored token (-1 where its window has no known start)."""
    starts = np.asarray([w.start for w in batch.windows], dtype=np.int64)
    win = batch.window.numpy()
    first = np.zeros(len(batch.windows) + 1, dtype=np.int64)
    np.cumsum([len(w.ids) for w in batch.windows], out=first[1:])
    offset = np.arange(len(win)) - first[win]
    return np.where(starts[win] >= 0, starts[win] + offset, -1)


def minilm_features(vocab) -> FeatureFn:
    """all-MiniLM-L6-v2 contextual embeddings of the tokens (for evidence without a subject model)."""
    from ..scoring.simulate import EmbedSimulator

    sim = EmbedSimulator(vocab)

    def features(batch: WindowBatch, mask: torch.Tensor) -> np.ndarray:
        return sim.token_embeddings(batch)[mask].numpy()

    return features


def word_features(vocab) -> FeatureFn:
    """Each token's own meaning out of context: the all-MiniLM-L6-v2 sentence embedding of its string.

    Contextual vectors alone separate semantic groups of tokens poorly (a token's vector is dominated by
    its neighbours); the word's own embedding carries the category ("file", "path" vs "def", "class").
    Embeddings are computed once per vocabulary id and cached.
    """
    from ..embedding import embed_texts
    from ..explanations.model import normalise

    cache: dict[int, np.ndarray] = {}

    def features(batch: WindowBatch, mask: torch.Tensor) -> np.ndarray:
        ids = batch.ids[batch.scored][mask].numpy()  # mask is over the scored tokens
        new = sorted({int(i) for i in ids.tolist()} - cache.keys())
        if new:
            vecs = embed_texts([normalise(vocab.pieces[i], True) or vocab.pieces[i] for i in new]).numpy()
            cache.update(zip(new, vecs, strict=True))
        return np.stack([cache[int(i)] for i in ids.tolist()]) if len(ids) else np.zeros((0, 384), np.float32)

    return features


def joint_features(*fns: FeatureFn) -> FeatureFn:
    """Concatenation of L2-normalised feature views (each view weighs the same in a cosine)."""

    def features(batch: WindowBatch, mask: torch.Tensor) -> np.ndarray:
        parts = []
        for fn in fns:
            x = fn(batch, mask).astype(np.float32)
            parts.append(x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12))
        return np.concatenate(parts, axis=1)

    return features


def store_features(activations, layer: int, vocab, known: dict[int, np.ndarray] | None = None) -> FeatureFn:
    """The feature layer's activation vectors at the tokens: from ``known`` (kept with the evidence) or fetched.

    ``activations``: the store's ActivationSource; its ``feature_layer(layer)`` says which subject layer
    represents the tokens (the neuron's own layer for a mined store).
    """
    flayer = activations.feature_layer(layer)
    fallback = minilm_features(vocab)
    known = {} if known is None else known

    def features(batch: WindowBatch, mask: torch.Tensor) -> np.ndarray:
        pos = scored_positions(batch)[mask.numpy()]
        if (pos < 0).any():
            return fallback(batch, mask)
        missing = np.unique([p for p in pos.tolist() if p not in known])
        if len(missing):
            with torch_threads(None):
                acts = activations.vectors(flayer, missing)
            known.update(zip(missing.tolist(), acts, strict=True))
        return np.stack([known[p] for p in pos.tolist()]).astype(np.float32)

    return features


def store_probe(store, activations, evidence: NeuronEvidence, evaluator: ConditionEvaluator, *,
                context: tuple[int, int] = (12, 4), scan_tokens: int = 50_000, seed: int = 0,
                neighbours: bool = False) -> ProbeFn:
    """Probe retrieval over a seeded random stretch of the mined corpus, never inside the evidence windows.

    ``store``: the NeuronStore (its token store); ``activations``: its ActivationSource; ``neighbours``: also
    probe the words nearest in meaning to each word mode's words (``AgentConfig.neighbour_probes``).
    """
    from ..scoring.evidence import covered_positions

    tok = store.tokens
    rng = np.random.default_rng([seed, evidence.layer, evidence.index, 7])
    taken = evidence_positions(evidence, len(tok.tokens))  # grows with every probe window handed out
    lo, hi = covered_positions(store)
    total_lo, total_hi = int(lo.min()) if len(lo) else 0, int(hi.max()) if len(hi) else 0

    def probe(modes: list[Mode], n: int) -> list[Window]:
        """Up to n probe windows per mode, all recomputed in one pass over the sequences they fall in.

        When the neuron's activations over the scanned stretch are a lookup (a planted store, or the layer
        prepared by the activation source), n more windows sit on its strongest activations that no mode explains:
        the activation feedback that finds a mode the evidence never showed (a weaker meaning whose tokens
        the top-k and the quantile samples happened to miss).
        With ``neighbours``, n windows per word mode on the words nearest in meaning to its words that it does not hold
        (:func:`neighbour_words`): the evidence holds only the words the top-k happened to show, and a category
        ("creating" beside "create", "usually" beside "often") is learnt only when its other members are tried.
        """
        if n <= 0 or total_hi <= total_lo:
            return []
        span = min(scan_tokens, total_hi - total_lo)
        a = int(rng.integers(total_lo, total_hi - span + 1))
        ids = torch.from_numpy(tok.tokens[a : a + span].astype(np.int64))
        seg = torch.from_numpy(tok.doc_of(np.arange(a, a + span)).astype(np.int64))
        picks = []
        explained = np.zeros(span, dtype=bool)
        for mode in modes:
            if not mode.conditions:
                continue
            fires = evaluator.evaluate_mode(mode, ids, seg).numpy()
            explained |= fires
            cand = a + np.flatnonzero(fires)
            cand = cand[~taken[cand]]
            if len(cand):
                picks.append(rng.choice(cand, size=min(n, len(cand)), replace=False))
        if neighbours:
            picks += _neighbour_picks(modes, ids.numpy(), a, taken, evidence.vocab, rng, n)
        if activations.is_lookup(evidence.layer):
            acts = activations.at(evidence.layer, [evidence.index], np.arange(a, a + span))[:, 0]
            acts = np.where(explained | ~np.isfinite(acts), -np.inf, acts)
            order = np.argsort(-acts, kind="stable")[: 4 * n]
            missed = [a + int(i) for i in order if acts[i] > 0 and not taken[a + int(i)]][:n]
            if missed:
                picks.append(np.asarray(missed, dtype=np.int64))
        if not picks:
            return []
        pick = np.unique(np.concatenate(picks))
        spans = [tok.window(int(p), *context) for p in pick]
        flat = np.unique(np.concatenate([np.arange(s, e) for s, e in spans]))
        with torch_threads(None):
            acts = activations.at(evidence.layer, [evidence.index], flat)[:, 0]
        out = []
        for p, (s, e) in zip(pick.tolist(), spans, strict=True):
            out.append(corpus_window(tok, s, e, acts[np.searchsorted(flat, np.arange(s, e))], "probe", p - s))
            taken[s:e] = True
        return out

    return probe


def evidence_positions(evidence: NeuronEvidence, size: int) -> np.ndarray:
    """(size,) bool: the global token positions inside any train or held-out window of ``evidence``."""
    taken = np.zeros(size, dtype=bool)
    for w in evidence.train + evidence.heldout:
        if w.start >= 0:
            taken[w.start : min(w.start + len(w.ids), size)] = True
    return taken


def store_survey(store, activations, evidence: NeuronEvidence, n: int, *, context: tuple[int, int] = (12, 4),
                 scan_tokens: int = 262_144, seed: int = 0, bands: int = 0) -> list[Window]:
    """Survey windows: the subject model asked how the neuron behaves beyond its stored evidence.

    ``n`` windows on the neuron's strongest activations outside every evidence window (train and held-out) of
    a seeded stretch of at most ``scan_tokens`` mined tokens — when those activations are a lookup (a
    planted store, or a layer the activation source prepared) — and ``n`` windows at seeded random positions
    (always; their activations recomputed otherwise). No window overlaps the evidence or another survey
    window, so held-out tokens never become train evidence. The stored evidence holds 32 top windows and as
    many random ones per split: the token strengths it gives are noisy and 17% of the held-out tokens
    (11% of their variance) were never seen in train on MiniLM (``bench_context_headroom.py``); the
    survey is where the explanation's levels and its background come from beyond that. With ``bands`` > 0, half
    of the strongest windows are drawn instead across that many activation bands below the top
    (:func:`_band_picks`): a weaker meaning of a polysemantic neuron fires there, where a top-k sample never looks.
    Returns the windows (kind ``survey``, focus on the surveyed position): the strongest first (strongest
    first among them), then the banded ones (weakest band first), then the random ones.
    """
    from ..scoring.evidence import covered_positions, random_positions

    if n <= 0:
        return []
    tok = store.tokens
    size = len(tok.tokens)
    taken = evidence_positions(evidence, size)
    rng = np.random.default_rng([seed, evidence.layer, evidence.index, 11])
    picks: list[int] = []
    if activations.is_lookup(evidence.layer):
        lo, hi = covered_positions(store)
        total_lo, total_hi = (int(lo.min()), int(hi.max())) if len(lo) else (0, 0)
        span = min(scan_tokens, total_hi - total_lo)
        if span > 0:
            a = int(rng.integers(total_lo, total_hi - span + 1))
            acts = activations.at(evidence.layer, [evidence.index], np.arange(a, a + span))[:, 0]
            acts = np.where(taken[a : a + span] | ~np.isfinite(acts), -np.inf, acts)
            order = np.argsort(-acts, kind="stable")
            n_top = n - (n // 2 if bands > 0 else 0)
            picks += [a + int(i) for i in order[: 4 * n_top] if acts[i] > 0][:n_top]
            if bands > 0:
                picks += _band_picks(acts, n - n_top, bands, rng, a)
    picks += [int(p) for p in random_positions(store, 2 * n, rng) if 0 <= p < size and not taken[p]][:n]
    spans = []
    for p in picks:
        if taken[p]:
            continue  # inside a survey window taken before it
        s, e = tok.window(p, *context)
        s, e = max(s, 0), min(e, size)
        # Trim to the free stretch around p (never into the evidence or another survey window).
        left = np.flatnonzero(taken[s:p])
        s = s + int(left[-1]) + 1 if len(left) else s
        right = np.flatnonzero(taken[p:e])
        e = p + int(right[0]) if len(right) else e
        taken[s:e] = True
        spans.append((s, e, p))
    if not spans:
        return []
    flat = np.unique(np.concatenate([np.arange(s, e) for s, e, _ in spans]))
    with torch_threads(None):
        acts = activations.at(evidence.layer, [evidence.index], flat)[:, 0]
    return [corpus_window(tok, s, e, acts[np.searchsorted(flat, np.arange(s, e))].astype(np.float32), "survey", p - s)
            for s, e, p in spans]


BAND_FLOOR, BAND_CEILING = 0.1, 0.9
"""A banded survey's bands span these shares of the scan's maximum (above the ceiling: the top picks' levels)."""


def _band_picks(acts: np.ndarray, n: int, bands: int, rng: np.random.Generator, offset: int) -> list[int]:
    """``n`` positions spread evenly over ``bands`` equal activation bands between ``BAND_FLOOR`` and ``BAND_CEILING``
    of the maximum of ``acts`` (taken positions at -inf), seeded random within each band: the levels below the
    top, where a polysemantic neuron's weaker meanings fire and a top-k sample never looks."""
    top = float(np.max(acts)) if len(acts) else 0.0
    if not np.isfinite(top) or top <= 0 or n <= 0:
        return []
    edges = np.linspace(BAND_FLOOR, BAND_CEILING, bands + 1) * top
    out: list[int] = []
    for b in range(bands):
        inside = np.flatnonzero((acts >= edges[b]) & (acts < edges[b + 1]))
        k = n // bands + (1 if b < n % bands else 0)
        if len(inside):
            out += [offset + int(i) for i in rng.choice(inside, size=min(k, len(inside)), replace=False)]
    return out


NEIGHBOURS = 8
"""Words nearest in meaning to a mode's words whose corpus occurrences are probed (per mode, per probe round)."""
MIN_NEIGHBOUR_SIM = 0.3
"""Cosine (``embedding.static_word_vectors``) a neighbour needs with the centroid of the mode's words."""
_WORD_RE = re.compile(r"[a-z][a-z'-]+")


def neighbour_words(words: Sequence[str], pool: Sequence[str], k: int = NEIGHBOURS,
                    min_sim: float = MIN_NEIGHBOUR_SIM, pool_vectors: torch.Tensor | None = None) -> list[str]:
    """The ``k`` words of ``pool`` (not in ``words``) nearest the centroid of ``words`` by static word vectors,
    those with cosine ≥ ``min_sim``, nearest first. ``pool_vectors``: (len(pool), 384) the pool's
    ``static_word_vectors`` when the caller already has them (one pool, many modes)."""
    from ..embedding import static_word_vectors

    if not words or not pool:
        return []
    own = set(words)
    vecs = pool_vectors if pool_vectors is not None else static_word_vectors(list(pool))
    c = static_word_vectors(list(words)).mean(0)
    c = c / (c.norm() + 1e-12)
    sims = (vecs @ c).numpy()
    sims[[w in own for w in pool]] = -np.inf
    out: list[str] = []
    for i in np.argsort(-sims, kind="stable").tolist():
        if len(out) == k or sims[i] < min_sim:
            break
        if pool[i] not in out:  # a word listed twice in the pool counts once
            out.append(pool[i])
    return out


def _mode_words(mode: Mode) -> list[str]:
    """The lower-case words of a mode's case-insensitive token sets (the words a category is seen through)."""
    out = []
    for c in mode.conditions:
        if isinstance(c, TokenIn) and not c.case_sensitive:
            out += [t.lower() for t in c.tokens if _WORD_RE.fullmatch(t.lower())]
    return list(dict.fromkeys(out))


def _neighbour_picks(modes: list[Mode], ids: np.ndarray, start: int, taken: np.ndarray, vocab,
                     rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Corpus positions (global) of up to n occurrences, per word mode, of its neighbour words in the stretch
    ``ids`` (T,) that starts at ``start``, outside the evidence (``taken``: (corpus size,) bool)."""
    uniq, inv = np.unique(ids, return_inverse=True)
    # continuation pieces ("##ing") are not words
    word_of = [normalise(vocab.pieces[int(i)]) if not vocab.pieces[int(i)].startswith("##") else "" for i in uniq]
    pool = [w for w in dict.fromkeys(word_of) if _WORD_RE.fullmatch(w)]
    from ..embedding import static_word_vectors

    vecs = static_word_vectors(pool)  # once per probe call, shared by every mode
    out = []
    for mode in modes:
        words = _mode_words(mode)
        near = set(neighbour_words(words, pool, pool_vectors=vecs)) if words else set()
        if not near:
            continue
        hit = np.asarray([w in near for w in word_of], dtype=bool)[inv]
        cand = start + np.flatnonzero(hit)
        cand = cand[~taken[cand]]
        if len(cand):
            out.append(rng.choice(cand, size=min(n, len(cand)), replace=False))
    return out


def probe_texts(activations, evidence: NeuronEvidence) -> ProbeTextFn:
    """Probe texts (written by the refinement agent) through the activation source, one window per text."""

    def run(texts: list[str]) -> list[Window]:
        out = []
        with torch_threads(None):
            got = activations.on_texts(texts, evidence.layer, [evidence.index])
        for ids, acts in got:
            if len(ids):
                a = acts[:, 0]
                out.append(Window(ids=ids, acts=a, kind="probe", focus=int(np.argmax(a))))
        return out

    return run
