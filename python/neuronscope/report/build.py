"""``neuronscope report``: a run directory (store + explanations) → the static site under ``report/``.

The site records the fingerprint of the explanations file it was built from (``report/build.json``);
``neuronscope run`` rebuilds it only when that file changed.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError, ExplanationError, StoreError
from ..io import write_json
from ..search import fingerprint

FORMAT = 1


def _paths(run: Path, store: str | Path | None, explanations: str | Path | None) -> tuple[Path, Path]:
    store_dir = Path(store) if store is not None else run / "store"
    expl = Path(explanations) if explanations is not None else run / "explanations.jsonl"
    if not (store_dir / "manifest.json").exists():
        raise StoreError(f"{store_dir}: no NeuronStore (expected the run's store/; give --store)")
    if not expl.exists():
        raise StoreError(f"{expl}: no explanations file (run `neuronscope explain` or `neuronscope run` first)")
    return store_dir, expl


_EXPLAIN_OUTPUT = "give --explanations the .jsonl that `neuronscope explain` (or `neuronscope run`) wrote"


def read_rows(expl: Path) -> list[tuple[tuple[int, int], dict]]:
    """((layer, index), row) of every explained line of an ``explain`` output; failure rows (neurons whose work
    failed, retried by the next ``explain``) are left out. A file that is not such an output is a StoreError
    saying what is wrong with which line, and what to give instead; an invalid explanation an ExplanationError."""
    from ..explanations.model import Explanation
    from .data import defined_scores

    try:
        text = expl.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise StoreError(f"{expl} is not an explanations file (it is not UTF-8 text); {_EXPLAIN_OUTPUT}") from None
    except OSError as e:
        raise StoreError(f"cannot read the explanations file {expl}: {e.strerror or e}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:
            raise StoreError(f"{expl}:{n} is not JSON, so {expl.name} is not an explanations file (or that line "
                             f"is damaged); {_EXPLAIN_OUTPUT}, or repair line {n}") from None
        if not isinstance(r, dict):
            raise StoreError(f"{expl}:{n} holds a JSON {type(r).__name__}, not an object; {_EXPLAIN_OUTPUT}")
        try:
            key = (int(r["layer"]), int(r["index"]))
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{expl}:{n} has no integer layer/index ({str(r)[:80]}); {_EXPLAIN_OUTPUT}") from None
        if "error" in r and "explanation" not in r:
            continue
        if not isinstance(r.get("explanation"), dict) or not isinstance(r.get("method"), str):
            raise StoreError(f"{expl}:{n} has no 'explanation' object and 'method' name: the report reads the rows "
                             f"of an explain output, not bare explanations; {_EXPLAIN_OUTPUT}")
        # Validated now, before any heavy work: a malformed explanation or a too-slow regex is named with its line.
        Explanation.from_dict(defined_scores(r["explanation"]), f"{expl.name}:{n}")
        out.append((key, r))
    return out


def report_is_current(run: str | Path, out: str | Path) -> bool:
    """True when ``out`` holds a finished report built from the run's current explanations file."""
    run, out = Path(run), Path(out)
    info_path, expl = out / "build.json", run / "explanations.jsonl"
    if not info_path.exists() or not expl.exists() or not (out / "index.html").exists():
        return False
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return False
    return info.get("format") == FORMAT and info.get("fingerprint") == fingerprint(expl)


def build_report(run: str | Path, out: str | Path | None = None, *, store=None, explanations: str | Path | None = None,
                 title: str | None = None, progress: bool = True, activations=None) -> Path:
    """Builds the site for every neuron explained in the run; returns the path of its index.html.

    ``store``: a NeuronStore (or directory) instead of ``run/store``; ``explanations``: a file instead of
    ``run/explanations.jsonl``; ``out``: default ``run/report``; ``activations``: the store's activation
    source when one is already prepared (``neuronscope run`` shares one across its stages).
    """
    from ..explanations.conditions import ConditionEvaluator
    from ..explanations.vocab import Vocab
    from ..models.registry import model_name
    from ..store import NeuronStore, open_store
    from .data import index_row, neuron_view
    from .html import neuron_page_name, render_site

    run = Path(run)
    out = Path(out) if out is not None else run / "report"
    if isinstance(store, NeuronStore):
        expl = Path(explanations) if explanations is not None else run / "explanations.jsonl"
        if not expl.exists():
            raise StoreError(f"{expl}: no explanations file (run `neuronscope explain` or `neuronscope run` first)")
    else:
        store_dir, expl = _paths(run, store, explanations)
    by_neuron: dict[tuple[int, int], list[dict]] = {}
    for key, r in read_rows(expl):  # before the store opens: a wrong file is told at once
        by_neuron.setdefault(key, []).append(r)
    if not by_neuron:
        raise ConfigError(f"{expl}: no explained neurons to report (the file is empty or holds only failed "
                          "neurons: rerun `neuronscope explain` to do or retry them)")
    if not isinstance(store, NeuronStore):
        store = open_store(store_dir)
    missing = [k for k in by_neuron if k[0] not in store.layers or not 0 <= k[1] < store.n_neurons]
    if missing:
        raise StoreError(f"{expl}: neurons {missing[:5]} are not in the store {store.path}")
    t0 = time.monotonic()
    # Exemplar shading needs every context token's activation: one pass caches the layers involved.
    from ..activations import activation_source

    activations = activations if activations is not None else activation_source(store)
    # Every layer at once when the cache fits in memory, else one layer at a time (keys are sorted by layer).
    whole = activations.prepare(sorted({k[0] for k in by_neuron}))
    evaluator = ConditionEvaluator(Vocab.from_tokenizer(store.tokenizer()))
    views, index = [], []
    keys = sorted(by_neuron)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(keys), unit="neuron", desc="report", dynamic_ncols=True)
    for layer, i in keys:
        if not whole and not activations.is_lookup(layer):
            activations.prepare([layer])
        try:
            v = neuron_view(store, evaluator, layer, i, by_neuron[(layer, i)], activations)
        except ExplanationError as e:  # e.g. a pattern too slow to evaluate: name the file and the neuron
            raise ExplanationError(f"{expl}: the explanation of neuron {layer}:{i} is invalid: {e}; fix or remove "
                                   "that line") from None
        views.append(v)
        index.append(index_row(v, neuron_page_name(layer, i)))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    corpus = store.manifest.get("corpus")
    model = model_name(store.model_id)
    meta = {"model": model, "corpus": str(corpus.get("source", "")) if isinstance(corpus, dict) else str(corpus),
            "n_tokens": store.n_tokens_seen, "neurons explained": len(keys),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    page = render_site(index, views, out, title=title or f"neuronscope · {model}", meta=meta)
    write_json(out / "build.json", {"format": FORMAT, "fingerprint": fingerprint(expl), "neurons": len(keys),
                                    "seconds": round(time.monotonic() - t0, 2)})
    return page
