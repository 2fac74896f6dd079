"""Mining throughput as a user sees it: fresh corpus tokens through ``mining.mine()`` itself, against a bare
forward of the same model over the same batches, in the same process.

Two phases are reported, because the miner's cost depends on how often a token enters a neuron's top-k:

* **early**: the first ``early_tokens`` of the corpus, mined into empty statistics — nearly every token is
  a top-k insert at first;
* **steady**: the rest, where inserts are rare (the expected number of inserts per neuron after ``n``
  tokens falls like ``k / n``).

Both come from ``mine()`` runs on the same corpus prefix: one over ``early_tokens`` and one over all
``tokens``; steady = (all - early) tokens / (all - early) seconds. Each run is timed whole (wall clock
around ``mine()``: statistics, checkpoints and the store's final write included); the token store is built
before the clock starts (tokenizing is not mining) and the model is loaded once. The bare forward runs
the same packed batches twice (before and after mining) and the faster pass is kept, per phase.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from .common import Steps


def bench_mining(model: str, workdir: Path, *, tokens: int, early_tokens: int, batch_tokens: int = 8192,
                 backend: str | None = None, corpus: str = "pydoc", repeats: int = 1,
                 progress: bool = True) -> dict[str, Any]:
    """Tokens/s of ``mine()`` vs a bare forward of ``model`` over ``tokens`` tokens of ``corpus``.

    Returns ``{"model", "neurons_mined", "tokens", "early": {...}, "steady": {...}, ...}``: per phase the
    tokens, seconds and tokens/s of mining and of the bare forward, and ``ratio_to_bare`` (mined tok/s
    over bare tok/s; 1.0 = mining is free). ``repeats``: each ``mine()`` run (and each bare pass, one more
    than that) is repeated into a fresh directory and the fastest kept — timing noise on a shared machine is
    one-sided, it only ever adds time.
    """
    import torch

    from ..corpus import CorpusSpec, build_token_store
    from ..corpus.packing import make_packing
    from ..mining.run import mine
    from ..models import load_subject

    steps = Steps(f"bench mining {model}", 4 + 2 * repeats, progress)
    try:
        t = time.perf_counter()
        subject = load_subject(model)
        load_s = time.perf_counter() - t
        steps("model loaded")
        spec = CorpusSpec(corpus)
        runs = {"early": workdir / "early", "all": workdir / "all"}
        for name, n in (("early", early_tokens), ("all", tokens)):
            shutil.rmtree(runs[name], ignore_errors=True)
            build_token_store(spec, subject.tokenizer, runs[name] / "tokens", max_tokens=n)
        steps("tokenized")
        pk = make_packing(subject.tokenizer, subject.model.config, None, "stream")
        from ..corpus.tokenstore import TokenStore

        ts = TokenStore(runs["all"] / "tokens")
        n_early = TokenStore(runs["early"] / "tokens").n_tokens
        starts, lengths = pk.sequences(ts)
        per = max(1, batch_tokens // pk.seq_len)
        extra = {"use_cache": False} if subject.spec.kind != "bert" else {}

        def bare() -> tuple[float, float]:
            """(seconds over the early prefix, seconds over the rest) of the bare forward."""
            early_s = rest_s = 0.0
            seen = 0
            with torch.inference_mode():
                for i in range(0, len(starts), per):
                    ids, mask, _, _ = pk.batch(ts, starts[i : i + per], lengths[i : i + per])
                    t = time.perf_counter()
                    subject.model(input_ids=ids, attention_mask=mask, **extra)
                    dt = time.perf_counter() - t
                    n = int(lengths[i : i + per].sum())
                    # A batch straddling the phase boundary is split by its share of tokens.
                    share = min(max(n_early - seen, 0), n) / n
                    early_s += dt * share
                    rest_s += dt * (1 - share)
                    seen += n
            return early_s, rest_s

        with torch.inference_mode():  # the first forward pays allocations and kernel selection: not timed
            ids, mask, _, _ = pk.batch(ts, starts[:per], lengths[:per])
            subject.model(input_ids=ids, attention_mask=mask, **extra)
        bares = [bare()]
        steps("bare forward")
        wall: dict[str, float] = {"early": float("inf"), "all": float("inf")}
        seen: dict[str, int] = {}
        for r in range(repeats):
            for name, n in (("early", early_tokens), ("all", tokens)):
                for leftover in runs[name].iterdir():  # a fresh store each time; the token store is kept
                    if leftover.name != "tokens" and leftover.is_dir():
                        shutil.rmtree(leftover)
                    elif leftover.name != "tokens":
                        leftover.unlink()
                t = time.perf_counter()
                store = mine(subject, spec, runs[name], max_tokens=n, batch_tokens=batch_tokens, backend=backend,
                             progress=progress, checkpoint_seconds=300.0)
                wall[name] = min(wall[name], time.perf_counter() - t)
                seen[name] = int(store.manifest["tokens_seen"])
            steps(f"mined, round {r + 1}")
            bares.append(bare())
            steps(f"bare forward, round {r + 1}")
        backend_name = store.manifest.get("backend")
    finally:
        steps.close()
    bare_early, bare_rest = min(b[0] for b in bares), min(b[1] for b in bares)
    steady_tokens = seen["all"] - seen["early"]
    steady_s = max(wall["all"] - wall["early"], 1e-9)
    out: dict[str, Any] = {
        "model": model, "architecture": subject.model_type, "layers": subject.n_layers,
        "neurons_mined": subject.n_layers * subject.n_neurons, "corpus": corpus, "tokens": seen["all"],
        "seq_len": pk.seq_len, "batch_tokens": batch_tokens, "backend": backend_name,
        "model_load_seconds": round(load_s, 2), "repeats": repeats,
        "early": _phase(seen["early"], wall["early"], bare_early),
        "steady": _phase(steady_tokens, steady_s, bare_rest),
    }
    out["whole"] = _phase(seen["all"], wall["all"], bare_early + bare_rest)
    with contextlib.suppress(OSError):
        shutil.rmtree(workdir)
    return out


def _phase(tokens: int, mined_s: float, bare_s: float) -> dict[str, float | int]:
    mined = tokens / mined_s if mined_s > 0 else float("nan")
    bare = tokens / bare_s if bare_s > 0 else float("nan")
    return {"tokens": tokens, "mined_seconds": round(mined_s, 3), "bare_seconds": round(bare_s, 3),
            "mined_tokens_per_s": round(mined, 1), "bare_tokens_per_s": round(bare, 1),
            "ratio_to_bare": round(mined / bare, 3) if bare == bare and bare > 0 else None}
