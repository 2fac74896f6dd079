"""The ``neuronscope`` command line: ``run`` (the whole job), ``mine``, ``info``, ``verify``, ``merge``, ``neuron``,
``explain``, ``score``, ``export``, ``eval``, ``report``, ``search``, ``bench``.

One meaning per flag: ``--model`` is the subject model and ``--backend`` the miner (``mine``, ``run``);
``--explain-backend`` picks the explainer, ``--llm-model`` the model on the LLM server, ``--method`` the methods.
The LLM options are declared once (:func:`add_llm_options`) and read once (:func:`llm_config`). The previous
spellings (``--backend`` in ``explain``/``eval``, ``--model`` in ``explain``/``score``/``eval``, ``--methods``)
work for one more release and say so on stderr. Only argparse, json and the errors are imported at start:
``neuronscope --help`` loads no torch.

Why this module is long: it is the whole command line, thirteen commands each with its parser and a short
handler that imports its stage and calls it; a flag and the code that reads it stay in one file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .bench.cli import add_parser as _add_bench
from .bench.cli import command as _cmd_bench
from .errors import NeuronscopeError

EXPLAIN_BACKENDS = ("offline", "openai", "local")
MINER_BACKENDS = ("auto", "ref", "cpu", "triton")


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores into the new option's ``dest`` and warns on stderr."""

    def __init__(self, option_strings: list[str], dest: str, *, use: str, **kw: Any) -> None:
        self.use = use
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated, use {self.use} "
              "(the old spelling will be removed in the next release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _deprecated(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kw: Any) -> None:
    """Declares ``old`` as a hidden alias of the option ``new`` (same ``dest``, same type/choices)."""
    p.add_argument(old, dest=dest, action=_DeprecatedAlias, use=new, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS, **kw)


def add_llm_options(p: argparse.ArgumentParser, *, legacy_model: bool = False) -> None:
    """The OpenAI-compatible server options, one argument group; ``legacy_model`` also accepts ``--model``."""
    g = p.add_argument_group("LLM server (OpenAI-compatible; used by the openai explainer and the llm simulator)")
    g.add_argument("--base-url", default="http://localhost:8000/v1", help="server URL (default %(default)s)")
    g.add_argument("--llm-model", default=None, help="model name on that server; with --explain-backend local a "
                   "built-in GGUF (qwen2.5-coder-1.5b, qwen2.5-0.5b, smollm2-135m) or a .gguf file")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (never written anywhere)")
    g.add_argument("--concurrency", type=int, default=8, help="parallel LLM requests")
    g.add_argument("--llm-timeout", type=float, default=None, metavar="SECONDS",
                   help="per-request timeout (default: the client's, 120 s)")
    g.add_argument("--llm-retries", type=int, default=None, metavar="N",
                   help="retries of transient failures (default: the client's, 5)")
    g.add_argument("--llm-max-tokens", type=int, default=None, metavar="N",
                   help="completion budget per request (default: the client's, 1024)")
    if legacy_model:
        _deprecated(p, "--model", "--llm-model", "llm_model")


def llm_config(a: argparse.Namespace) -> dict[str, Any]:
    """The LLM settings of a parsed command line, as the stage functions take them (unset ones left out)."""
    cfg: dict[str, Any] = {"base_url": a.base_url, "model": a.llm_model, "api_key_env": a.api_key_env,
                           "concurrency": a.concurrency}
    for key, value in (("timeout_s", a.llm_timeout), ("max_retries", a.llm_retries),
                       ("max_tokens", a.llm_max_tokens)):
        if value is not None:
            cfg[key] = value
    return cfg


def add_explain_backend(p: argparse.ArgumentParser, *, legacy_backend: bool = False) -> None:
    p.add_argument("--explain-backend", default="offline", choices=EXPLAIN_BACKENDS,
                   help="explainer: offline algorithms (default), an LLM server (openai: any OpenAI-compatible "
                        "--base-url) or local (a llama.cpp server started and stopped by the run on --llm-model, "
                        "e.g. qwen2.5-coder-1.5b)")
    if legacy_backend:
        _deprecated(p, "--backend", "--explain-backend", "explain_backend", choices=EXPLAIN_BACKENDS)


def add_method(p: argparse.ArgumentParser, default: str | None, help: str, *, legacy_plural: bool = False) -> None:
    p.add_argument("--method", default=default, help=help)
    if legacy_plural:
        _deprecated(p, "--methods", "--method", "method")


