"""Scoring explanations on held-out evidence: Pearson per mode and whole, and mode coverage.

Score = Pearson r between the simulator's prediction and the true activations over every held-out
token pooled together (OpenAI's ``ev_correlation_score``; the held-out mix is documented in
``scoring.evidence``). Coverage of a mode = share of the held-out top activations (the focus tokens of
the held-out top windows) where the mode fires; a mode fires where its prediction reaches half of its
largest prediction on the batch (for ``exec`` with a positive strength that is exactly "a condition
holds"). All predictions of all explanations of a neuron go through one batched correlation call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..explanations.model import Explanation
from .corr import pearson
from .evidence import NeuronEvidence, WindowBatch
from .simulate import Simulation, Simulator


@dataclass
class ScoreResult:
    """Scores of one explanation of one neuron."""

    layer: int
    index: int
    method: str
    simulator: str
    score: float
    """Pearson r of the whole explanation over the held-out tokens."""
    mode_scores: list[float] = field(default_factory=list)
    coverage: float = 0.0
    """Share of held-out top activations where some mode fires."""
    mode_coverage: list[float] = field(default_factory=list)
    top_score: float = 0.0
    """Pearson r over the held-out top windows only (how well the explanation ranks within the peak)."""
    random_fire_rate: float = 0.0
    """Share of tokens of held-out random windows where some mode fires (a false-positive proxy)."""
    n_tokens: int = 0
    n_windows: int = 0
    extra: dict = field(default_factory=dict)
    undefined: list[str] = field(default_factory=list)
    """Correlations that are undefined (a constant prediction or truth, or fewer than two tokens): ``score``,
    ``top_score``, ``mode_scores[k]``. Their fields hold 0.0 here (means stay finite); :meth:`to_dict` —
    what output files hold — writes ``null`` for them, as upstream tools mark an undefined correlation."""

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in self.undefined:
            if name.startswith("mode_scores["):
                d["mode_scores"][int(name[12:-1])] = None
            elif name in d:
                d[name] = None
        return d


def _fires(pred: torch.Tensor) -> torch.Tensor:
    top = pred.max() if pred.numel() else torch.tensor(0.0)
    if float(top) <= 0:
        return torch.zeros_like(pred, dtype=torch.bool)
    return pred >= 0.5 * top


def undefined_rows(pred: torch.Tensor, true: torch.Tensor) -> np.ndarray:
    """(E,) bool: where Pearson r of ``pred (E, T)`` against ``true (T,)`` is undefined (either side constant,
    or T < 2)."""
    if pred.shape[1] < 2 or float(true.max() - true.min()) == 0.0:
        return np.ones(pred.shape[0], dtype=bool)
    return ((pred.amax(1) - pred.amin(1)) == 0).cpu().numpy()


def score_batch(explanations: Sequence[Explanation], sims: Sequence[Simulation], batch: WindowBatch,
                simulator: str) -> list[ScoreResult]:
    """Scores precomputed simulations against ``batch.acts``; one batched Pearson call for all rows."""
    rows, owners = [], []
    for i, s in enumerate(sims):
        rows.append(s.whole[None])
        owners.append((i, -1))
        for m in range(s.modes.shape[0]):
            owners.append((i, m))
        rows.append(s.modes)
    t = batch.n_tokens
    pred = torch.cat(rows).to(torch.float32) if rows else torch.zeros((0, t))
    r = pearson(pred, batch.acts).cpu().numpy().astype(np.float64) if t else np.zeros(len(pred))
    top_mask = batch.kind_mask("top")
    focus = batch.focus & top_mask
    rand = batch.kind_mask("random")
    r_top = (pearson(pred[:, top_mask], batch.acts[top_mask]).cpu().numpy().astype(np.float64)
             if int(top_mask.sum()) > 1 else np.zeros(len(pred)))
    # Pearson is undefined where either side is constant (or there are < 2 tokens).
    flat = undefined_rows(pred, batch.acts)
    flat_top = undefined_rows(pred[:, top_mask], batch.acts[top_mask])
    n_focus = int(focus.sum())
    out: list[ScoreResult] = []
    for row, (i, m) in enumerate(owners):
        e = explanations[i]
        if m == -1:
            fires = torch.zeros(t, dtype=torch.bool)
            s = sims[i]
            for k in range(s.modes.shape[0]):
                fires |= _fires(s.modes[k])
            if s.modes.shape[0] == 0:
                fires = _fires(s.whole)
            out.append(ScoreResult(
                layer=e.layer, index=e.index, method=e.method, simulator=simulator, score=float(r[row]),
                coverage=float(fires[focus].sum()) / n_focus if n_focus else 0.0, top_score=float(r_top[row]),
                random_fire_rate=float(fires[rand].float().mean()) if int(rand.sum()) else 0.0,
                n_tokens=t, n_windows=len(batch.windows),
                undefined=[k for k, bad in (("score", flat[row]), ("top_score", flat_top[row])) if bad]))
        else:
            res = out[-1]
            if flat[row]:
                res.undefined.append(f"mode_scores[{len(res.mode_scores)}]")
            res.mode_scores.append(float(r[row]))
            f = _fires(sims[i].modes[m])
            res.mode_coverage.append(float(f[focus].sum()) / n_focus if n_focus else 0.0)
    return out


def score_explanations(evidence: NeuronEvidence, explanations: Sequence[Explanation], simulator: Simulator,
                       *, annotate: bool = True, split: str = "heldout") -> list[ScoreResult]:
    """Simulates and scores every explanation of one neuron on its ``split`` windows (default held-out).

    With ``annotate`` the scores are also written into ``explanation.scores`` / ``mode.scores``.
    """
    batch = WindowBatch.build(evidence.windows(split))
    calibration = WindowBatch.build(evidence.train) if split == "heldout" else None
    sims = simulator.simulate(explanations, batch, calibration=calibration)
    results = score_batch(explanations, sims, batch, simulator.name)
    if annotate:
        for e, res in zip(explanations, results, strict=True):
            e.scores.update({"score": res.score, "coverage": res.coverage, "top_score": res.top_score})
            for mode, sc, cov in zip(e.modes, res.mode_scores, res.mode_coverage, strict=False):
                mode.scores.update({"score": sc, "coverage": cov})
    return results
