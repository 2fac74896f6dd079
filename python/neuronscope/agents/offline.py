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
   mode fires; label and description are rendered from the conditions; a mode whose words mix a closed
   class with words unlike it ("import" beside "file", "directory") is split in two (``concepts.class_split``,
   after clustering and after every refinement round): two meanings at one strength that no train score
   tells apart;
5. scoring on the train split with the exec simulator (held-out data is never used for decisions); the
   survey windows (``feedback.store_survey``: the subject model's activations on the neuron's strongest
   tokens outside its evidence and at random positions) join the train split at the first refinement round;
6. refinement with activation feedback — proposals from false negatives (uncovered activating
   tokens), false positives (set members whose own mean activation is far below the mode's),
   weak modes (removal does not hurt), strength splits, and probe windows retrieved from the corpus
   where a mode fires and, with ``AgentConfig.neighbour_probes``, where the words nearest in meaning to a
   mode's words occur (a category learnt beyond the members the evidence showed), run through the subject
   model for real activations (added to the train evidence); a proposal is kept only if the train
   score rises. Stop after two rounds without gain
   or when the round budget is spent.

The single-pass baseline reads only the top train exemplars: one mode, the tokens the top
activations fall on, their mean activation as strength, no contrast and no refinement.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from ..explanations.conditions import ConditionEvaluator
from ..explanations.model import Condition, Explanation, Mode, PrevTokenIn, TokenIn
from ..scoring.batch import score_conditions
from ..scoring.evidence import NeuronEvidence, Window
from . import earning, meanings
from .background import background_term, similar_words
from .base import AgentConfig, AgentResult
from .concepts import name_modes
from .context_shifts import context_term
from .proposals import is_position_mode, proposals
from .pruning import prune_atoms
from .threads import remember_model_threads, torch_threads
from .workspace import FeatureFn, ProbeFn, Workspace, build_mode, candidates, key_piece, with_strength


def _cluster(features: np.ndarray, weights: np.ndarray, cfg: AgentConfig) -> np.ndarray:
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


class OfflineNeuronScope:
    """The offline NeuronScope loop for one neuron (see the module docstring)."""

    def __init__(self, evidence: NeuronEvidence, *, evaluator: ConditionEvaluator | None = None,
                 cfg: AgentConfig | None = None, features: FeatureFn | None = None,
                 probe: ProbeFn | None = None, heldout_scorer: Callable[[Explanation], float] | None = None,
                 survey: list[Window] | None = None) -> None:
        self.cfg = cfg or AgentConfig()
        self.ws = Workspace(evidence, evaluator or ConditionEvaluator(evidence.vocab), self.cfg.active_frac)
        self.features = features
        self.probe = probe
        self.heldout_scorer = heldout_scorer
        self.transcript: list[dict] = []
        self.rounds: list[dict] = []
        self._memo_batch, self._memo_cache = None, {}  # see _memo
        self.survey = list(survey or [])
        """Survey windows (``feedback.store_survey``), joined to the train evidence after the first clustering."""

    def log(self, role: str, **kw) -> None:
        self.transcript.append({"role": role, **kw})

    # -- steps ---------------------------------------------------------------------------------
    def hypothesis(self) -> torch.Tensor:
        ws = self.ws
        active = ws.batch.acts >= self.cfg.active_frac * ws.max if ws.max > 0 else torch.zeros_like(ws.batch.acts,
                                                                                                      dtype=torch.bool)
        ws.threshold = self.cfg.active_frac * ws.max
        tops = sorted(((float(ws.batch.acts[i]), key_piece(ws.vocab, ws.batch.ids[ws.batch.scored][i]))
                       for i in torch.nonzero(active).squeeze(1).tolist()), reverse=True)[:10]
        self.log("hypothesis", threshold=ws.threshold, n_active=int(active.sum()),
                 strongest=[f"{k} ({a:.2f})" for a, k in tops])
        return active

    def decompose(self, active: torch.Tensor) -> tuple[list[Condition], np.ndarray]:
        """Atomic conditions that each explain activating tokens the better ones before them do not.

        Candidates are ranked by train Pearson r; walking down the ranking, a candidate is kept if it is
        precise (mean activation where it fires ≥ min_precision × threshold) and covers at least one
        activating token no kept condition covers yet — so a context condition that only fires where a
        kept token condition already does ("should" before "return") is not a separate component — and,
        unless it is a token, fires on activating tokens in both halves of the windows (``ws.replicated``).
        """
        ws = self.ws
        cands = candidates(ws, active)
        sc = score_conditions(ws.ev, cands, ws.batch, positives=active)
        ok = np.flatnonzero((sc.focus_hits > 0) & (sc.mean_act >= self.cfg.min_precision * ws.threshold) & (sc.r > 0))
        # Specific before general: the tokens themselves, then their contexts, then shapes (a shape such as
        # "punctuation" would otherwise swallow two unrelated modes, "." and "(", into one component;
        # refinement generalises a token set to a shape when that scores better).
        tier = np.asarray([0 if isinstance(c, TokenIn) else 1 if isinstance(c, PrevTokenIn) else 2 for c in cands])
        ok = ok[np.lexsort((-sc.r[ok], tier[ok]))]
        masks = ws.masks([cands[i] for i in ok])
        covered = torch.zeros_like(active)
        kept, kept_r = [], []
        for j, i in enumerate(ok.tolist()):
            new = masks[j] & active & ~covered
            if bool(new.any()) and (isinstance(cands[i], TokenIn) or ws.replicated(cands[i], active)):
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
        member = ws.masks(kept)[:, active].T.numpy()
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
        modes = [build_mode(ws, [c for c, lab in zip(kept, labels, strict=True) if lab == m]) for m in range(n_modes)]
        modes = [m for m in modes if m.conditions and m.strength > 0]
        self.log("mode clustering", n_active=int(active.sum()), components=len(kept), clusters=n_modes,
                 modes=len(modes), features="contextual vectors" if self.features is not None else "none")
        return modes

    # -- refinement ----------------------------------------------------------------------------
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

    def _memo(self, what: str, a: Mode, b: Mode, active: torch.Tensor, compute: Callable[[], object]):
        """``compute()`` cached per (what, both modes' conditions and kinds, the train batch, the activating set):
        the merge gate asks about the same pairs in every proposal step, and a mode's strength and tokens follow
        from its conditions on a batch."""
        if self._memo_batch is not self.ws.batch:
            self._memo_batch, self._memo_cache = self.ws.batch, {}
        key = (what, tuple(a.conditions), a.kind, tuple(b.conditions), b.kind, int(active.sum()))
        if key not in self._memo_cache:
            self._memo_cache[key] = compute()
        return self._memo_cache[key]

    def similarity(self, a: Mode, b: Mode, active: torch.Tensor) -> float | None:
        """Cosine of two modes' activating-token feature centroids (None: no features or no shared evidence)."""
        return self._memo("similarity", a, b, active, lambda: self._similarity(a, b, active))

    def _similarity(self, a: Mode, b: Mode, active: torch.Tensor) -> float | None:
        emb = self._active_features(active)
        if emb is None:
            return None
        fa = self.ws.fires(a)[active].numpy()
        fb = self.ws.fires(b)[active].numpy()
        if not fa.any() or not fb.any():
            return -1.0  # no evidence that they mean the same thing
        ca, cb = emb[fa].mean(0), emb[fb].mean(0)
        return float(ca @ cb / (np.linalg.norm(ca) * np.linalg.norm(cb) + 1e-12))

    def same_class(self, a: Mode, b: Mode, active: torch.Tensor) -> bool | None:
        """Whether the closed classes say two modes mean the same (True), differ (False) or cannot tell (None):
        :func:`meanings.same_class`."""
        return meanings.same_class(self, a, b, active)

    def similar(self, a: Mode, b: Mode, active: torch.Tensor) -> bool:
        """Whether two modes' activating tokens have close feature centroids.

        With graded strengths a merge costs no train score, so only evidence of one meaning may merge two
        modes: first the closed classes of the concept vocabulary (:meth:`same_class`), then the features;
        without either the only evidence is a like strength (within 20%), a weak proxy kept for callers that
        give no features (every stage gives contextual and word features).
        """
        return self._memo("similar", a, b, active, lambda: self._similar(a, b, active))

    def _similar(self, a: Mode, b: Mode, active: torch.Tensor) -> bool:
        if is_position_mode(a) != is_position_mode(b):
            return False  # where in the document, and which words: never one meaning
        same = self.same_class(a, b, active)
        if same is not None:
            return same
        sim = self.similarity(a, b, active)
        alike = abs(a.strength - b.strength) <= self.cfg.merge_strength_tol * max(a.strength, b.strength, 1e-9)
        if sim is None:
            return alike
        # Confidently alike in meaning → one mode (graded strength allowed); confidently unlike → two; in
        # between, the neuron's own response decides: two groups it fires on at the same level are one mode.
        return sim >= self.cfg.merge_similarity or (sim >= self.cfg.merge_similarity_low and alike)

    def split_classes(self, modes: list[Mode], active: torch.Tensor) -> list[Mode]:
        """Modes that mix a closed class with words unlike it, split in two: :func:`meanings.split_classes`."""
        return meanings.split_classes(self, modes, active)

    def _probe(self, modes: list[Mode], rnd: int) -> int:
        if self.probe is None or rnd > self.cfg.probe_rounds or not modes:
            return 0
        new = self.probe(modes, self.cfg.probes_per_mode)
        self.ws.windows.extend(new)
        added = len(new)
        if added:
            self.ws.rebuild()
            for m in modes:
                with_strength(self.ws, m)
        return added

    def _join_survey(self, modes: list[Mode]) -> int:
        """Adds the survey windows to the train evidence (once, at the first refinement round) and refits the
        modes' strengths on it. Not before: the first decomposition and clustering read the stored evidence,
        where every meaning has its top windows; joined there, the survey's windows on the strongest activations
        (the strongest meaning's) pulled weaker meanings' components into it (planted recall 0.85 → 0.82)."""
        self.ws.windows.extend(self.survey)
        self.ws.rebuild()
        for m in modes:  # new levels, the same names (the LLM loop's explainer wrote them before the survey)
            label, description = m.label, m.description
            with_strength(self.ws, m)
            m.label, m.description = label, description
        self.log("survey", windows=len(self.survey), train_windows=len(self.ws.windows))
        n, self.survey = len(self.survey), []
        return n

    def run(self) -> AgentResult:
        remember_model_threads()
        with torch_threads(1):
            return self._run()

    def _run(self) -> AgentResult:
        t0 = time.monotonic()
        ev = self.ws.evidence
        active = self.hypothesis()
        kept, _ = self.decompose(active)
        modes = self.split_classes(self.cluster_modes(active, kept), active)
        best = self.ws.score(modes)
        self._record(0, modes, best)
        stale = 0
        for rnd in range(1, self.cfg.rounds + 1):
            n_probe = self._probe(modes, rnd)
            if rnd == 1 and self.survey:
                n_probe += self._join_survey(modes)
            if n_probe:
                active = self.ws.batch.acts >= self.ws.threshold
                best = self.ws.score(modes)
            accepted = []
            improved = True
            cost = self.cfg.mode_cost
            while improved:
                improved = False
                scored = []
                for why, ms in proposals(self, modes, kept, active):
                    if len(ms) > self.cfg.max_modes and len(ms) > len(modes):
                        continue  # a safety cap; the mode cost and the earning rule decide long before it
                    sc = self.ws.score(ms)
                    # Every mode is charged ``mode_cost`` of train score: a new mode must buy more than that,
                    # and a merge or drop that loses less is taken (one mode per meaning).
                    scored.append((sc - cost * len(ms), sc, why, ms))
                scored.sort(key=lambda x: -x[0])
                if scored and scored[0][0] > best - cost * len(modes) + 1e-4:
                    _, best, why, modes = scored[0]
                    accepted.append(f"{why} → {best:.3f}")
                    improved = len(accepted) < 12
            split = self.split_classes(modes, active)
            if len(split) > len(modes):
                modes, best = split, self.ws.score(split)
            self.log("refinement", round=rnd, probes=n_probe, accepted=accepted, train_score=best)
            self._record(rnd, modes, best)
            stale = 0 if accepted else stale + 1
            if stale >= 2:
                break
        modes, background = self.earn(modes, active)
        background, why = background_term(self.ws, self.cfg, modes, background)
        self.log("background", **why)
        modes, background, dropped = prune_atoms(self.ws, modes, background)
        self.log("pruning", dropped=dropped, train_score=self.ws.score(modes + ([background] if background else [])))
        modes = sorted(modes, key=lambda m: -m.strength)
        name_modes(self.ws, modes, active)
        if background is not None:
            self.log("similar words", **similar_words(self.ws, self.cfg, modes, background))
            name_modes(self.ws, [background], active)
            modes.append(background)
        context, why = context_term(self.ws, self.cfg, modes)
        self.log("context", **why)
        if context is not None:
            modes.append(context)
        e = Explanation(ev.layer, ev.index, modes or [Mode("unexplained")], method="neuronscope")
        if not modes:
            e.text = "no condition predicts this neuron's activating tokens"
        return AgentResult(e, self.transcript, self.rounds, time.monotonic() - t0)

    def cover(self, mode: Mode, active: torch.Tensor) -> float:
        """Share of the train windows with activating tokens in which the mode fires: :func:`earning.cover`."""
        return earning.cover(self, mode, active)

    def earn(self, modes: list[Mode], active: torch.Tensor) -> tuple[list[Mode], Mode | None]:
        """The rule every mode must pass (meanings, background, dropped): :func:`earning.earn`."""
        return earning.earn(self, modes, active)

    def _unshadow(self, modes: list[Mode], i: int, active: torch.Tensor, full: float,
                  extra: list[Mode], where: torch.Tensor | None = None) -> tuple[list[Mode], str] | None:
        """Frees a covering mode shadowed by another mode's broad atom: :func:`meanings.unshadow`."""
        return meanings.unshadow(self, modes, i, active, full, extra, where)

    def _record(self, rnd: int, modes: list[Mode], train: float) -> None:
        row = {"round": rnd, "train_score": train, "modes": len(modes)}
        if self.heldout_scorer is not None and modes:
            row["heldout_score"] = self.heldout_scorer(Explanation(self.ws.evidence.layer, self.ws.evidence.index,
                                                                   list(modes), method="neuronscope"))
        self.rounds.append(row)