def methods(value: str | None) -> list[str]:
    """``"neuronscope, single-pass"`` → ``["neuronscope", "single-pass"]`` (None → [])."""
    return [m.strip() for m in (value or "").split(",") if m.strip()]


def _source(a: argparse.Namespace):
    from .scoring.run import open_source

    return open_source(store=a.store, seed=a.seed) if a.store else open_source(records=a.records)


def _add_mine(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mine", help="mine every selected MLP neuron's top activations and statistics")
    p.add_argument("--model", default="minilm", help="subject model: local directory, hub id, or 'minilm' (default)")
    p.add_argument("--corpus", default="pydoc",
                   help="'pydoc' (default), a .txt/.jsonl/.parquet file, a directory, a glob, or a saved HF dataset")
    p.add_argument("--text-field", default="text", help="field holding the text (.jsonl, .parquet, HF datasets)")
    p.add_argument("--doc-split", default="paragraph", choices=["paragraph", "line", "file"],
                   help="how .txt files are cut into documents")
    p.add_argument("--layers", default="all", help="'all' or e.g. '0,3,5-7'")
    p.add_argument("--k", type=int, default=64, help="top activations kept per neuron")
    p.add_argument("--bottom-k", type=int, default=0, help="most negative activations kept per neuron")
    p.add_argument("--samples", type=int, default=8, help="random tokens kept per (neuron, histogram stratum)")
    p.add_argument("--max-tokens", type=int, default=None, help="stop after this many corpus tokens")
    p.add_argument("--batch-tokens", type=int, default=8192, help="model positions per forward pass")
    p.add_argument("--seq-len", type=int, default=None,
                   help="positions per sequence (default 512, capped by the model)")
    p.add_argument("--packing", default="stream", choices=["stream", "doc"])
    p.add_argument("--backend", default=None, choices=MINER_BACKENDS,
                   help="miner implementation (default: auto, or $NEURONSCOPE_BACKEND)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--workers", type=int, default=0, help="tokenizer processes (0 = up to 4)")
    p.add_argument("--checkpoint-seconds", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0, help="seed of the quantile samples")
    p.add_argument("--out", required=True, help="output NeuronStore directory (resumes if unfinished)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _cmd_mine(a: argparse.Namespace) -> int:
    from .corpus import CorpusSpec
    from .mining import MiningConfig
    from .mining.run import mine

    cfg = MiningConfig(k=a.k, bottom_k=a.bottom_k, samples_per_stratum=a.samples, seed=a.seed)
    spec = CorpusSpec(a.corpus, text_field=a.text_field, doc_split=a.doc_split)
    store = mine(a.model, spec, a.out, layers=a.layers, config=cfg, max_tokens=a.max_tokens,
                 batch_tokens=a.batch_tokens, seq_len=a.seq_len, packing=a.packing, backend=a.backend,
                 device=a.device, dtype=a.dtype, workers=a.workers, checkpoint_seconds=a.checkpoint_seconds,
                 progress=not a.quiet)
    if store.path.joinpath("manifest.json").exists():
        s = store.summary()
        print(f"mined {s['tokens_seen']} tokens x {len(s['layers'])} layers x {s['neurons_per_layer']} neurons "
              f"in {s['seconds']} s [{s['backend']}] -> {store.path}")
    return 0


def _cmd_info(a: argparse.Namespace) -> int:
    from .store import open_store

    store = open_store(a.store)
    summary = store.summary()
    if a.json:
        print(json.dumps(summary, indent=2))
        return 0
    for key, value in summary.items():
        print(f"{key:20s} {value}")
    print(f"{'layer':>5s} {'mean':>9s} {'std':>9s} {'max':>9s} {'frac>0':>7s}  strongest neurons (max)")
    for layer in store.layers:
        st = store.stats(layer)
        n = st.count.clamp_min(1).double()
        std = (st.m2 / n).sqrt()
        top = st.max.argsort(descending=True)[:3].tolist()
        print(f"{layer:5d} {float(st.mean.mean()):9.4f} {float(std.mean()):9.4f} {float(st.max.max()):9.3f} "
              f"{float((st.positive / n).mean()):7.3f}  " + ", ".join(f"{i} ({float(st.max[i]):.2f})" for i in top))
    return 0


def _cmd_merge(a: argparse.Namespace) -> int:
    from .mining.merge import merge_stores

    store = merge_stores(a.stores, a.out)
    print(f"merged {len(a.stores)} stores ({store.n_tokens_seen} tokens) -> {store.path}")
    return 0


def _cmd_neuron(a: argparse.Namespace) -> int:
    from .store import open_store

    store = open_store(a.store)
    from .activations import activation_source

    r = store.neuron(a.layer, a.index, activations=None if a.no_acts else activation_source(store))
    print(f"layer {r.layer} neuron {r.index}: mean {r.mean:.4f} std {r.std:.4f} min {r.min:.3f} max {r.max:.3f} "
          f"frac>0 {r.frac_positive:.3f}")
    print("quantiles " + " ".join(f"q{q:g}={v:.3f}" for q, v in r.quantiles.items()))
    for e in r.top[: a.show]:
        before = "".join(e.pieces[: e.focus])
        print(f"{e.activation:8.3f}  {before}[[{e.pieces[e.focus]}]]{''.join(e.pieces[e.focus + 1:])}")
    return 0


def _cmd_score(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .scoring.run import score_file

    source = _source(a)
    out = Path(a.out) if a.out else Path(a.explanations).with_suffix(f".scores.{a.simulator}.jsonl")
    explanations: Any = a.explanations
    if a.method:
        from .explanations.files import read_explanations
        from .interop.export import select_methods

        explanations = select_methods(read_explanations(a.explanations), methods(a.method), several=True)
    rows = score_file(source, explanations, out, simulator=a.simulator, progress=not a.quiet, llm=llm_config(a))
    if rows:
        import numpy as np

        by_method: dict[str, list[float]] = {}
        for r in rows:
            # An undefined correlation (null: a constant prediction) explains nothing: 0 in the mean.
            by_method.setdefault(r["method"], []).append(r["score"] if r.get("score") is not None else 0.0)
        for m, v in sorted(by_method.items()):
            print(f"{m:>14}: {len(v)} explanations, mean score {np.mean(v):.3f} (median {np.median(v):.3f})")
    print(f"scores -> {out}")
    return 0


def _cmd_explain(a: argparse.Namespace) -> int:
    import numpy as np

    from .agents import explain, parse_neurons

    source = _source(a)
    neurons = parse_neurons(a.neurons, source, seed=a.seed)
    ms = methods(a.method)
    llm = llm_config(a) if a.explain_backend in ("openai", "local") else None
    rows = explain(source, neurons, a.out, methods=ms, backend=a.explain_backend, rounds=a.rounds,
                   progress=not a.quiet, llm=llm, shard=a.shard)
    for m in ms:
        sc = [r["heldout"]["score"] or 0.0 for r in rows if r["method"] == m and r.get("heldout")]  # null → 0
        nm = [sum(1 for x in r["explanation"]["modes"] if x.get("conditions") and x.get("kind", "mode") == "mode")
              for r in rows if r["method"] == m and "explanation" in r]
        failed = sum(1 for r in rows if r["method"] == m and "error" in r)
        if failed:
            print(f"{m:>12}: {failed} neurons failed (their lines carry the error; a rerun retries them)")
        if sc:
            print(f"{m:>12}: {len(sc)} neurons, held-out score mean {np.mean(sc):.3f}, meanings mean {np.mean(nm):.2f}")
    print(f"explanations -> {a.out}")
    return 0


def _cmd_export(a: argparse.Namespace) -> int:
    from .interop.export import export

    paths = export(_source(a), a.explanations, a.format, a.out, simulator=a.simulator, method=a.method,
                   delphi_scorers=tuple(methods(a.delphi_scorers)))
    print(f"{len(paths)} files ({a.format} layout) -> {a.out}")
    return 0


def _cmd_eval(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .eval import evaluate

    llm = llm_config(a) if a.explain_backend in ("openai", "local") else None
    evaluate(a.suite, methods(a.method), backend=a.explain_backend, store=a.store, out=a.out, n_real=a.n_real,
             seed=a.seed, rounds=a.rounds, llm=llm, progress=not a.quiet)
    print((Path(a.out) / "eval.md").read_text())
    print(f"report -> {Path(a.out) / 'eval.json'}")
    return 0


def _cmd_run(a: argparse.Namespace) -> int:
    from .pipeline import RunConfig, run

    llm = llm_config(a) if a.explain_backend in ("openai", "local") else None
    cfg = RunConfig(model=a.model, corpus=a.corpus, text_field=a.text_field, doc_split=a.doc_split, layers=a.layers,
                    k=a.k, max_tokens=a.max_tokens, seq_len=a.seq_len, batch_tokens=a.batch_tokens, device=a.device,
                    dtype=a.dtype, backend=a.backend, sample=a.sample, polysemantic=a.polysemantic, seed=a.seed,
                    methods=tuple(methods(a.method)), explain_backend=a.explain_backend, rounds=a.rounds, llm=llm)
    res = run(a.out, cfg, quiet=a.quiet)
    if a.quiet:  # the one line a quiet run still owes its user
        print(f"report -> {res.report.resolve().as_uri()}")
    return 0


def _cmd_report(a: argparse.Namespace) -> int:
    from .report.build import build_report

    page = build_report(a.run, a.out, store=a.store, explanations=a.explanations, progress=not a.quiet)
    print(f"report -> {page.resolve().as_uri()}")
    return 0


def _cmd_search(a: argparse.Namespace) -> int:
    from .search import search

    hits = search(a.query, a.run, k=a.k)
    if a.json:
        print(json.dumps([h.to_dict() for h in hits], indent=1))
        return 0
    print(f"{'sim':>5s} {'neuron':>8s} {'score':>6s}  mode")
    for h in hits:
        score = "—" if h.score is None else f"{h.score:.2f}"
        print(f"{h.similarity:5.3f} {h.layer:>3d}:{h.index:<4d} {score:>6s}  {h.label} — {h.description}")
    return 0


def _add_source(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="NeuronStore directory")
    src.add_argument("--records", help="directory of OpenAI neuron-explainer NeuronRecord JSON files")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the whole job: mine → screen → explain + score → search index → report")
    p.add_argument("--model", default="minilm", help="subject model: local directory, hub id, or 'minilm' (default)")
    p.add_argument("--corpus", default="pydoc", help="'pydoc' (default) or a corpus as for `mine`")
    p.add_argument("--text-field", default="text")
    p.add_argument("--doc-split", default="paragraph", choices=["paragraph", "line", "file"])
    p.add_argument("--layers", default="all")
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=None, help="stop mining after this many corpus tokens")
    p.add_argument("--seq-len", type=int, default=None)
    p.add_argument("--batch-tokens", type=int, default=8192)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--backend", default=None, choices=MINER_BACKENDS, help="miner implementation")
    p.add_argument("--sample", type=int, default=48, help="neurons sampled uniformly (seeded) across layers")
    p.add_argument("--polysemantic", type=int, default=16,
                   help="strongest candidates of the polysemanticity screen explained beside the sample")
    add_method(p, "neuronscope,single-pass", "explainer methods, comma-separated")
    add_explain_backend(p)
    add_llm_options(p)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/default", help="run directory (resumes)")
    p.add_argument("--quiet", action="store_true")
    p = sub.add_parser("report", help="static HTML report of a run (opens from file://)")
    p.add_argument("--run", required=True, help="run directory (store/ and explanations.jsonl)")
    p.add_argument("--store", default=None, help="NeuronStore instead of RUN/store")
    p.add_argument("--explanations", default=None, help="explanations file instead of RUN/explanations.jsonl")
    p.add_argument("--out", default=None, help="site directory (default RUN/report)")
    p.add_argument("--quiet", action="store_true")
    p = sub.add_parser("search", help="neurons whose mode descriptions are nearest to a query")
    p.add_argument("query")
    p.add_argument("--run", required=True, help="run directory holding search/")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", action="store_true")


def _add_explain_score_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score explanations on held-out activations (Pearson, per mode and whole)")
    _add_source(p)
    p.add_argument("--explanations", required=True, help="explanations .jsonl (or .json) file")
    add_method(p, None, "score only these methods of the file (comma-separated; default: all)")
    p.add_argument("--simulator", default="exec", choices=["exec", "embed", "llm"])
    add_llm_options(p, legacy_model=True)
    p.add_argument("--seed", type=int, default=0, help="seed of the random evidence windows")
    p.add_argument("--out", default=None, help="scores .jsonl (default: beside the explanations); resumes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = sub.add_parser("explain", help="explain neurons (NeuronScope agent loop or the single-pass baseline)")
    _add_source(p)
    p.add_argument("--neurons", default="sample:20", help="L:I, L:I-J, layer:L, all or sample:N (default sample:20)")
    add_method(p, "neuronscope", "neuronscope, single-pass (token table), top-tokens, comma-separated")
    add_explain_backend(p, legacy_backend=True)
    add_llm_options(p, legacy_model=True)
    p.add_argument("--rounds", type=int, default=4, help="refinement round budget")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="explain only shard K (0 … N-1) of N: N machines or servers split --neurons without overlap, "
                        "and their outputs concatenate into one run's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="explanations .jsonl (resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = sub.add_parser("export", help="write explanations and held-out scores in OpenAI's or delphi's layout")
    _add_source(p)
    p.add_argument("--explanations", required=True, help="explanations .jsonl (explain output or plain)")
    add_method(p, None, "export only this method of the file (delphi keeps one explanation per neuron, so a "
                        "file with several methods needs it there)")
    p.add_argument("--format", required=True, choices=["openai", "delphi"])
    p.add_argument("--simulator", default="exec", choices=["exec", "embed"])
    p.add_argument("--delphi-scorers", default="simulation,detection",
                   help="delphi score files to write: simulation, detection or both (default both)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="planted-neuron and real-neuron evaluation of the explainers, side by side")
    p.add_argument("--suite", default="all", choices=["planted", "real", "all"])
    add_method(p, "top-tokens,single-pass,neuronscope", "explainer methods, comma-separated", legacy_plural=True)
    add_explain_backend(p, legacy_backend=True)
    add_llm_options(p, legacy_model=True)
    p.add_argument("--store", default="runs/minilm", help="base store (mined on the embedded default if missing)")
    p.add_argument("--n-real", type=int, default=200, help="real neurons sampled across all layers")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--quiet", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuronscope", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_mine(sub)
    _add_run(sub)
    p = sub.add_parser("info", help="summarise a NeuronStore")
    p.add_argument("store")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("merge", help="merge stores mined over disjoint parts of one corpus")
    p.add_argument("stores", nargs="+")
    p.add_argument("--out", required=True)
    p = sub.add_parser("neuron", help="show one neuron's statistics and top exemplars")
    p.add_argument("store")
    p.add_argument("layer", type=int)
    p.add_argument("index", type=int)
    p.add_argument("--show", type=int, default=10)
    p.add_argument("--no-acts", action="store_true", help="do not recompute context activations")
    _add_explain_score_export(sub)
    _add_eval(sub)
    p = sub.add_parser("verify", help="check a NeuronStore thoroughly: every token id, every tensor, and a "
                       "sample of top-k values recomputed with the model (exit 1 and one line per problem)")
    p.add_argument("store")
    p.add_argument("--sample", type=int, default=16, help="top-k values recomputed per layer (0: no model run)")
    p.add_argument("--model", default=None, help="the subject model, when the store's has moved (default: "
                   "$NEURONSCOPE_MODEL, else the manifest's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the recomputed sample")
    _add_bench(sub)
    for p in sub.choices.values():  # wherever a subject model is named, pickle weights need an explicit yes
        if any("--model" in act.option_strings for act in p._actions):
            p.add_argument("--allow-pickle", action="store_true",
                           help="load pickle weights (pytorch_model.bin) when a model has no safetensors: "
                                "unpickling can run code, so only for weights you trust")
    return parser


def _cmd_verify(a: argparse.Namespace) -> int:
    from .verify import verify_store

    report = verify_store(a.store, sample=a.sample, seed=a.seed, model=a.model, device=a.device)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1


COMMANDS = {"run": _cmd_run, "report": _cmd_report, "search": _cmd_search, "eval": _cmd_eval,
            "verify": _cmd_verify, "export": _cmd_export, "explain": _cmd_explain, "mine": _cmd_mine, "info": _cmd_info,
            "merge": _cmd_merge, "neuron": _cmd_neuron, "score": _cmd_score, "bench": _cmd_bench}


_RESUMES = "rerun the same command to resume: what finished is kept"
INTERRUPTED = {
    "mine": "rerun the same command to resume from the last checkpoint",
    "run": "rerun the same command to resume: each stage keeps what it finished (mining from its last checkpoint)",
    "explain": _RESUMES + " in --out, and only the missing neurons are done", "score": _RESUMES + " in --out",
    "eval": _RESUMES + " (explanations are resumed in --out)",
    "report": "the report was not finished (it has no checkpoint, and the pages written so far may mix old and "
              "new); rerun the same command to build it whole",
}
"""What Ctrl-C leaves behind and what to do, per command (a command not named here resumes nothing)."""
_INTERRUPTED_OTHER = "nothing is resumed; rerun the command to start it again"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "allow_pickle", False):  # read by models.loading, also when a store reloads its model
        import os

        os.environ["NEURONSCOPE_ALLOW_PICKLE"] = "1"
    try:
        return COMMANDS[args.command](args)
    except NeuronscopeError as e:
        print(f"neuronscope {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {INTERRUPTED.get(args.command, _INTERRUPTED_OTHER)}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
