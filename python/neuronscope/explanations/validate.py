"""Field validators of the explanation JSON: each names the path of the offending field."""

from __future__ import annotations

from typing import Any

from ..errors import ExplanationError
from .patterns import compile_pattern


def tokens_field(values: Any, where: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, (list, tuple, set, frozenset)):
        raise ExplanationError(f"{where}.tokens must be a list of strings, got {type(values).__name__}")
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise ExplanationError(f"{where}.tokens[{i}] must be a string, got {type(v).__name__}")
        out.append(v)
    if not out:
        raise ExplanationError(f"{where}.tokens is empty")
    return tuple(sorted(set(out)))


def pattern_field(pattern: Any, case_sensitive: bool, where: str) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise ExplanationError(f"{where}.pattern must be a non-empty string")
    try:
        compile_pattern(pattern, case_sensitive)  # valid, and not too slow (see patterns.py)
    except ExplanationError as e:
        raise ExplanationError(f"{where}.{e}") from None
    return pattern


def int_field(value: Any, lo: int, hi: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ExplanationError(f"{where} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def bool_field(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ExplanationError(f"{where} must be true or false, got {value!r}")
    return value


def check_keys(d: dict, allowed: set[str], where: str) -> None:
    extra = set(d) - allowed
    if extra:
        raise ExplanationError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")


def float_field(value: Any, where: str, default: float | None = None) -> float:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ExplanationError(f"{where} must be a finite number, got {value!r}")
    return float(value)
