"""``neuronscope run``: mine → screen → explain (+ held-out scores) → search index → report, resumable.

A run directory::

    run.json              what was asked (model, corpus, sampling) and each stage's state and seconds
    store/                the NeuronStore (mining resumes from its checkpoints)
    screen.jsonl          the polysemanticity screen of every neuron (``screen.py``)
    explanations.jsonl    one line per (neuron, method) with held-out scores (``agents/run.py``)
    search/               the mode-description index (``search.py``)
    report/index.html     the static site (``report/``)

Every stage leaves its output complete or absent, and is skipped when its output is there and
current: a second ``neuronscope run`` with the same arguments recomputes nothing. Changing the
sample size or seed adds neurons to the explanations file; changing what is mined (model, corpus,
layers, k, token budget) is refused, since the existing explanations would describe another store.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError, StoreError
from .io import write_json

MINED_KEYS = ("model", "corpus", "text_field", "doc_split", "layers", "k", "max_tokens", "seq_len", "packing",
              "batch_tokens")


@dataclass
class RunConfig:
    """Everything ``neuronscope run`` takes (defaults: the embedded MiniLM × pydoc job)."""

    model: str = "minilm"
    corpus: str = "pydoc"
    text_field: str = "text"
    doc_split: str = "paragraph"
    layers: str = "all"
    k: int = 64
    max_tokens: int | None = None
    seq_len: int | None = None
    packing: str = "stream"
    batch_tokens: int = 8192
    device: str = "cpu"
    dtype: str = "float32"
    backend: str | None = None
    sample: int = 48
    """Neurons drawn uniformly (seeded) across the mined layers."""
    polysemantic: int = 16
    """Top candidates of the polysemanticity screen explained beside the sample."""
    seed: int = 0
    methods: tuple[str, ...] = ("neuronscope", "single-pass")
    explain_backend: str = "offline"
    rounds: int = 4
    llm: dict | None = field(default=None)

    def mined(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in MINED_KEYS}


@dataclass
class RunResult:
    path: Path
    report: Path
    neurons: list[tuple[int, int]]
    stages: dict[str, dict]


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, flush=True)


def _read_state(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: unreadable run state ({e}); move it away to start the run afresh") from None


def select_neurons(screen_rows: list[dict], available: list[tuple[int, int]], sample: int, polysemantic: int,
                   seed: int) -> list[tuple[int, int]]:
    """A seeded uniform sample plus the screen's ``polysemantic`` strongest candidates outside it (sorted)."""
    import numpy as np

    if sample < 0 or polysemantic < 0:
        raise ConfigError("sample and polysemantic counts must be ≥ 0")
    if sample > len(available):
        raise ConfigError(f"sample of {sample} asks for more neurons than were mined ({len(available)})")
    rng = np.random.default_rng(seed)
    picked = {available[i] for i in rng.choice(len(available), size=sample, replace=False)}
    extra = 0
    for r in screen_rows:
        if extra >= polysemantic:
            break
        key = (int(r["layer"]), int(r["index"]))
        if key not in picked:
            picked.add(key)
            extra += 1
    return sorted(picked)


