"""``neuronscope explain``: run an explainer over many neurons, one JSON line per neuron, resumable.

Each line: ``layer``, ``index``, ``method``, ``backend``, ``explanation`` (the Explanation's JSON),
``heldout`` (its exec score on the held-out split: Pearson, per mode, coverage), ``rounds`` (train and
held-out score per refinement round), ``transcript``, ``usage`` and ``seconds``; a neuron whose
explainer failed (an LLM error, say) gets a line with ``error`` instead, retried by the next run. The
stage driver (``stage.py``) does resume, chunks and atomic writes; the explainers (``explainers.py``)
sit behind one interface, offline or LLM alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from ..scoring.evidence import NeuronEvidence, WindowBatch
from ..scoring.run import EvidenceSource
from ..scoring.score import ScoreResult, score_batch
from ..stage import Stage, arun_stage, guarded
from .base import AgentConfig, AgentResult, Explainer
from .explainers import BACKENDS, METHODS, ExplainContext, make_explainer
from .threads import torch_threads

if TYPE_CHECKING:
    from ..llm import LLMConfig


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
        if b < a:
            raise ConfigError(f"bad neuron range {part!r}: the end comes before the start")
        for i in range(a, b + 1):
            if (layer, i) not in have:
                raise ConfigError(f"neuron {layer}:{i} is not in the source")
            out.append((layer, i))
    return sorted(set(out))


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``K/N`` (K = 0 … N-1, like a rank) or ``(K, N)``; None for no sharding."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
        if not m:
            raise ConfigError(f"bad shard {spec!r}: use K/N with K = 0 … N-1 (e.g. 0/4)")
        spec = (int(m.group(1)), int(m.group(2)))
    k, n = spec
    if n < 1 or not 0 <= k < n:
        raise ConfigError(f"bad shard {k}/{n}: N must be >= 1 and K in 0 … N-1")
    return k, n


def shard_neurons(neurons: Sequence[tuple[int, int]], shard: str | tuple[int, int] | None) -> list[tuple[int, int]]:
    """The neurons of shard K of N: neuron (layer, index) belongs to shard ``(layer * 1_000_003 + index) % N``.

    The owner depends on the neuron alone, not on the list or the machine, so N runs (one per machine or
    server) with the same ``--neurons`` split it without overlap or gap, and their JSON Lines outputs
    concatenate into exactly the rows one run would write (``cat shard-*.jsonl > all.jsonl``).
    """
    sh = parse_shard(shard)
    if sh is None:
        return list(neurons)
    k, n = sh
    return [(layer, i) for layer, i in neurons if (layer * 1_000_003 + i) % n == k]


_LOCAL_FIELDS = ("slots", "ctx_per_slot", "threads", "startup_timeout_s", "log_dir")


def llm_config(llm: LLMConfig | dict | None, out: Path) -> LLMConfig:
    """The LLM settings as an :class:`~neuronscope.llm.LLMConfig` (a dict of its fields is accepted), with the
    response cache beside ``out`` unless one is named."""
    from ..llm import LLMConfig

    if isinstance(llm, LLMConfig):
        return llm
    if not llm or not llm.get("model"):
        raise ConfigError("the openai backend needs --llm-model (and --base-url for a non-local server)")
    fields = {k: v for k, v in llm.items() if v is not None and k in LLMConfig.__dataclass_fields__}
    fields.setdefault("cache_path", str(out.with_suffix(".llmcache.sqlite")))
    return LLMConfig(**fields)


def explain(source: EvidenceSource, neurons: Sequence[tuple[int, int]], out: str | Path, *,
            methods: Sequence[str] = ("neuronscope",), backend: str = "offline", rounds: int = 4,
            chunk: int = 16, progress: bool = True, config: AgentConfig | None = None,
            llm: LLMConfig | dict | None = None, transport=None, cfg: AgentConfig | None = None,
            shard: str | tuple[int, int] | None = None) -> list[dict]:
    """Explains every neuron with every method and writes the JSON lines to ``out`` (see the module docstring).

    ``backend``: ``offline``, ``openai`` (any OpenAI-compatible server, set by ``llm``) or ``local`` (a
    llama.cpp server started for this call and stopped after it, on ``llm["model"]``: a built-in name such
    as ``qwen2.5-coder-1.5b`` or a ``.gguf`` file; ``llm`` may also set ``slots``, ``ctx_per_slot``,
    ``threads`` and any client field); ``config``: the loop's settings (default
    ``AgentConfig(rounds=rounds)``; ``cfg`` is its former name); ``shard``: ``K/N`` explains only shard K
    of N (:func:`shard_neurons`); ``transport``: an httpx transport for tests. Returns every row of the
    output file.
    """
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {m!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    out = Path(out)
    config = config or cfg or AgentConfig(rounds=rounds)
    neurons = shard_neurons(neurons, shard)
    if backend == "local":
        from ..llm.local import local_server

        fields = dict(llm) if isinstance(llm, dict) else (dataclasses.asdict(llm) if llm is not None else {})
        model = fields.pop("model", None)
        if not model:
            raise ConfigError("the local backend needs --llm-model (a built-in name such as qwen2.5-coder-1.5b, "
                              "or a .gguf file)")
        from ..llm import LLMConfig

        keep = {k: v for k, v in fields.items()
                if v is not None and (k in _LOCAL_FIELDS or k in LLMConfig.__dataclass_fields__)}
        keep.pop("concurrency", None)  # one request per server slot (``slots``)
        keep.setdefault("cache_path", str(out.with_suffix(".llmcache.sqlite")))
        keep.setdefault("log_dir", str(out.parent))
        with local_server(model, **keep) as server:  # stopped on return, on Ctrl-C and on error
            return asyncio.run(_explain(source, neurons, out, tuple(methods), backend, chunk, progress, config,
                                        server.config, transport))
    conf = llm_config(llm, out) if backend != "offline" else None
    return asyncio.run(_explain(source, neurons, out, tuple(methods), backend, chunk, progress, config, conf,
                                transport))


async def _explain(source, neurons, out: Path, methods: tuple[str, ...], backend: str, chunk: int, progress: bool,
                   config: AgentConfig, conf, transport) -> list[dict]:
    ctx = ExplainContext(source, config)
    async with contextlib.AsyncExitStack() as stack:
        client = None
        if conf is not None:
            from ..llm import LLMClient, ResponseCache

            cache = ResponseCache(conf.cache_path) if conf.cache_path else None
            if cache is not None:
                stack.callback(cache.close)
            client = await stack.enter_async_context(LLMClient(conf, cache=cache, transport=transport))
        explainers = {m: make_explainer(m, backend, ctx, client) for m in methods}
        # The layer's activation vectors at each neuron's strongest tokens come with the evidence pass.
        extra = {"feature_frac": config.active_frac} if "neuronscope" in methods and ctx.activations else {}

        async def compute(layer: int, indices: list[int], todo: set, emit) -> None:
            evs = source.evidence(layer, indices, **extra)
            jobs = [(ev, explainers[m]) for ev in evs for m in methods if (layer, ev.index, m) in todo]
            if client is None:  # offline: CPU-bound, one at a time
                for ev, ex in jobs:
                    emit(await _one(ctx, ev, ex, None))
            else:  # LLM: every request of the chunk in flight (the client bounds concurrency)
                for row in await asyncio.gather(*(_one(ctx, ev, ex, client) for ev, ex in jobs)):
                    emit(row)

        def prepare(layers: list[int]) -> bool | None:
            if ctx.activations is not None:  # one pass; evidence, features and probes become lookups
                return ctx.activations.prepare(layers)
            return None

        def postfix() -> dict:
            tot = client.usage.total
            return {"tokens": tot.prompt_tokens + tot.completion_tokens}

        stage = Stage(what="an explanations file", row_key=lambda r: (r["layer"], r["index"], r["method"]),
                      keys=lambda layer, i: [(layer, i, m) for m in methods], compute=compute,
                      desc=f"explain[{backend}]", chunk=chunk, prepare=prepare,
                      postfix=postfix if client is not None else None)
        return await arun_stage(stage, out, neurons, progress=progress)


async def _one(ctx: ExplainContext, ev: NeuronEvidence, explainer: Explainer, client) -> dict:
    """One (neuron, method): the explainer's result scored on held-out data, or a failure row."""
    tag = f"{ev.layer}/{ev.index}/{explainer.method}"
    fields = {"layer": ev.layer, "index": ev.index, "method": explainer.method, "backend": explainer.backend}

    def usage() -> dict:
        return {"usage": client.usage.summary_for(tag) if client is not None else {}}

    async def job() -> dict:
        res = await explainer.explain(ev)
        with torch_threads(1):  # small tensors: the thread pool only adds waits (see ``threads``)
            return score_row(res, ev, explainer.method, explainer.backend, ctx)

    if client is not None:
        from ..llm import usage_tag

        with usage_tag(tag):
            row = await guarded(fields, job(), usage)
    else:
        row = await guarded(fields, job(), usage)
    row.update(usage())
    return row


def score_row(res: AgentResult, ev: NeuronEvidence, method: str, backend: str, ctx: ExplainContext) -> dict:
    """The output line of one neuron: the explanation with its held-out exec scores written in."""
    held = WindowBatch.build(ev.heldout)
    e = res.explanation
    if e.executable:
        sc = score_batch([e], ctx.simulator.simulate([e], held), held, "exec")[0]
        d = sc.to_dict()  # undefined correlations are null in the output
        e.scores.update({"score": d["score"], "coverage": sc.coverage})
        for mode, s, c in zip(e.modes, d["mode_scores"], sc.mode_coverage, strict=False):
            mode.scores.update({"score": s, "coverage": c})
    else:  # nothing found: a constant prediction, which explains nothing (its correlation is undefined)
        sc = ScoreResult(ev.layer, ev.index, method, "exec", 0.0, n_tokens=held.n_tokens, n_windows=len(held.windows),
                         undefined=["score", "top_score"])
    return {"layer": ev.layer, "index": ev.index, "method": method, "backend": backend, "explanation": e.to_dict(),
            "heldout": sc.to_dict(), "rounds": res.round_scores, "transcript": res.transcript, "usage": {},
            "seconds": res.seconds}
