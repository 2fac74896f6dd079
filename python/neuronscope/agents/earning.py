"""The earning rule of the offline loop: which modes are meanings, which go to the background term.

Written in ``AgentConfig`` (``min_mode_cover``, ``min_mode_gain``, ``broad_mode_cover``, ``broad_mode_gain``)
and decided on train data only; ``agent`` is
the :class:`~neuronscope.agents.offline.OfflineNeuronScope` (its workspace, config, similarity and log).
"""

from __future__ import annotations

import numpy as np
import torch

from ..explanations.model import Condition, Mode
from . import meanings
from .workspace import atoms, build_mode


def cover(agent, mode: Mode, active: torch.Tensor) -> float:
    """Share of the train windows holding activating tokens in which the mode fires on one of them.

    Counted in windows, not tokens: the evidence is drawn around the neuron's strongest tokens, so a
    frequent token of the strongest mode (a rule line of 300 dashes) would otherwise leave every other
    meaning a sliver of the activating tokens however many contexts it fires in."""
    win = agent.ws.batch.window
    # Survey windows are not counted: half of them sit on the strongest activations, which the strongest
    # meaning holds; counted, they would shrink every other meaning's share, and the rule's 5% was set on the
    # stored mix of top, quantile and random windows.
    stored = ~agent.ws.batch.kind_mask("survey")
    hot = torch.unique(win[active & stored])
    if hot.numel() == 0:
        return 0.0
    return torch.unique(win[agent.ws.fires(mode) & active & stored]).numel() / hot.numel()


def earns(cfg, cover: float, gain: float) -> bool:
    """The rule on one mode's (cover, gain): cover ≥ ``min_mode_cover`` and gain ≥ ``min_mode_gain``, or a broad
    mode's smaller gain: cover ≥ ``broad_mode_cover`` and gain ≥ ``broad_mode_gain``.

    A meaning that recurs across many windows is evidence of a component by its breadth; its train gain is
    small when it fires weakly beside a strong meaning (a category at 1.1 beside the first tokens of a
    document at 3.3 moves the whole split's score by 0.007)."""
    return ((cover >= cfg.min_mode_cover and gain >= cfg.min_mode_gain)
            or (cover >= cfg.broad_mode_cover and gain >= cfg.broad_mode_gain))


def earn(agent, modes: list[Mode], active: torch.Tensor) -> tuple[list[Mode], Mode | None]:
    """The rule every mode must pass, on train data only (written in ``AgentConfig``):

    a mode is a meaning when it fires on activating tokens in at least ``min_mode_cover`` of the train
    windows that hold any (:func:`cover`) and removing it (the other modes and the background kept) loses
    at least ``min_mode_gain`` train score — or, firing in at least ``broad_mode_cover`` of them, at least
    ``broad_mode_gain`` (:func:`earns`). A covering mode that fails only because another mode's broad
    atom fires on its tokens is freed first (:func:`meanings.unshadow`).
    The least useful failing mode goes first, and the rule is re-checked on the rest: one that covers
    the activating tokens but adds nothing over the others means the same as one of them and is merged
    into the most similar; one that covers too little but still predicts (diffuse low-level firing)
    joins the background term; one that predicts nothing is dropped (a covering mode that means nothing
    like any other, by ``agent.similar``, is treated as one that covers too little). A lone mode always stays.
    """
    ws, cfg = agent.ws, agent.cfg
    modes = [m for m in modes if m.conditions]
    background: list[Condition] = []
    decisions = []

    def bg_modes() -> list[Mode]:
        return [build_mode(ws, background, kind="background")] if background else []

    # The gain is measured on the stored evidence's tokens (strengths fitted on all): the rule's thresholds
    # belong to its mix of top, quantile and random windows, and the survey's windows on the strongest
    # meaning would shrink every other meaning's gain (planted recall 0.828 → 0.835 against scoring on all).
    stored = ~ws.batch.kind_mask("survey")
    stored = None if bool(stored.all()) else stored
    while len(modes) > 1:
        extra = bg_modes()
        full = ws.score(modes + extra, stored)
        stats = []
        for i, m in enumerate(modes):
            cover = agent.cover(m, active)
            gain = full - ws.score(modes[:i] + modes[i + 1 :] + extra, stored)
            stats.append((cover, gain))
        fails = [i for i, (c, g) in enumerate(stats) if not earns(cfg, c, g)]
        if not fails:
            break
        i = min(fails, key=lambda k: (stats[k][1], stats[k][0]))
        cover, gain = stats[i]
        if cover >= cfg.min_mode_cover:
            freed = meanings.unshadow(agent, modes, i, active, full, extra, stored)
            if freed is not None:
                modes, why = freed
                decisions.append(why)
                continue
        m = modes.pop(i)
        sims = [agent.similarity(m, o, active) for o in modes]
        if any(x is None for x in sims):  # no features: the mode nearest in strength
            sims = [-abs(o.strength - m.strength) for o in modes]
        j = int(np.argmax(sims)) if modes else 0
        # Covering but adding nothing: a second reading of a meaning already there — merged, but only into
        # one that means the same (a position mode and the words of a weaker meaning are not one meaning).
        if cover >= cfg.min_mode_cover and modes and agent.similar(m, modes[j], active):
            modes[j] = build_mode(ws, atoms(modes[j]) + atoms(m))
            what = f"merged into {modes[j].label}"
        elif gain > 0:
            background += atoms(m)
            what = "background"
        else:
            what = "dropped"
        decisions.append(f"{m.label}: cover {cover:.0%}, gain {gain:+.3f} → {what}")
    agent.log("earn", rule=f"cover ≥ {cfg.min_mode_cover:.0%} of the windows with activating tokens and gain ≥ "
             f"{cfg.min_mode_gain} train score, or cover ≥ {cfg.broad_mode_cover:.0%} and gain ≥ {cfg.broad_mode_gain}",
             decisions=decisions, meanings=len(modes),
             background=len(background))
    bg = bg_modes()
    return modes, (bg[0] if bg else None)
