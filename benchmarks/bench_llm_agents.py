"""The paper's experiment on this machine: NeuronScope-LLM against single-pass-LLM, one local agent LLM.

    python benchmarks/bench_llm_agents.py --llm-model qwen2.5-coder-1.5b --n-minilm 10 --n-smollm2 10 \\
        --n-planted 10 --out benchmarks/results/llm_agents.json

One llama.cpp server (``llm/local.py``) serves both explainers and the LLM simulator. Neurons: a sample of
real MiniLM and SmolLM2-135M neurons (stores mined on pydoc) and planted neurons with known modes (built on the
MiniLM store). Per neuron and method: held-out Score with the exec simulator (the explanation's conditions)
and with the LLM simulator (its labels and descriptions only, on ``--sim-windows`` held-out windows), modes
found, requests, tokens and wall time; per suite: means and the Wilcoxon signed-rank p of NeuronScope −
single-pass. The results JSON names the machine, the command and the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _store(model: str, out: Path, layers: list[int], tokens: int):
    from neuronscope import MiningConfig, mine, open_store

    if (out / "manifest.json").is_file():
        try:
            return open_store(out)
        except Exception:  # an unfinished store resumes
            pass
    return mine(model, "pydoc", out, layers=layers, config=MiningConfig(k=32), max_tokens=tokens, seq_len=128,
                progress=False)


def _modes(row: dict) -> int:
    return sum(1 for m in row.get("explanation", {}).get("modes", [])
               if m.get("conditions") and m.get("kind", "mode") == "mode")


async def _llm_scores(server_config, source, rows: list[dict], windows: int) -> dict:
    """LLM-simulator held-out score of each row's explanation text, on the first ``windows`` held-out windows."""
    from neuronscope.explanations import Explanation
    from neuronscope.llm import LLMClient
    from neuronscope.scoring import WindowBatch
    from neuronscope.scoring.llm_simulate import LLMSimulator
    from neuronscope.scoring.score import score_batch

    out: dict = {}
    async with LLMClient(server_config) as client:
        sim = LLMSimulator(client, source.vocab)
        for r in rows:
            if "explanation" not in r:
                continue
            e = Explanation.from_dict(r["explanation"])
            ev = source.evidence(r["layer"], [r["index"]])[0]
            held = WindowBatch.build(list(ev.heldout)[:windows])
            t0 = time.monotonic()
            sims = await sim.asimulate([e], held)
            res = score_batch([e], sims, held, "llm")[0]
            out[(r["layer"], r["index"], r["method"])] = {"score": res.score, "seconds": time.monotonic() - t0,
                                                          "tokens": held.n_tokens}
        out["_stats"] = dict(sim.stats)
        out["_method"] = sim.method
    return out


def _suite(name: str, source, neurons, out: Path, server, args, planted=None) -> dict:
    from neuronscope.agents import AgentConfig, explain
    from neuronscope.eval.metrics import wilcoxon

    t0 = time.monotonic()
    rows = explain(source, neurons, out / f"{name}.jsonl", methods=("neuronscope", "single-pass"), backend="openai",
                   config=AgentConfig(rounds=args.rounds, max_modes=args.max_modes), progress=True,
                   llm=server.config)
    explain_s = time.monotonic() - t0
    llm = asyncio.run(_llm_scores(server.config, source, rows, args.sim_windows))
    truth = {}
    if planted is not None:
        from neuronscope.eval.planted import read_ground_truth

        truth = {i: len(p.groups) or len(p.modes) for i, p in enumerate(read_ground_truth(planted))}
    items = []
    for r in rows:
        key = (r["layer"], r["index"], r["method"])
        u = r.get("usage", {})
        items.append({"layer": r["layer"], "index": r["index"], "method": r["method"], "error": r.get("error"),
                      "exec_score": (r.get("heldout") or {}).get("score"), "llm_score": llm.get(key, {}).get("score"),
                      "modes": _modes(r), "true_modes": truth.get(r["index"]),
                      "requests": u.get("requests", 0), "tokens": u.get("prompt_tokens", 0) + u.get(
                          "completion_tokens", 0), "seconds": r.get("seconds"),
                      "fallbacks": sum(1 for t in r.get("transcript", []) if t.get("role") == "fallback"),
                      "role_failures": sum(1 for t in r.get("transcript", []) if "error" in t),
                      "labels": [m.get("label") for m in r.get("explanation", {}).get("modes", [])][:6]})
    summary: dict = {"n_neurons": len(neurons), "explain_seconds": explain_s, "llm_simulator": llm.get("_method"),
                     "llm_simulator_stats": llm.get("_stats")}
    for m in ("neuronscope", "single-pass"):
        mine = [it for it in items if it["method"] == m]
        summary[m] = {k: float(np.mean([it[k] or 0.0 for it in mine])) if mine else None
                      for k in ("exec_score", "llm_score", "modes", "requests", "tokens", "seconds", "fallbacks",
                                "role_failures")}
        summary[m]["failed"] = sum(1 for it in mine if it["error"])
    for k in ("exec_score", "llm_score"):
        a = {(it["layer"], it["index"]): it[k] or 0.0 for it in items if it["method"] == "neuronscope"}
        b = {(it["layer"], it["index"]): it[k] or 0.0 for it in items if it["method"] == "single-pass"}
        common = sorted(set(a) & set(b))
        x, y = [a[c] for c in common], [b[c] for c in common]
        _, p = wilcoxon(x, y) if len(common) >= 2 else (float("nan"), float("nan"))
        summary[f"{k}_diff"] = {"mean": float(np.mean(np.subtract(x, y))) if common else None,
                                "better": int(np.sum(np.greater(x, y))), "worse": int(np.sum(np.less(x, y))),
                                "wilcoxon_p": p}
    return {"summary": summary, "neurons": items}


