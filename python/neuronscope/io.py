"""Atomic, durable file and directory writes: a reader never sees a half-written file.

Every writer makes a hidden temp sibling (``.<name>.<random>.tmp``), fsyncs it, renames it over the
target and fsyncs the directory, so after a crash the target is the old or the new version, never a
mix. A kill can leave the temp sibling behind; :func:`remove_stale_temps` clears them (run it only while
holding the output, so no live writer's temp file is removed). Outputs get the modes a plain ``open()``
or ``mkdir()`` gives (0666 / 0777 less the umask), not ``mkstemp``'s 0600 / 0700.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are written: `import neuronscope` stays light
    import torch


def write_text(path: str | Path, text: str) -> None:
    """Writes UTF-8 text to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _commit(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_path(path: Path) -> None:
    """fsync of a file or directory by path (a directory's fsync makes its renames durable)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, path: Path) -> None:
    """Gives the fsynced temp file the mode of a plainly written file and renames it over ``path``, durably."""
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are as readable as any file written
    os.replace(tmp, path)
    _fsync_path(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_json(path: str | Path, obj: object) -> None:
    """Writes JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> None:
    """Writes a safetensors file atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        _fsync_path(Path(tmp))
        _commit(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _old(path: Path) -> Path:
    """Where :func:`atomic_dir` parks the previous version while it swaps in the new one."""
    return path.with_name(f".{path.name}.old")


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yields a temporary sibling directory that replaces ``path`` only if the block succeeds.

    Everything written inside is fsynced before the swap. A kill between the two renames of a swap
    leaves the previous version at ``.<name>.old``; :func:`remove_stale_temps` puts it back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        _fsync_tree(tmp)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        old = _old(path)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        _fsync_path(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
        _fsync_path(path.parent)


def _fsync_tree(root: Path) -> None:
    """fsync of every regular file and directory under ``root`` (files first, ``root`` last)."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            file = Path(dirpath, name)
            if file.is_file() and not file.is_symlink():
                _fsync_path(file)
        _fsync_path(Path(dirpath))


def _temp_target(name: str) -> str | None:
    """The entry a writer's temp name stands for: ``.<target>.<random>.tmp`` or ``.<target>.old``."""
    if not name.startswith("."):
        return None
    if name.endswith(".old"):
        return name[1 : -len(".old")] or None
    if name.endswith(".tmp") and "." in name[1 : -len(".tmp")]:
        return name[1 : -len(".tmp")].rsplit(".", 1)[0] or None
    return None


def remove_stale_temps(directory: str | Path, owned: Callable[[str], bool] = lambda target: True) -> list[str]:
    """Removes the temp siblings a killed writer of this module left in ``directory`` (returns their names).

    ``owned(target)`` limits it to the temp entries of targets the caller writes (e.g. a store's files).
    A previous version parked by an interrupted :func:`atomic_dir` swap is moved back when its target is
    missing. Call only while no other process writes ``directory`` (hold its output lock).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for entry in sorted(directory.iterdir()):
        target = _temp_target(entry.name)
        if target is None or not owned(target):
            continue
        if entry.name.endswith(".old") and not (directory / target).exists():
            os.replace(entry, directory / target)  # a swap killed between its renames: keep the previous version
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Writes dicts as JSON Lines atomically."""
    write_text(path, "".join(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n" for row in rows))


def read_jsonl(path: str | Path, what: str = "JSON Lines") -> list[dict]:
    """The rows of a JSON Lines output file ([] when it does not exist yet); a corrupt line is a StoreError
    naming the file and line, so a resumed run never overwrites a file it cannot read."""
    from .errors import StoreError

    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise StoreError(f"{path}:{n} is not {what}; remove the file or choose another --out") from None
        if not isinstance(row, dict):
            raise StoreError(f"{path}:{n} is not {what} (a line holds {type(row).__name__}, not an object)")
        rows.append(row)
    return rows


def fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes (what a saved index or report was built from)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
