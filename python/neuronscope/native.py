"""The one door to the compiled core ``neuronscope._core`` (``csrc/``, built by ``CMakeLists.txt``).

No other module imports ``_core``: they call :func:`core`, which imports it on first use and checks
that it exports every member this package calls (:data:`MEMBERS`, the names of ``_core.pyi``). A
core that is missing, or stale (built from older sources, so lacking a newer function), is a
:class:`CoreUnavailableError` that says how to rebuild, instead of an ``ImportError`` at import time
or an ``AttributeError`` deep inside a call. ``import neuronscope`` works without the core; only
clustering and the CPU miner need it.
"""

from __future__ import annotations

from functools import cache
from types import ModuleType

from .errors import NeuronscopeError

__all__ = ["MEMBERS", "CoreUnavailableError", "available", "core", "unavailable_reason"]

MEMBERS = (
    "build_info", "cut_linkage", "detected_simd_level", "hardware_threads", "hierarchical", "kmeans", "mine_update",
    "pdist", "set_simd_level", "silhouette", "simd_level",
)
"""Every function of the compiled core (tests/test_core_stub.py checks this, ``_core.pyi`` and the build agree)."""

REBUILD = "python3 -m pip install --no-build-isolation --no-deps -e .  (or: bash scripts/install.sh)"


class CoreUnavailableError(NeuronscopeError, ImportError):
    """The compiled core is not built, or was built from older sources than this package."""


def check(module: ModuleType) -> ModuleType:
    """``module`` when it exports every name of :data:`MEMBERS`; CoreUnavailableError naming the rest."""
    missing = [name for name in MEMBERS if not hasattr(module, name)]
    if missing:
        where = getattr(module, "__file__", None) or "?"
        raise CoreUnavailableError(
            f"the compiled core at {where} is stale (built from older sources): it lacks {', '.join(missing)}; "
            f"rebuild it: {REBUILD}")
    return module


@cache
def _load() -> ModuleType | CoreUnavailableError:
    """The checked core, or the error that explains why there is none (imported once per process)."""
    try:
        from . import _core
    except ImportError as e:
        return CoreUnavailableError(f"neuronscope's compiled core (neuronscope._core) cannot be imported ({e}); "
                                    f"build it: {REBUILD}")
    try:
        return check(_core)
    except CoreUnavailableError as e:
        return e


def core() -> ModuleType:
    """The compiled core module; :class:`CoreUnavailableError` when it is missing or stale."""
    got = _load()
    if isinstance(got, CoreUnavailableError):
        raise got
    return got


def available() -> bool:
    """Whether :func:`core` succeeds."""
    return not isinstance(_load(), CoreUnavailableError)


def unavailable_reason() -> str | None:
    """Why the core is unavailable (the error message), or None when it is available."""
    got = _load()
    return str(got) if isinstance(got, CoreUnavailableError) else None
