"""``neuronscope export``: explanations (with held-out scores and per-window simulations) in other tools' layouts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.files import read_explanations
from ..explanations.model import Explanation
from ..scoring.evidence import WindowBatch
from ..scoring.run import EvidenceSource
from ..scoring.score import score_batch
from ..scoring.simulate import make_simulator
from .delphi import SCORERS, export_delphi
from .openai import export_openai

FORMATS = ("openai", "delphi")


def select_methods(explanations: Sequence[Explanation], wanted: Sequence[str], *,
                   several: bool = False) -> list[Explanation]:
    """The explanations whose method is in ``wanted`` (all when empty).

    Without ``several``, ``wanted`` must name one method; a method absent from the file is a ConfigError
    naming the methods present.
    """
    present = sorted({e.method for e in explanations})
    if not several and len(wanted) > 1:
        raise ConfigError(f"--method takes one method here, got {', '.join(wanted)}")
    missing = [m for m in wanted if m not in present]
    if missing:
        raise ConfigError(f"no explanation of method {', '.join(missing)} in the file; it holds "
                          f"{', '.join(present) or 'none'}")
    return [e for e in explanations if not wanted or e.method in wanted]


def export(source: EvidenceSource, explanations: str | Path, fmt: str, out: str | Path, *,
           simulator: str = "exec", method: str | None = None,
           delphi_scorers: Sequence[str] = SCORERS) -> list[Path]:
    """Scores every explanation on its neuron's held-out windows and writes it in ``fmt`` under ``out``.

    ``method``: export only that method's explanations. delphi keeps one explanation per neuron, so a
    delphi export of a file holding several methods (``explain --method neuronscope,single-pass``) needs
    it; OpenAI's layout holds several per neuron. Free-text explanations (no conditions) are simulated with
    ``embed`` whatever ``simulator`` says. ``delphi_scorers``: the delphi score files to write.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    exps = read_explanations(explanations)
    exps = select_methods(exps, [method] if method else [])
    present = sorted({e.method for e in exps})
    if fmt == "delphi" and len(present) > 1:
        raise ConfigError(f"{explanations} holds explanations of several methods ({', '.join(present)}) and "
                          "delphi keeps one per neuron: choose one with --method (e.g. --method "
                          f"{present[0]}), and export each method to its own directory")
    evaluator = ConditionEvaluator(source.vocab)
    needed = {simulator if e.executable else "embed" for e in exps}
    sims = {name: make_simulator(name, source.vocab, evaluator) for name in needed}
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
        written += export_delphi(out, all_e, all_r, simulations=all_s, vocab=source.vocab, scorers=delphi_scorers)
    return written