def table(doc: dict) -> str:
    """The README's markdown table of a results JSON."""
    lines = ["| neurons | method | Score exec | Score LLM-sim | modes | requests | tokens | s / neuron |",
             "|---|---|---|---|---|---|---|---|"]
    notes = []
    for name in ("minilm", "smollm2", "planted"):
        if name not in doc:
            continue
        sm = doc[name]["summary"]
        for m in ("neuronscope", "single-pass"):
            r = sm[m]
            lines.append(f"| {name} ({sm['n_neurons']}) | {m} | {r['exec_score']:.3f} | {r['llm_score']:.3f} | "
                         f"{r['modes']:.2f} | {r['requests']:.1f} | {r['tokens']:.0f} | {r['seconds']:.0f} |")
        d, e = sm["exec_score_diff"], sm["llm_score_diff"]
        notes.append(f"{name}: NeuronScope − single-pass, exec {d['mean']:+.3f} ({d['better']} better, {d['worse']} "
                     f"worse, Wilcoxon p = {d['wilcoxon_p']:.2g}); LLM-sim {e['mean']:+.3f} ({e['better']} better, "
                     f"{e['worse']} worse, p = {e['wilcoxon_p']:.2g})")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--table"]:
        print(table(json.loads(Path(sys.argv[2]).read_text())))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm-model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--n-minilm", type=int, default=10)
    ap.add_argument("--n-smollm2", type=int, default=10)
    ap.add_argument("--n-planted", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-modes", type=int, default=4)
    ap.add_argument("--sim-windows", type=int, default=4, help="held-out windows per explanation for the LLM sim")
    ap.add_argument("--tokens", type=int, default=20000, help="corpus tokens mined per store")
    ap.add_argument("--work", default="runs/bench_llm_agents")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/llm_agents.json")
    args = ap.parse_args(argv)

    from neuronscope.agents import parse_neurons
    from neuronscope.eval.planted import build_planted_store
    from neuronscope.llm.local import local_server
    from neuronscope.scoring.run import StoreSource

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.monotonic()
    minilm = _store("minilm", work / "minilm", [2, 3], args.tokens)
    smol = _store("smollm2-135m", work / "smollm2", [6, 18], args.tokens)
    planted = build_planted_store(minilm, work / "planted", seed=args.seed)
    suites = []
    if args.n_minilm:
        src = StoreSource(minilm)
        suites.append(("minilm", src, parse_neurons(f"sample:{args.n_minilm}", src, seed=args.seed), None))
    if args.n_smollm2:
        src = StoreSource(smol)
        suites.append(("smollm2", src, parse_neurons(f"sample:{args.n_smollm2}", src, seed=args.seed), None))
    if args.n_planted:
        src = StoreSource(planted)
        pick = np.linspace(0, planted.n_neurons - 1, min(args.n_planted, planted.n_neurons)).round().astype(int)
        suites.append(("planted", src, [(0, int(i)) for i in sorted(set(pick.tolist()))], planted))  # every family
    results: dict = {}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    def write(done: bool) -> None:  # after every suite, so a long run leaves what it measured
        doc = {"benchmark": "llm_agents", "command": " ".join(["python", "benchmarks/bench_llm_agents.py",
                                                                *(argv if argv is not None else sys.argv[1:])]),
               "commit": commit, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                             "python": platform.python_version()},
               "args": vars(args), "complete": done, "seconds": time.monotonic() - t_all, **results}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=1, default=str))

    with local_server(args.llm_model, log_dir=work, cache_path=str(work / "llm.llmcache.sqlite")) as server:
        results["server"] = {"model": args.llm_model, "slots": server.slots, "startup_s": server.started_s}
        for name, src, neurons, pl in suites:
            results[name] = _suite(name, src, neurons, work, server, args, pl)
            print(name, json.dumps(results[name]["summary"], default=str), flush=True)
            write(False)
    write(True)
    print(f"results -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
