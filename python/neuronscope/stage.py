"""One driver for every per-neuron stage (``explain``, ``score``): resume, chunks, failure records, retries,
atomic JSON Lines writes and progress.

A stage's output is one JSON Lines file of rows, each keyed (e.g. ``(layer, index, method)``). The
driver reads what is there, drops failure rows (rows with an ``error`` field: they are retried), works
through what is missing layer by layer in chunks of neurons, and rewrites the file atomically after every
chunk — and on the way out, whatever stopped the run (Ctrl-C, an error), so a rerun loses nothing that
finished. A neuron whose work raises a :class:`~neuronscope.errors.NeuronscopeError` becomes a failure
row naming the error; the others go on. The output's directory is checked for writing before any work;
if a write fails later (a full disk, say), the computed rows go to ``<out>.recovery`` beside it and the
next run takes them back, so computed work is never thrown away. One writer per output: the driver holds
an advisory lock (``<out>.lock``, with its PID) for the whole run; a second run on the same output is
refused with the holder's PID, and a lock left by a dead process is free again (the OS drops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, NeuronscopeError, StoreError
from .io import read_jsonl, write_jsonl

Key = tuple[Hashable, ...]
Emit = Callable[[dict], None]
ChunkFn = Callable[[int, list[int], set[Key], Emit], Awaitable[None]]
"""``compute(layer, indices, todo, emit)``: do the ``todo`` keys of these neurons, ``emit`` each finished row."""


@dataclass
class Stage:
    """What a stage is: how its rows are keyed, which keys each neuron needs, how a chunk is computed."""

    what: str
    """The output's kind, for messages ("an explanations file")."""
    row_key: Callable[[dict], Key]
    keys: Callable[[int, int], list[Key]]
    """The keys one neuron (layer, index) must have in the output."""
    compute: ChunkFn
    desc: str = "stage"
    """Progress bar label."""
    chunk: int = 16
    prepare: Callable[[list[int]], bool | None] | None = None
    """Called with the layers that have work, before any chunk (e.g. one caching forward pass); when it returns
    False (the cache would not fit in memory), it is called again with one layer before that layer's chunks."""
    postfix: Callable[[], dict] | None = None
    """Extra progress fields after each chunk (e.g. LLM tokens)."""
    retry_failed: bool = True
    failures: list[dict] = field(default_factory=list)


def failure_row(fields: dict, exc: BaseException, **extra: object) -> dict:
    """The row recorded for a neuron whose work failed: its key fields, ``error`` (credential-shaped strings
    redacted: an error may quote what a server said) and anything in ``extra``."""
    from .llm.redact import redact

    return {**fields, "error": redact(f"{type(exc).__name__}: {exc}"), **extra}


async def guarded(fields: dict, job: Awaitable[dict], on_error: Callable[[], dict] | None = None) -> dict:
    """``await job``; a NeuronscopeError becomes :func:`failure_row` (plus ``on_error()``'s fields)."""
    try:
        return await job
    except NeuronscopeError as e:
        return failure_row(fields, e, **(on_error() if on_error is not None else {}))


def recovery_path(out: Path) -> Path:
    """Where computed rows go when ``out`` cannot be written (taken back by the next run)."""
    return out.with_name(out.name + ".recovery")


def check_writable(out: Path) -> None:
    """Fails before any work when ``out`` cannot be written (a directory, or an unwritable folder)."""
    if out.is_dir():
        raise ConfigError(f"{out} is a directory; --out must name a file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.writable"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write {out}: {e.strerror or e}; choose another --out") from None


def _write(out: Path, rows: list[dict], what: str) -> None:
    """Writes the rows; on failure keeps them in the recovery file and says so in one line."""
    try:
        write_jsonl(out, rows)
    except OSError as e:
        rec = recovery_path(out)
        try:
            write_jsonl(rec, rows)
        except OSError:
            raise StoreError(f"cannot write {what} {out} ({e.strerror or e}) nor its recovery file; "
                             f"{len(rows)} computed rows are lost") from None
        raise StoreError(f"cannot write {out} ({e.strerror or e}); the {len(rows)} rows computed so far are in "
                         f"{rec}, which the next run takes back") from None
    recovery_path(out).unlink(missing_ok=True)


@contextlib.contextmanager
def output_lock(out: Path):
    """Holds an exclusive advisory lock on ``<out>.lock`` (holder's PID inside) for the block."""
    import fcntl

    lock = out.with_name(out.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(f"{out} is being written by another process (PID {holder}); wait for it or choose "
                              "another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read_key(stage: Stage, row: dict, out: Path) -> Key:
    try:
        return stage.row_key(row)
    except (KeyError, TypeError) as e:
        raise StoreError(f"{out}: a line of {stage.what} lacks its key field {e} ({str(row)[:80]})") from None


async def arun_stage(stage: Stage, out: str | Path, neurons: Sequence[tuple[int, int]], *,
                     progress: bool = True) -> list[dict]:
    """Runs (or resumes) ``stage`` for ``neurons`` into ``out``; returns every row of the output."""
    out = Path(out)
    check_writable(out)
    with output_lock(out):
        return await _run_locked(stage, out, neurons, progress)


async def _run_locked(stage: Stage, out: Path, neurons: Sequence[tuple[int, int]], progress: bool) -> list[dict]:
    rows = read_jsonl(out, stage.what)
    rec = recovery_path(out)
    if rec.exists():  # rows a failed write left behind: every row of the output as it was then, and more
        rows = read_jsonl(rec, stage.what)
    keyed = [(_read_key(stage, r, out), r) for r in rows]
    if stage.retry_failed:
        keyed = [(k, r) for k, r in keyed if "error" not in r]
    rows = [r for _, r in keyed]
    done = {k for k, _ in keyed}
    by_layer: dict[int, list[int]] = {}
    todo: dict[tuple[int, int], set[Key]] = {}
    for layer, index in neurons:
        need = {k for k in stage.keys(layer, index) if k not in done}
        if need and (layer, index) not in todo:
            todo[(layer, index)] = need
            by_layer.setdefault(layer, []).append(index)
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="neuron", desc=stage.desc, dynamic_ncols=True)
    try:
        # Every layer's cache in one pass when memory allows; else one layer at a time (prepare said False).
        whole = not (todo and stage.prepare is not None) or stage.prepare(sorted(by_layer)) is not False
        for layer, indices in sorted(by_layer.items()):
            if not whole:
                stage.prepare([layer])  # type: ignore[misc]
            for a in range(0, len(indices), stage.chunk):
                part = indices[a : a + stage.chunk]
                want = set().union(*(todo[(layer, i)] for i in part))
                await stage.compute(layer, part, want, rows.append)
                _write(out, rows, stage.what)
                if bar is not None:
                    if stage.postfix is not None:
                        bar.set_postfix(**stage.postfix(), refresh=False)
                    bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
        if todo:
            _write(out, rows, stage.what)  # also on Ctrl-C or an error: every finished row stays
    stage.failures = [r for r in rows if "error" in r]
    return rows


def run_stage(stage: Stage, out: str | Path, neurons: Sequence[tuple[int, int]], *,
              progress: bool = True) -> list[dict]:
    """Blocking :func:`arun_stage`."""
    return asyncio.run(arun_stage(stage, out, neurons, progress=progress))
