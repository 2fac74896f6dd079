"""The offline backend: every NeuronScope role done with algorithms, no LLM.

Roles (arXiv 2601.03671's loop, each step recorded in the transcript):

1. hypothesis — the activating tokens: train tokens at ≥ ``active_frac`` of the neuron's train maximum;
2. decomposition — atomic candidate conditions drawn from them (the token itself, the tokens 1-2
   back, token shapes and suffixes), each scored contrastively on every train token (the top
   windows *and* the quantile/random samples) in one batched pass; a candidate is kept when the
   mean activation where it fires reaches ``min_precision`` of the activation threshold;
3. mode clustering — the activating tokens are clustered (the C++ core, average linkage, automatic
   cut) on their contextual embeddings (the subject layer's whole MLP activation vector when a
   store is at hand, all-MiniLM-L6-v2 otherwise) joined with which kept conditions they satisfy;
4. mode explainer — each kept condition goes to the mode whose tokens it covers most; token
   conditions of a mode are merged into one set; strength = the mean train activation where the
   mode fires; label and description are rendered from the conditions;
5. scoring on the train split with the exec simulator (held-out data is never used for decisions);
6. refinement with activation feedback — proposals from false negatives (uncovered activating
   tokens), false positives (set members whose own mean activation is far below the mode's),
   weak modes (removal does not hurt), strength splits, and probe texts retrieved from the corpus
   where a mode fires, run through the subject model for real activations (added to the train
   evidence); a proposal is kept only if the train score rises. Stop after two rounds without gain
   or when the round budget is spent.

The single-pass baseline reads only the top train exemplars: one mode, the tokens the top
activations fall on, their mean activation as strength, no contrast and no refinement.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ..explanations.conditions import ConditionEvaluator, shifted
from ..explanations.model import AllOf, Condition, Explanation, Mode, PrevTokenIn, TokenIn, TokenRegex
from ..scoring.batch import score_conditions
from ..scoring.evidence import NeuronEvidence, Window, WindowBatch
from ..scoring.simulate import ExecSimulator
from .render import render_mode

SHAPE_REGEXES = (
    TokenRegex(r"^\d+$"), TokenRegex(r"^[A-Z][a-z]+$", case_sensitive=True), TokenRegex(r"^[A-Z]+$", case_sensitive=True),
    TokenRegex(r"^[^\w\s]+$"), TokenRegex(r"^[a-z]+$", case_sensitive=True), TokenRegex("ing$"), TokenRegex("ed$"),
    TokenRegex("ly$"), TokenRegex("tion$"), TokenRegex("s$"),
)

ProbeFn = Callable[[list[Mode], int], list[Window]]
"""``probe(modes, n)`` → up to n new windows per mode (with real activations) where its conditions fire."""
FeatureFn = Callable[[WindowBatch, torch.Tensor], np.ndarray]
"""``features(batch, token_mask)`` → (n, D) float32 contextual embeddings of the masked scored tokens."""


_MODEL_THREADS = [torch.get_num_threads()]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Runs the block with n intra-op threads (None: the count the process had before the agent took over).

    The agent's tensors are small (a few thousand tokens): extra threads only add synchronisation, so the
    loop runs single-threaded and gives the threads back for subject-model forward passes (probes).
    """
    old = torch.get_num_threads()
    torch.set_num_threads(n if n is not None else _MODEL_THREADS[0])
    try:
        yield
    finally:
        torch.set_num_threads(old)


@dataclass
class OfflineConfig:
    active_frac: float = 0.2
    """Activating tokens: train activation ≥ this share of the train maximum."""
    min_precision: float = 0.5
    """Keep a condition when its mean activation where it fires ≥ this share of the activating threshold."""
    max_modes: int = 6
    min_mode_share: float = 0.02
    """Clusters holding less than this share of the activating mass are merged into their nearest neighbour."""
    merge_similarity: float = 0.1
    """Two modes may be merged for parsimony only if the centred centroids of their activating tokens
    have at least this cosine (different concepts are near-orthogonal once the common direction is gone)."""
    cluster_distance: float | None = 0.6
    """Average-linkage cut (cosine distance) for grouping components; None = best-silhouette automatic cut."""
    rounds: int = 4
    probes_per_mode: int = 6
    probe_rounds: int = 2
    """Rounds that fetch probes (each costs subject-model forward passes)."""
    prune_frac: float = 0.3
    """False positive: a token of a set whose own mean activation is below this share of the mode's strength."""
    single_pass_tokens: int = 12
    parsimony: float = 0.001
    """A proposal with fewer modes is accepted if it loses at most this much train score."""


