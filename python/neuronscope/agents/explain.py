"""``neuronscope explain``: run an explainer over many neurons, one JSON line per neuron, resumable.

Each line: ``layer``, ``index``, ``method``, ``backend``, ``explanation`` (the Explanation's JSON),
``heldout`` (its exec score on the held-out split: Pearson, per mode, coverage), ``rounds`` (train and
held-out score per refinement round), ``transcript``, ``usage`` and ``seconds``. The file is rewritten
atomically after every chunk of neurons; a rerun skips the (layer, index, method) lines already there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..explanations.conditions import ConditionEvaluator
from ..explanations.files import read_jsonl, write_jsonl
from ..scoring.evidence import WindowBatch
from ..scoring.run import EvidenceSource, StoreSource
from ..scoring.score import ScoreResult, score_batch
from ..scoring.simulate import ExecSimulator
from .offline import OfflineConfig, OfflineNeuronScope, single_pass

METHODS = ("neuronscope", "single-pass")


def parse_neurons(spec: str, source: EvidenceSource, seed: int = 0) -> list[tuple[int, int]]:
    """Neuron selection: ``3:5``, ``3:0-99``, ``2:7,4:1-3`` (comma-separated), ``layer:3``, ``all`` or
    ``sample:N`` (N neurons drawn with ``seed`` uniformly over the source's neurons, in sorted order)."""
    available = source.neurons()
    have = set(available)
    spec = spec.strip()
    if spec == "all":
        return available
    m = re.fullmatch(r"sample:(\d+)", spec)
    if m:
        n = int(m.group(1))
        if n > len(available):
            raise ConfigError(f"sample:{n} asks for more neurons than the source has ({len(available)})")
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(available), size=n, replace=False)
        return sorted(available[i] for i in pick)
    out: list[tuple[int, int]] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"layer:(\d+)", part)
        if m:
            layer = int(m.group(1))
            sel = [x for x in available if x[0] == layer]
            if not sel:
                raise ConfigError(f"layer {layer} is not in the source")
            out += sel
            continue
        m = re.fullmatch(r"(\d+):(\d+)(?:-(\d+))?", part)
        if not m:
            raise ConfigError(f"bad neuron spec {part!r}: use L:I, L:I-J, layer:L, all or sample:N")
        layer, a = int(m.group(1)), int(m.group(2))
        b = int(m.group(3)) if m.group(3) else a
        for i in range(a, b + 1):
            if (layer, i) not in have:
                raise ConfigError(f"neuron {layer}:{i} is not in the source")
            out.append((layer, i))
    return sorted(set(out))


def explain(source: EvidenceSource, neurons: Sequence[tuple[int, int]], out: str | Path, *,
            methods: Sequence[str] = ("neuronscope",), backend: str = "offline", rounds: int = 4,
            chunk: int = 16, progress: bool = True, cfg: OfflineConfig | None = None, llm=None) -> list[dict]:
    """Explains every neuron with every method and writes the JSON lines to ``out`` (see the module docstring)."""
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {m!r}")
    if backend not in ("offline", "openai"):
        raise ConfigError(f"backend must be offline or openai, got {backend!r}")
    if backend == "openai":
        from .llm_agents import run_llm_explain  # the LLM roles

        return run_llm_explain(source, neurons, out, methods=methods, rounds=rounds, chunk=chunk,
                               progress=progress, llm=llm)
    cfg = cfg or OfflineConfig(rounds=rounds)
    out = Path(out)
    rows = _read_rows(out)
    done = {(r["layer"], r["index"], r["method"]) for r in rows}
    todo = [(layer, i) for layer, i in neurons if any((layer, i, m) not in done for m in methods)]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="neuron", desc=f"explain[{backend}]", dynamic_ncols=True)
    evaluator = ConditionEvaluator(source.vocab)
    sim = ExecSimulator(source.vocab, evaluator)
    from .feedback import word_features

    words = word_features(source.vocab)  # one embedding cache for all neurons
    store = source.store if isinstance(source, StoreSource) else None
    # The layer's activation vectors at each neuron's strongest tokens come with the evidence pass.
    extra = ({"feature_frac": cfg.active_frac}
             if store is not None and store.planted is None and "neuronscope" in methods else {})
    by_layer: dict[int, list[int]] = {}
    for layer, i in todo:
        by_layer.setdefault(layer, []).append(i)
    if store is not None and todo:
        # One pass over the corpus for every layer involved; evidence, features and probes become lookups.
        store.cache_layers(sorted(by_layer))
    try:
        for layer, indices in sorted(by_layer.items()):
            for a in range(0, len(indices), chunk):
                for ev in source.evidence(layer, indices[a : a + chunk], **extra):
                    held = WindowBatch.build(ev.heldout)

                    def heldout_score(e, held=held) -> float:
                        return score_batch([e], sim.simulate([e], held), held, "exec")[0].score

                    for method in methods:
                        if (layer, ev.index, method) in done:
                            continue
                        if method == "single-pass":
                            res = single_pass(ev, evaluator, cfg)
                        else:
                            from .feedback import joint_features, minilm_features, store_features, store_probe

                            ctx = (store_features(store, layer, ev.vocab, ev.features) if store is not None
                                   else minilm_features(ev.vocab))
                            feats = joint_features(ctx, words)
                            probe = store_probe(store, ev, evaluator) if store else None
                            res = OfflineNeuronScope(ev, evaluator=evaluator, cfg=cfg, features=feats, probe=probe,
                                                     heldout_scorer=heldout_score).run()
                        rows.append(_score_row(res, held, evaluator, ev, method, backend))
                    if bar is not None:
                        bar.update(1)
                write_jsonl(out, rows)
    finally:
        if bar is not None:
            bar.close()
    write_jsonl(out, rows)
    return rows


def _score_row(res, held: WindowBatch, evaluator: ConditionEvaluator, ev, method: str, backend: str) -> dict:
    """The output line of one neuron: the explanation with its held-out exec scores written in."""
    sim = ExecSimulator(evaluator.vocab, evaluator)
    e = res.explanation
    if e.executable:
        sc = score_batch([e], sim.simulate([e], held), held, "exec")[0]
        e.scores.update({"score": sc.score, "coverage": sc.coverage})
        for mode, s, c in zip(e.modes, sc.mode_scores, sc.mode_coverage, strict=False):
            mode.scores.update({"score": s, "coverage": c})
    else:  # nothing found: a constant prediction, which explains nothing
        sc = ScoreResult(ev.layer, ev.index, method, "exec", 0.0, n_tokens=held.n_tokens, n_windows=len(held.windows))
    return {"layer": ev.layer, "index": ev.index, "method": method, "backend": backend, "explanation": e.to_dict(),
            "heldout": sc.to_dict(), "rounds": res.round_scores, "transcript": res.transcript, "usage": {},
            "seconds": res.seconds}


def _read_rows(out: Path) -> list[dict]:
    return read_jsonl(out, "an explanations file")
