"""Benchmarks a user runs on their own hardware (``neuronscope bench``) and that ``benchmarks/`` reuses.

Every figure is measured against a baseline in the same process and the same run (a bare forward, the
reference miner, a numpy or scipy loop), over fresh inputs, and written with the machine, the command and
the commit that produced it.
"""

from .run import SECTIONS, run_bench, table

__all__ = ["SECTIONS", "run_bench", "table"]