@dataclass
class AgentResult:
    explanation: Explanation
    transcript: list[dict] = field(default_factory=list)
    round_scores: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _key_piece(vocab, i: int) -> str:
    return vocab.pieces[int(i)].strip()


class _Workspace:
    """Train evidence as a batch, with the evaluator and the exec simulator."""

    def __init__(self, evidence: NeuronEvidence, evaluator: ConditionEvaluator) -> None:
        self.evidence = evidence
        self.vocab = evidence.vocab
        self.ev = evaluator
        self.sim = ExecSimulator(self.vocab, evaluator)
        self.windows: list[Window] = list(evidence.train)
        self.rebuild()

    def rebuild(self) -> None:
        self.batch = WindowBatch.build(self.windows)
        y = self.batch.acts
        self.max = float(y.max()) if y.numel() else 0.0
        self.threshold = self.max * 0.4

    def score(self, modes: list[Mode]) -> float:
        if not modes or not any(m.conditions for m in modes):
            return 0.0
        e = Explanation(self.evidence.layer, self.evidence.index, [m for m in modes if m.conditions])
        s = self.sim.simulate([e], self.batch)[0]
        from ..scoring.corr import pearson_ref

        return float(pearson_ref(s.whole[None], self.batch.acts)[0])

    def fires(self, mode: Mode) -> torch.Tensor:
        return self.ev.evaluate_mode(mode, self.batch.ids, self.batch.seg)[self.batch.scored]


def _candidates(ws: _Workspace, active: torch.Tensor) -> list[Condition]:
    b, vocab = ws.batch, ws.vocab
    scored_idx = torch.nonzero(b.scored).squeeze(1)
    pos = scored_idx[active]
    out: list[Condition] = []
    seen: set[Condition] = set()

    def add(c: Condition) -> None:
        if c not in seen:
            seen.add(c)
            out.append(c)

    for i in torch.unique(b.ids[pos]).tolist():
        k = _key_piece(vocab, i)
        if k:
            add(TokenIn((k,)))
    for off in (1, 2):
        prev, valid = shifted(b.ids, b.seg, off)
        for i in torch.unique(prev[pos][valid[pos]]).tolist():
            k = _key_piece(vocab, i)
            if k:
                add(PrevTokenIn((k,), off))
    for c in SHAPE_REGEXES:
        add(c)
    return out


def _merge_conditions(conds: list[Condition]) -> list[Condition]:
    """Token sets of the same kind/offset become one condition; other conditions stay as they are."""
    tokens: list[str] = []
    prev: dict[int, list[str]] = {}
    rest: list[Condition] = []
    for c in conds:
        if isinstance(c, TokenIn) and not c.case_sensitive:
            tokens += list(c.tokens)
        elif isinstance(c, PrevTokenIn) and not c.case_sensitive:
            prev.setdefault(c.offset, []).extend(c.tokens)
        else:
            rest.append(c)
    out: list[Condition] = []
    if tokens:
        out.append(TokenIn(tuple(tokens)))
    for off, toks in sorted(prev.items()):
        out.append(PrevTokenIn(tuple(toks), off))
    return out + rest


def _atoms(mode: Mode) -> list[Condition]:
    """A mode's conditions split back into atomic ones (one token each)."""
    out: list[Condition] = []
    for c in mode.conditions:
        if isinstance(c, TokenIn):
            out += [TokenIn((t,), c.case_sensitive) for t in c.tokens]
        elif isinstance(c, PrevTokenIn):
            out += [PrevTokenIn((t,), c.offset, c.case_sensitive) for t in c.tokens]
        else:
            out.append(c)
    return out


def _with_strength(ws: _Workspace, mode: Mode) -> Mode:
    f = ws.fires(mode)
    mode.strength = float(ws.batch.acts[f].mean()) if bool(f.any()) else 0.0
    return render_mode(mode)


def _build_mode(ws: _Workspace, conds: list[Condition]) -> Mode:
    return _with_strength(ws, Mode(label="", conditions=_merge_conditions(conds)))


