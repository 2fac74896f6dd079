"""The scaling curve: mine growing corpora (e.g. 1M, 4M, 16M tokens) and record what grows.

Each size is mined in its own subprocess (``python -m neuronscope.bench.scaling``), so that its peak RSS
is its own. Per size: tokenize seconds, mining tokens/s, peak RSS (after building the model, after
tokenizing, after mining), the store's size without and with the token store, and the time to open the
store and read one neuron's record (``store.neuron()``, median over 20 neurons). Throughput and memory
should stay flat; the store should grow with neurons, not tokens; only the token store grows with tokens.

The corpus is synthetic on purpose: documents of words drawn independently from the pydoc corpus's word
frequencies, so every context is new (a repeated corpus would put the same values at new positions, and
no top-k would change after the first copy). The default subject is a randomly initialised Llama (1 layer,
hidden 64, MLP 4096: the MLP width of a small real model, a hidden size a 2-core CPU can push millions of
tokens through); ``model=`` takes any name ``load_subject`` knows (e.g. ``smollm2-135m``).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RANDOM_LLAMA = "random-llama"


def write_corpus(path: Path, tokens: int, *, seed: int = 0, words_per_doc: tuple[int, int] = (200, 2000)) -> int:
    """Writes a JSONL corpus of at least ``tokens`` MiniLM tokens (one word per token, plus 5%) and returns
    the number of words written. Words are drawn i.i.d. from the pydoc corpus's unigram frequencies."""
    from pydoc_data.topics import topics

    words, counts = np.unique(re.findall(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]", " ".join(topics.values())),
                              return_counts=True)
    p = counts / counts.sum()
    rng = np.random.default_rng(seed)
    want = int(tokens * 1.05) + 1  # MiniLM gives ~1.07 tokens per word of this mix: a 12% margin
    done = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        while done < want:
            n = int(rng.integers(*words_per_doc))
            f.write(json.dumps({"text": " ".join(words[rng.choice(len(words), size=n, p=p)].tolist())}) + "\n")
            done += n
    tmp.replace(path)
    return done


def _subject(model: str, hidden: int, width: int, layers: int, home: Path):
    """The subject; a random Llama is given a directory (``home``) holding its config and tokenizer, so that
    the store it is mined into can be read like any other (its tokenizer is found from the manifest)."""
    if model != RANDOM_LLAMA:
        from ..models import load_subject

        return load_subject(model)
    import torch
    from transformers import AutoModel, AutoTokenizer, LlamaConfig

    from ..models import resolve_model_path, wrap_subject

    tok = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=width, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    torch.manual_seed(0)
    model_ = AutoModel.from_config(cfg, attn_implementation="sdpa")
    home = home / f"{RANDOM_LLAMA}-h{hidden}-f{width}-l{layers}"
    tok.save_pretrained(home)
    cfg.save_pretrained(home)
    return wrap_subject(model_, tok, model_id=str(home.resolve()))


