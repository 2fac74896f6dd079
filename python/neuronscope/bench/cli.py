"""The ``neuronscope bench`` command: its options and its handler (argparse only at import time)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark mining, scoring and clustering on this machine (CPU or GPU)")
    p.add_argument("--quick", action="store_true", help="about a minute: small sizes, MiniLM only")
    p.add_argument("--out", default="neuronscope_bench.json", help="JSON result (rewritten after every section)")
    p.add_argument("--only", default=None, help="comma-separated sections (mining, miner, scoring, clustering, "
                                                "gpu, scaling); default all")
    p.add_argument("--model", action="append", default=None,
                   help="a model to mine (repeatable): a built-in name or a local directory; default MiniLM and, "
                        "when installed, SmolLM2-135M (MiniLM only with --quick)")
    p.add_argument("--scaling-sizes", default=None,
                   help="corpus sizes of the scaling curve, e.g. 1M,4M,16M (default 131k,524k,2.1M; quick 16k,64k)")
    p.add_argument("--scaling-model", default="random-llama",
                   help="subject of the scaling curve: random-llama (1 layer, hidden 64, MLP 4096) or a model name")
    p.add_argument("--workdir", default=None, help="keep scratch stores here (default: a temporary directory)")
    p.add_argument("--no-progress", action="store_true")


def command(a: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from .run import SECTIONS, parse_size, run_bench, table

    sections = tuple(s.strip() for s in a.only.split(",")) if a.only else SECTIONS
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ConfigError(f"--only: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
    try:
        sizes = [parse_size(s) for s in a.scaling_sizes.split(",")] if a.scaling_sizes else None
    except ValueError as e:
        raise ConfigError(f"--scaling-sizes: {e}") from None
    out = Path(a.out)
    result = run_bench(out, quick=a.quick, sections=sections, models=a.model, scaling_sizes=sizes,
                       scaling_model=a.scaling_model, workdir=Path(a.workdir) if a.workdir else None,
                       progress=not a.no_progress, log=lambda s: print(s, file=sys.stderr))
    print(f"neuronscope bench on {result['machine']['device']} (commit {result['machine']['commit']})")
    print(table(result))
    print(f"wrote {out}")
    return 1 if result["failed"] else 0