def run(out: str | Path = "runs/default", cfg: RunConfig | None = None, *, quiet: bool = False) -> RunResult:
    """Runs (or resumes) the whole job into ``out`` and returns where its report is."""
    from .agents import explain
    from .corpus import CorpusSpec
    from .io import read_jsonl, write_jsonl
    from .mining import MiningConfig
    from .mining.run import mine
    from .report.build import build_report, report_is_current
    from .scoring.run import StoreSource
    from .screen import screen
    from .search import build_index, index_is_current

    cfg = cfg or RunConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "run.json"
    state = _read_state(state_path)
    saved = state.get("mined", {}) if state else {}
    # A key an older run.json did not record is not compared (mine() itself still checks it on the store).
    diff = {k: (saved[k], v) for k, v in cfg.mined().items() if k in saved and saved[k] != v}
    if diff:
        raise ConfigError(f"{out} holds a run mined with other settings ({diff}: was, now); "
                          "use another --out or delete the directory")
    state.update({"format": 1, "mined": cfg.mined(), "config": {**asdict(cfg), "llm": None}})
    stages: dict[str, dict] = state.setdefault("stages", {})

    def done(name: str, t0: float, **info) -> None:
        stages[name] = {"seconds": round(time.monotonic() - t0, 2), **info}
        write_json(state_path, state)

    # 1. mine (returns a finished store as is; an unfinished one resumes from its checkpoint)
    t0 = time.monotonic()
    store_dir = out / "store"
    fresh = not (store_dir / "manifest.json").exists()
    _say(f"[1/5] mine {cfg.model} × {cfg.corpus}" + ("" if fresh else ": done, kept"), quiet)
    store = mine(cfg.model, CorpusSpec(cfg.corpus, text_field=cfg.text_field, doc_split=cfg.doc_split), store_dir,
                 layers=cfg.layers, config=MiningConfig(k=cfg.k, seed=cfg.seed), max_tokens=cfg.max_tokens,
                 batch_tokens=cfg.batch_tokens, seq_len=cfg.seq_len, packing=cfg.packing, backend=cfg.backend,
                 device=cfg.device, dtype=cfg.dtype, progress=not quiet)
    if fresh:
        done("mine", t0, tokens=store.n_tokens_seen, layers=store.layers)

    # One activation source for every later stage: the subject is loaded once, its layer cache shared.
    from .activations import activation_source

    acts = activation_source(store)

    # 2. polysemanticity screen of every neuron
    t0 = time.monotonic()
    screen_path = out / "screen.jsonl"
    if screen_path.exists():
        screen_rows = read_jsonl(screen_path, "a screen file")
        _say("[2/5] screen: done, kept", quiet)
    else:
        _say(f"[2/5] screen {len(store.layers)} layers × {store.n_neurons} neurons for polysemanticity", quiet)
        screen_rows = [r.to_dict() for r in screen(store, activations=acts)]
        write_jsonl(screen_path, screen_rows)
        done("screen", t0, candidates=sum(r["clusters"] >= 2 for r in screen_rows))

    # 3. explain the sample and the strongest candidates (held-out scores are written with each line)
    t0 = time.monotonic()
    source = StoreSource(store, seed=cfg.seed, activations=acts)
    neurons = select_neurons(screen_rows, source.neurons(), cfg.sample, cfg.polysemantic, cfg.seed)
    expl_path = out / "explanations.jsonl"
    have = {(r["layer"], r["index"], r["method"]) for r in read_jsonl(expl_path, "an explanations file")}
    todo = sum((layer, i, m) not in have for layer, i in neurons for m in cfg.methods)
    _say(f"[3/5] explain + score {len(neurons)} neurons ({cfg.sample} sampled, {cfg.polysemantic} from the screen) "
         f"with {', '.join(cfg.methods)}" + (": done, kept" if not todo else f": {todo} to do"), quiet)
    if todo:
        explain(source, neurons, expl_path, methods=cfg.methods, backend=cfg.explain_backend, rounds=cfg.rounds,
                progress=not quiet, llm=cfg.llm)
        done("explain", t0, neurons=len(neurons))
    state["neurons"] = [list(x) for x in neurons]
    write_json(state_path, state)

    # 4. search index of the mode descriptions
    t0 = time.monotonic()
    if index_is_current(expl_path, out / "search"):
        _say("[4/5] search index: done, kept", quiet)
    else:
        n = build_index(expl_path, out / "search", method=cfg.methods[0])
        _say(f"[4/5] search index: {n} modes embedded", quiet)
        done("search", t0, entries=n)

    # 5. report
    t0 = time.monotonic()
    report_dir = out / "report"
    if report_is_current(out, report_dir):
        _say("[5/5] report: done, kept", quiet)
    else:
        _say("[5/5] report", quiet)
        build_report(out, report_dir, store=store, progress=not quiet, activations=acts)
        done("report", t0)
    index = report_dir / "index.html"
    _say(f"report -> {index.resolve().as_uri()}", quiet)
    return RunResult(out, index, neurons, stages)