def _cluster(features: np.ndarray, weights: np.ndarray, cfg: OfflineConfig) -> np.ndarray:
    from .. import cluster

    n = len(features)
    if n < 3:
        return np.zeros(n, dtype=np.int64)
    x = np.ascontiguousarray(features, dtype=np.float32)
    if cfg.cluster_distance is not None:
        res = cluster.hierarchical(x, metric="cosine", threshold=cfg.cluster_distance)
        if int(res.n_clusters[0]) > cfg.max_modes:  # at most max_modes modes: cut the same tree higher
            res = cluster.cut(res, n_clusters=cfg.max_modes)
    else:
        res = cluster.hierarchical(x, metric="cosine", max_clusters=cfg.max_modes)
    labels = res.labels.astype(np.int64)
    # Minimum mode size: tiny clusters (often one outlier) join the nearest big cluster.
    while True:
        mass = np.bincount(labels, weights=weights)
        small = np.flatnonzero((mass > 0) & (mass < cfg.min_mode_share * weights.sum()))
        big = np.flatnonzero(mass >= cfg.min_mode_share * weights.sum())
        if len(small) == 0 or len(big) == 0:
            break
        s = small[0]
        cent = np.stack([features[labels == b].mean(0) for b in big])
        here = features[labels == s].mean(0)
        sims = cent @ here / (np.linalg.norm(cent, axis=1) * np.linalg.norm(here) + 1e-12)
        labels[labels == s] = big[int(np.argmax(sims))]
    _, labels = np.unique(labels, return_inverse=True)
    return labels


def single_pass(evidence: NeuronEvidence, evaluator: ConditionEvaluator | None = None,
                cfg: OfflineConfig | None = None) -> AgentResult:
    """One explanation from the top train exemplars only (see the module docstring)."""
    t0 = time.monotonic()
    cfg = cfg or OfflineConfig()
    tops = [w for w in evidence.train if w.kind == "top" and 0 <= w.focus < len(w.ids)]
    counts: dict[str, list[float]] = {}
    for w in tops:
        k = _key_piece(evidence.vocab, w.ids[w.focus])
        if k:
            counts.setdefault(k.lower(), []).append(float(w.acts[w.focus]))
    ranked = sorted(counts.items(), key=lambda kv: (-len(kv[1]), -max(kv[1])))[: cfg.single_pass_tokens]
    modes = []
    if ranked:
        acts = [a for _, v in ranked for a in v]
        modes = [render_mode(Mode(label="", conditions=[TokenIn(tuple(k for k, _ in ranked))],
                                  strength=float(np.mean(acts))))]
    e = Explanation(evidence.layer, evidence.index, modes or [Mode("unexplained")], method="single-pass")
    if not ranked:
        e.text = "no top exemplars"
    transcript = [{"role": "single-pass", "tokens": [k for k, _ in ranked]}]
    return AgentResult(e, transcript, [], time.monotonic() - t0)


