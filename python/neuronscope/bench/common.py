"""What every benchmark section shares: the machine it ran on, the commit, timing and progress.

A section is a function returning a plain dict (JSON-ready). A section that cannot run here (no CUDA, no
compiled miner, no scipy) returns ``{"skipped": "<why>"}`` instead, so every section is always present in
the written JSON and a reader sees why a figure is missing.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..sysinfo import proc_kib, total_memory_bytes


def cpu_name() -> str:
    """The CPU model as the kernel names it (falls back to the architecture)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


CODE_PATHS = ("python", "kernels", "csrc", "benchmarks/*.py", "CMakeLists.txt", "pyproject.toml")


def git_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when its code differs from it), or None outside a checkout."""
    root = Path(__file__).resolve().parents[3]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        # Dirty = the code differs from the commit (a README edit changes no figure).
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                *CODE_PATHS], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """Where and how a benchmark ran: device, CPU, cores, library versions, commit and command."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({cpu_name()}, {usable_cpus()} cores)",
        "cpu": cpu_name(), "cpus": usable_cpus(), "torch_threads": torch.get_num_threads(),
        "memory_gib": round(total_memory_bytes() / 2**30, 1), "python": platform.python_version(),
        "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None, "host": platform.node(),
        "commit": git_commit(), "command": command_line(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def command_line() -> str:
    """The command as typed (``python -m neuronscope`` for the module entry point)."""
    prog = Path(sys.argv[0]).name
    if prog == "__main__.py":
        prog = "python -m " + (Path(sys.argv[0]).parent.name or "neuronscope")
    return " ".join([prog, *sys.argv[1:]])


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this program's own memory —
    ``ru_maxrss`` survives ``exec``, so a child started from a large parent would report the parent's size.
    Elsewhere ``ru_maxrss`` (macOS reports bytes, the others KiB)."""
    hwm = proc_kib("/proc/self/status", "VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def dir_bytes(path: Path, *, exclude: tuple[str, ...] = ()) -> int:
    """Bytes of every file under ``path``, skipping top-level entries named in ``exclude``."""
    total = 0
    for p in path.iterdir():
        if p.name in exclude:
            continue
        total += dir_bytes(p) if p.is_dir() else p.stat().st_size
    return total


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_calls(fn: Callable[[], object], reps: int, *, warmup: int = 1) -> list[float]:
    """Seconds of each of ``reps`` calls of ``fn`` after ``warmup`` untimed ones (device synchronised)."""
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


class Steps:
    """A progress bar over a section's steps (tqdm on a terminal or not; silent when ``enabled`` is False)."""

    def __init__(self, desc: str, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, leave=False)

    def __call__(self, what: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(what, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def skipped(why: str) -> dict[str, str]:
    return {"skipped": why}
