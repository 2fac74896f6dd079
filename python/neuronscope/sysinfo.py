"""What the machine says about memory: the few ``/proc`` fields the cache budget and the benchmarks read."""

from __future__ import annotations

import os


def proc_kib(path: str, key: str) -> int | None:
    """The ``key:`` line of a ``/proc`` file in bytes (its value is in KiB), or None where there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def total_memory_bytes() -> int:
    """Physical memory (0 where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0