class OfflineNeuronScope:
    """The offline NeuronScope loop for one neuron (see the module docstring)."""

    def __init__(self, evidence: NeuronEvidence, *, evaluator: ConditionEvaluator | None = None,
                 cfg: OfflineConfig | None = None, features: FeatureFn | None = None,
                 probe: ProbeFn | None = None, heldout_scorer: Callable[[Explanation], float] | None = None) -> None:
        self.cfg = cfg or OfflineConfig()
        self.ws = _Workspace(evidence, evaluator or ConditionEvaluator(evidence.vocab))
        self.features = features
        self.probe = probe
        self.heldout_scorer = heldout_scorer
        self.transcript: list[dict] = []
        self.rounds: list[dict] = []

    def log(self, role: str, **kw) -> None:
        self.transcript.append({"role": role, **kw})

    # -- steps ---------------------------------------------------------------------------------
    def hypothesis(self) -> torch.Tensor:
        ws = self.ws
        active = ws.batch.acts >= self.cfg.active_frac * ws.max if ws.max > 0 else torch.zeros_like(ws.batch.acts,
                                                                                                      dtype=torch.bool)
        ws.threshold = self.cfg.active_frac * ws.max
        tops = sorted(((float(ws.batch.acts[i]), _key_piece(ws.vocab, ws.batch.ids[ws.batch.scored][i]))
                       for i in torch.nonzero(active).squeeze(1).tolist()), reverse=True)[:10]
        self.log("hypothesis", threshold=ws.threshold, n_active=int(active.sum()),
                 strongest=[f"{k} ({a:.2f})" for a, k in tops])
        return active

    def decompose(self, active: torch.Tensor) -> tuple[list[Condition], np.ndarray]:
        """Atomic conditions that each explain activating tokens the better ones before them do not.

        Candidates are ranked by train Pearson r; walking down the ranking, a candidate is kept if it is
        precise (mean activation where it fires ≥ min_precision × threshold) and covers at least one
        activating token no kept condition covers yet — so a context condition that only fires where a
        kept token condition already does ("should" before "return") is not a separate component.
        """
        ws = self.ws
        cands = _candidates(ws, active)
        sc = score_conditions(ws.ev, cands, ws.batch, positives=active)
        ok = np.flatnonzero((sc.focus_hits > 0) & (sc.mean_act >= self.cfg.min_precision * ws.threshold) & (sc.r > 0))
        # Specific before general: the tokens themselves, then their contexts, then shapes (a shape such as
        # "punctuation" would otherwise swallow two unrelated modes, "." and "(", into one component;
        # refinement generalises a token set to a shape when that scores better).
        tier = np.asarray([0 if isinstance(c, TokenIn) else 1 if isinstance(c, PrevTokenIn) else 2 for c in cands])
        ok = ok[np.lexsort((-sc.r[ok], tier[ok]))]
        masks = ws.ev.evaluate_many([cands[i] for i in ok], ws.batch.ids, ws.batch.seg)[:, ws.batch.scored]
        covered = torch.zeros_like(active)
        kept, kept_r = [], []
        for j, i in enumerate(ok.tolist()):
            new = masks[j] & active & ~covered
            if bool(new.any()):
                kept.append(cands[i])
                kept_r.append(float(sc.r[i]))
                covered |= masks[j] & active
        self.log("decomposition", candidates=len(cands), precise=len(ok), kept=len(kept),
                 covered=f"{int(covered.sum())}/{int(active.sum())}",
                 best=[f"{c.describe()} r={r:.3f}" for c, r in zip(kept[:8], kept_r[:8], strict=False)])
        return kept, np.asarray(kept_r)

    def cluster_modes(self, active: torch.Tensor, kept: list[Condition]) -> list[Mode]:
        """Groups the atomic components into modes with the C++ core (average linkage, automatic cut).

        Each activating token carries its contextual vector; each component is represented by the
        centroid of the activating tokens it covers (weighted by activation), so components cluster by
        what the tokens they pick out mean in context. Without features, every component is its own
        candidate mode and refinement merges.
        """
        ws = self.ws
        if not kept:
            return []
        member = ws.ev.evaluate_many(kept, ws.batch.ids, ws.batch.seg)[:, ws.batch.scored][:, active].T.numpy()
        member = member.astype(np.float64)  # (n_active, K)
        weights = ws.batch.acts[active].numpy().astype(np.float64)
        mass = (member * np.maximum(weights, 1e-6)[:, None]).sum(0)  # (K,)
        self._centroid_source = None
        if self.features is not None and len(kept) >= 2:
            emb = self.features(ws.batch, active).astype(np.float64)
            # Contextual vectors share a large common direction (anisotropy), which makes every centroid look
            # alike; centring on the neuron's random-window tokens (the typical token) removes it.
            emb = emb - self._baseline(emb)
            emb = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
            self._centroid_source = (emb, member)
            w = member * np.maximum(weights, 1e-6)[:, None]
            cent = (w.T @ emb) / np.maximum(w.sum(0), 1e-12)[:, None]
            cent /= np.linalg.norm(cent, axis=1, keepdims=True) + 1e-12
            labels = _cluster(cent, np.maximum(mass, 1e-6), self.cfg)
        else:
            labels = np.arange(len(kept))
        n_modes = int(labels.max()) + 1 if len(labels) else 0
        modes = [_build_mode(ws, [c for c, lab in zip(kept, labels, strict=True) if lab == m]) for m in range(n_modes)]
        modes = [m for m in modes if m.conditions and m.strength > 0]
        self.log("mode clustering", n_active=int(active.sum()), components=len(kept), clusters=n_modes,
                 modes=len(modes), features="contextual vectors" if self.features is not None else "none")
        return modes

    # -- refinement ----------------------------------------------------------------------------
    def _proposals(self, modes: list[Mode], kept: list[Condition], active: torch.Tensor) -> list[tuple[str, list[Mode]]]:
        ws, cfg = self.ws, self.cfg
        props: list[tuple[str, list[Mode]]] = []
        # False positives: atoms whose own mean activation is far below the mode strength.
        for mi, m in enumerate(modes):
            atoms = _atoms(m)
            if len(atoms) < 2:
                continue
            sc = score_conditions(ws.ev, atoms, ws.batch)
            bad = [a for a, mean in zip(atoms, sc.mean_act, strict=True) if mean < cfg.prune_frac * m.strength]
            if bad and len(bad) < len(atoms):
                good = [a for a in atoms if a not in bad]
                props.append((f"prune {len(bad)} false-positive conditions from mode {mi}",
                              [*modes[:mi], _build_mode(ws, good), *modes[mi + 1:]]))
            # Strength split: atoms with clearly different activations become separate modes, cut at the
            # widest ratio gap of their sorted mean activations (two meanings folded together sit apart there).
            means = np.asarray(sc.mean_act, dtype=np.float64)
            if len(atoms) >= 2 and (means > 0).all():
                srt = np.sort(means)
                gaps = srt[1:] / srt[:-1]
                g = int(np.argmax(gaps))
                if gaps[g] >= 1.2:
                    cut = float(srt[g])
                    hi = [a for a, v in zip(atoms, means, strict=True) if v > cut]
                    lo = [a for a, v in zip(atoms, means, strict=True) if v <= cut]
                    props.append((f"split mode {mi} by strength",
                                  [*modes[:mi], _build_mode(ws, hi), _build_mode(ws, lo), *modes[mi + 1:]]))
            # ... and at the median, when the strongest atoms are far above the typical one (graded strengths).
            if len(atoms) >= 2 and means.max() > 1.6 * max(float(np.median(means)), 1e-9):
                cut = float(np.median(means))
                hi = [a for a, v in zip(atoms, means, strict=True) if v > cut]
                lo = [a for a, v in zip(atoms, means, strict=True) if v <= cut]
                if hi and lo:
                    props.append((f"split mode {mi} by strength at the median",
                                  [*modes[:mi], _build_mode(ws, hi), _build_mode(ws, lo), *modes[mi + 1:]]))
        # Generalisation: most tokens of a mode's set share a shape → the shape itself (unseen members too).
        for mi, m in enumerate(modes):
            sets = [c for c in m.conditions if isinstance(c, TokenIn)]
            if not sets:
                continue
            toks = sets[0].tokens
            for shape in SHAPE_REGEXES:
                ids = set(ws.ev.vocab_ids(shape).tolist())
                inside = [t for t in toks if set(ws.vocab.ids_in([t]).tolist()) & ids]
                if len(inside) >= max(2, 0.6 * len(toks)):
                    rest = [c for c in _atoms(m) if not (isinstance(c, TokenIn) and c.tokens[0] in inside)]
                    props.append((f"generalise mode {mi} to {shape.describe()}",
                                  [*modes[:mi], _build_mode(ws, [*rest, shape]), *modes[mi + 1:]]))
                    # ... or to the shape in the contexts the set's activating tokens were seen in.
                    hit = ws.fires(Mode("", conditions=[TokenIn(tuple(inside))])) & active
                    prev, valid = shifted(ws.batch.ids, ws.batch.seg, 1)
                    keys = sorted({_key_piece(ws.vocab, i) for i in prev[ws.batch.scored][hit & valid[ws.batch.scored]]
                                   .tolist()} - {""})
                    if keys and len(keys) <= 12:
                        ctx = AllOf((shape, PrevTokenIn(tuple(keys), 1)))
                        props.append((f"generalise mode {mi} to {ctx.describe()}",
                                      [*modes[:mi], _build_mode(ws, [*rest, ctx]), *modes[mi + 1:]]))
        # Context: an imprecise token condition (it fires far more weakly on average than on the activating
        # tokens it covers) becomes "this token right after one of the tokens seen before it when active".
        prev, valid = shifted(ws.batch.ids, ws.batch.seg, 1)
        prev_s, valid_s = prev[ws.batch.scored], valid[ws.batch.scored]
        y = ws.batch.acts
        for mi, m in enumerate(modes):
            atoms = _atoms(m)
            for a_i, atom in enumerate(atoms):
                if not isinstance(atom, (TokenIn, TokenRegex)):
                    continue
                fires = ws.ev.evaluate(atom, ws.batch.ids, ws.batch.seg)[ws.batch.scored]
                hit = fires & active
                if not bool(hit.any()) or float(y[fires].mean()) >= 0.8 * float(y[hit].mean()):
                    continue
                keys = sorted({_key_piece(ws.vocab, i) for i in prev_s[hit & valid_s].tolist()} - {""})
                if keys and len(keys) <= 12:
                    ctx = AllOf((atom, PrevTokenIn(tuple(keys), 1)))
                    rest = [x for k, x in enumerate(atoms) if k != a_i]
                    props.append((f"restrict {atom.describe()} to context in mode {mi}",
                                  [*modes[:mi], _build_mode(ws, [*rest, ctx]), *modes[mi + 1:]]))
        # Weak modes, and near-duplicate modes (merged when that costs at most the parsimony tolerance).
        if len(modes) > 1:
            for mi in range(len(modes)):
                props.append((f"drop weak mode {mi}", modes[:mi] + modes[mi + 1:]))
            order = np.argsort([m.strength for m in modes])
            for a, b in itertools.pairwise(order):
                lo, hi = sorted((int(a), int(b)))
                if not self._similar(modes[lo], modes[hi], active):
                    continue  # different meanings stay apart even when their strengths are alike
                merged = _build_mode(ws, _atoms(modes[lo]) + _atoms(modes[hi]))
                props.append((f"merge modes {lo} and {hi}",
                              [m for k, m in enumerate(modes) if k not in (lo, hi)] + [merged]))
        # False negatives: activating tokens no mode covers → the best unused atomic condition.
        fired = torch.zeros_like(active)
        for m in modes:
            fired |= ws.fires(m)
        missed = active & ~fired
        if bool(missed.any()):
            used = {a for m in modes for a in _atoms(m)}
            cands = [c for c in _candidates(ws, missed) if c not in used]
            if cands:
                sc = score_conditions(ws.ev, cands, ws.batch, positives=missed)
                ok = np.flatnonzero((sc.focus_hits > 0) & (sc.mean_act >= self.cfg.min_precision * ws.threshold))
                for j in ok[np.argsort(-sc.r[ok])][:3]:
                    c = cands[int(j)]
                    alone = _build_mode(ws, [c])
                    sims = [self._similarity(alone, m, active) for m in modes]
                    if modes and sims[0] is not None:
                        # fold it into the mode it means most alike; a new mode only when it is like none
                        mi = int(np.argmax(sims))
                        like = sims[mi] >= self.cfg.merge_similarity
                    else:  # no features: the mode nearest in strength, or a new one
                        mean = float(sc.mean_act[j])
                        mi = int(np.argmin([abs(m.strength - mean) for m in modes])) if modes else -1
                        like = False
                    if not like or abs(float(sc.mean_act[j]) - modes[mi].strength) > 0.2 * modes[mi].strength:
                        props.append((f"new mode for missed tokens: {c.describe()}", [*modes, alone]))
                    if mi >= 0:
                        props.append((f"add {c.describe()} to mode {mi}",
                                      [*modes[:mi], _build_mode(ws, [*_atoms(modes[mi]), c]), *modes[mi + 1:]]))
        return props

    def _baseline(self, emb: np.ndarray) -> np.ndarray:
        """(D,) the mean contextual vector of ordinary tokens (random windows), else of the activating ones."""
        ws = self.ws
        rand = ws.batch.kind_mask("random")
        if self.features is not None and int(rand.sum()) >= 8:
            idx = torch.nonzero(rand).squeeze(1)[:256]
            mask = torch.zeros_like(rand)
            mask[idx] = True
            try:
                return self.features(ws.batch, mask).astype(np.float64).mean(0)
            except Exception:  # a feature source that cannot embed these tokens: fall back
                pass
        return emb.mean(0)

    def _active_features(self, active: torch.Tensor) -> np.ndarray | None:
        """(n_active, D) centred, normalised features of the current activating tokens (None without features).

        Cached per evidence batch: probes add windows, and the tokens they bring need features too.
        """
        if self.features is None or getattr(self, "_centroid_source", None) is None:
            return None
        key = (id(self.ws.batch), int(active.sum()))
        if getattr(self, "_feat_key", None) != key:
            emb = self.features(self.ws.batch, active).astype(np.float64)
            emb = emb - self._baseline(emb)
            self._feat = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
            self._feat_key = key
        return self._feat

    def _similarity(self, a: Mode, b: Mode, active: torch.Tensor) -> float | None:
        """Cosine of two modes' activating-token feature centroids (None: no features or no shared evidence)."""
        emb = self._active_features(active)
        if emb is None:
            return None
        fa = self.ws.fires(a)[active].numpy()
        fb = self.ws.fires(b)[active].numpy()
        if not fa.any() or not fb.any():
            return -1.0  # no evidence that they mean the same thing
        ca, cb = emb[fa].mean(0), emb[fb].mean(0)
        return float(ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb) + 1e-12))

    def _similar(self, a: Mode, b: Mode, active: torch.Tensor) -> bool:
        """Whether two modes' activating tokens have close feature centroids (always, without features)."""
        sim = self._similarity(a, b, active)
        return sim is None or sim >= self.cfg.merge_similarity

    def _probe(self, modes: list[Mode], rnd: int) -> int:
        if self.probe is None or rnd > self.cfg.probe_rounds or not modes:
            return 0
        new = self.probe(modes, self.cfg.probes_per_mode)
        self.ws.windows.extend(new)
        added = len(new)
        if added:
            self.ws.rebuild()
            for m in modes:
                _with_strength(self.ws, m)
        return added

    def run(self) -> AgentResult:
        _MODEL_THREADS[0] = torch.get_num_threads()
        with torch_threads(1):
            return self._run()

    def _run(self) -> AgentResult:
        t0 = time.monotonic()
        ev = self.ws.evidence
        active = self.hypothesis()
        kept, _ = self.decompose(active)
        modes = self.cluster_modes(active, kept)
        best = self.ws.score(modes)
        self._record(0, modes, best)
        stale = 0
        for rnd in range(1, self.cfg.rounds + 1):
            n_probe = self._probe(modes, rnd)
            if n_probe:
                active = self.ws.batch.acts >= self.ws.threshold
                best = self.ws.score(modes)
            accepted = []
            improved = True
            while improved:
                improved = False
                scored = []
                for why, ms in self._proposals(modes, kept, active):
                    if len(ms) > self.cfg.max_modes and len(ms) > len(modes):
                        continue  # at most max_modes modes: more would be strength levels, not meanings
                    sc = self.ws.score(ms)
                    # Fewer modes win ties within the parsimony tolerance (one mode per real concept).
                    bonus = self.cfg.parsimony if len(ms) < len(modes) else 0.0
                    scored.append((sc + bonus, sc, why, ms))
                scored.sort(key=lambda x: -x[0])
                if scored and scored[0][0] > best + 1e-4:
                    _, best, why, modes = scored[0]
                    accepted.append(f"{why} → {best:.3f}")
                    improved = len(accepted) < 12
            self.log("refinement", round=rnd, probes=n_probe, accepted=accepted, train_score=best)
            self._record(rnd, modes, best)
            stale = 0 if accepted else stale + 1
            if stale >= 2:
                break
        modes = sorted(modes, key=lambda m: -m.strength)
        e = Explanation(ev.layer, ev.index, modes or [Mode("unexplained")], method="neuronscope")
        if not modes:
            e.text = "no condition predicts this neuron's activating tokens"
        return AgentResult(e, self.transcript, self.rounds, time.monotonic() - t0)

    def _record(self, rnd: int, modes: list[Mode], train: float) -> None:
        row = {"round": rnd, "train_score": train, "modes": len(modes)}
        if self.heldout_scorer is not None and modes:
            row["heldout_score"] = self.heldout_scorer(Explanation(self.ws.evidence.layer, self.ws.evidence.index,
                                                                   list(modes), method="neuronscope"))
        self.rounds.append(row)
