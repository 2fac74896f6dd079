"""``neuronscope export``: explanations (with held-out scores and per-window simulations) in other tools' layouts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..errors import ConfigError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.files import read_explanations
from ..scoring.evidence import WindowBatch
from ..scoring.run import EvidenceSource
from ..scoring.score import score_batch
from ..scoring.simulate import make_simulator
from .delphi import export_delphi
from .openai import export_openai

FORMATS = ("openai", "delphi")


def export(source: EvidenceSource, explanations: str | Path, fmt: str, out: str | Path, *,
           simulator: str = "exec") -> list[Path]:
    """Scores every explanation on its neuron's held-out windows and writes it in ``fmt`` under ``out``.

    Free-text explanations (no conditions) are simulated with ``embed`` whatever ``simulator`` says.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    exps = read_explanations(explanations)
    evaluator = ConditionEvaluator(source.vocab)
    sims = {name: make_simulator(name, source.vocab, evaluator) for name in {simulator, "embed"}}
    grouped: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for e in exps:
        grouped[e.layer][e.index].append(e)
    written: list[Path] = []
    all_e, all_r, all_s = [], [], []
    for layer, per in sorted(grouped.items()):
        for ev in source.evidence(layer, sorted(per)):
            batch = WindowBatch.build(ev.heldout)
            cal = WindowBatch.build(ev.train)
            for e in per[ev.index]:
                sim = sims[simulator if e.executable else "embed"]
                s = sim.simulate([e], batch, calibration=cal)[0]
                res = score_batch([e], [s], batch, sim.name)[0]
                if fmt == "openai":
                    written.append(export_openai(out, e, res, batch, s, vocab=source.vocab))
                else:
                    all_e.append(e)
                    all_r.append(res)
                    all_s.append((batch, s))
    if fmt == "delphi" and all_e:
        written += export_delphi(out, all_e, all_r, simulations=all_s, vocab=source.vocab)
    return written