def measure(corpus: Path, out: Path, tokens: int, *, model: str = RANDOM_LLAMA, hidden: int = 64,
            width: int = 4096, layers: int = 1, batch_tokens: int = 8192, progress: bool = True) -> dict[str, Any]:
    """One point of the curve, measured in this process (run it in a fresh one: RSS peaks are per process)."""
    import shutil

    from ..corpus import CorpusSpec, build_token_store
    from ..mining.run import mine
    from ..store import open_store
    from .common import dir_bytes, peak_rss_bytes

    shutil.rmtree(out, ignore_errors=True)
    subject = _subject(model, hidden, width, layers, out.parent)
    rss_model = peak_rss_bytes()
    spec = CorpusSpec(str(corpus))
    t = time.perf_counter()
    build_token_store(spec, subject.tokenizer, out / "tokens", max_tokens=tokens, progress=progress)
    tokenize_s = time.perf_counter() - t
    rss_tok = peak_rss_bytes()
    t = time.perf_counter()
    store = mine(subject, spec, out, max_tokens=tokens, batch_tokens=batch_tokens, progress=progress)
    mine_s = time.perf_counter() - t
    rss_mine = peak_rss_bytes()
    seen = int(store.manifest["tokens_seen"])
    t = time.perf_counter()
    store = open_store(out)
    open_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    picks = [(int(rng.choice(store.layers)), int(rng.integers(store.n_neurons))) for _ in range(21)]
    store.neuron(*picks[0])  # loads the tokenizer once: not a per-neuron cost
    times = []
    for layer, index in picks[1:]:
        t = time.perf_counter()
        store.neuron(layer, index)
        times.append(time.perf_counter() - t)
    return {
        "tokens": seen, "neurons": len(store.layers) * store.n_neurons, "tokenize_seconds": round(tokenize_s, 2),
        "mine_seconds": round(mine_s, 2), "mined_tokens_per_s": round(seen / mine_s, 1),
        "peak_rss_model_mib": round(rss_model / 2**20, 1), "peak_rss_tokenize_mib": round(rss_tok / 2**20, 1),
        "peak_rss_mib": round(rss_mine / 2**20, 1),
        "store_bytes_without_tokens": dir_bytes(out, exclude=("tokens",)),
        "token_store_bytes": dir_bytes(out / "tokens"),
        "open_store_ms": round(open_s * 1e3, 2), "neuron_record_ms": round(statistics.median(times) * 1e3, 2),
    }


def bench_scaling(workdir: Path, sizes: list[int], *, model: str = RANDOM_LLAMA, hidden: int = 64, width: int = 4096,
                  layers: int = 1, progress: bool = True, keep: bool = False) -> dict[str, Any]:
    """The curve over ``sizes`` (tokens), one subprocess per size; see the module docstring."""
    import shutil

    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus.jsonl"
    t = time.perf_counter()
    words = write_corpus(corpus, max(sizes))
    corpus_s = time.perf_counter() - t
    points = []
    for n in sorted(sizes):
        out_json = workdir / f"point_{n}.json"
        cmd = [sys.executable, "-m", "neuronscope.bench.scaling", "--corpus", str(corpus), "--out",
               str(workdir / f"store_{n}"), "--tokens", str(n), "--model", model, "--hidden", str(hidden),
               "--width", str(width), "--layers", str(layers), "--json", str(out_json)]
        if not progress:
            cmd.append("--quiet")
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if progress else subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"scaling point {n} failed (exit {done.returncode}): {(done.stderr or '')[-2000:]}")
        points.append(json.loads(out_json.read_text()))
        if not keep:
            shutil.rmtree(workdir / f"store_{n}", ignore_errors=True)
    if not keep:
        corpus.unlink(missing_ok=True)
    first, last = points[0], points[-1]
    subject = (f"random Llama ({layers} layer{'s' if layers > 1 else ''}, hidden {hidden}, MLP {width})"
               if model == RANDOM_LLAMA else model)
    return {
        "subject": subject, "corpus": f"synthetic: {words:,} words i.i.d. from pydoc's word frequencies",
        "corpus_seconds": round(corpus_s, 2), "points": points,
        "growth_first_to_last": {
            "tokens": round(last["tokens"] / first["tokens"], 2),
            "mined_tokens_per_s": round(last["mined_tokens_per_s"] / first["mined_tokens_per_s"], 3),
            "peak_rss": round(last["peak_rss_mib"] / first["peak_rss_mib"], 3),
            "store_bytes_without_tokens": round(last["store_bytes_without_tokens"]
                                                / first["store_bytes_without_tokens"], 3),
            "token_store_bytes": round(last["token_store_bytes"] / first["token_store_bytes"], 3),
            "neuron_record_ms": round(last["neuron_record_ms"] / max(first["neuron_record_ms"], 1e-9), 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="one point of the scaling curve (run by neuronscope bench)")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--model", default=RANDOM_LLAMA)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--json", required=True)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    r = measure(Path(a.corpus), Path(a.out), a.tokens, model=a.model, hidden=a.hidden, width=a.width,
                layers=a.layers, progress=not a.quiet)
    Path(a.json).write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
