"""The condition kinds of explanations (see ``model`` for the table and the JSON form): immutable, hashable,
validated on construction, parsed from JSON by :func:`condition_from_dict`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ExplanationError
from .validate import bool_field, check_keys, int_field, pattern_field, tokens_field

MAX_OFFSET = 32
"""Largest ``prev_token`` offset / ``preceding_regex`` window: evidence windows carry this much left context."""


def normalise(s: str, case_sensitive: bool = False) -> str:
    """The comparison key of a token string: markers and surrounding whitespace stripped, lower-cased unless asked."""
    s = s.strip()
    while s[:1] in ("Ġ", "▁", "Ċ"):
        s = s[1:]
    if s.startswith("##"):
        s = s[2:]
    s = s.strip()
    return s if case_sensitive else s.lower()


@dataclass(frozen=True)
class Condition:
    """Base class of the condition kinds; instances are immutable and hashable (used as cache keys)."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        """A short human-readable rendering, e.g. ``token ∈ {january, february}``."""
        raise NotImplementedError

    @property
    def max_offset(self) -> int:
        """How many tokens of left context evaluating this condition needs."""
        return 0


def _show(tokens: tuple[str, ...], limit: int = 8) -> str:
    shown = ", ".join(tokens[:limit]) + (f", … (+{len(tokens) - limit})" if len(tokens) > limit else "")
    return "{" + shown + "}"


@dataclass(frozen=True)
class TokenIn(Condition):
    """The current token is one of ``tokens``."""

    tokens: tuple[str, ...]
    case_sensitive: bool = False
    kind: ClassVar[str] = "token"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tokens_field(self.tokens, self.kind))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": list(self.tokens), "case_sensitive": self.case_sensitive}

    def describe(self) -> str:
        return f"token ∈ {_show(self.tokens)}"


@dataclass(frozen=True)
class TokenRegex(Condition):
    """The current normalised token matches ``pattern`` (``re.search``; use ``^…$`` to anchor)."""

    pattern: str
    case_sensitive: bool = False
    kind: ClassVar[str] = "token_regex"

    def __post_init__(self) -> None:
        pattern_field(self.pattern, self.case_sensitive, self.kind)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "pattern": self.pattern, "case_sensitive": self.case_sensitive}

    def describe(self) -> str:
        return f"token ~ /{self.pattern}/"


@dataclass(frozen=True)
class PrevTokenIn(Condition):
    """The token ``offset`` positions before the current one (same document) is one of ``tokens``."""

    tokens: tuple[str, ...]
    offset: int = 1
    case_sensitive: bool = False
    kind: ClassVar[str] = "prev_token"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tokens_field(self.tokens, self.kind))
        int_field(self.offset, 1, MAX_OFFSET, f"{self.kind}.offset")

    @property
    def max_offset(self) -> int:
        return self.offset

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": list(self.tokens), "offset": self.offset,
                "case_sensitive": self.case_sensitive}

    def describe(self) -> str:
        return f"token[-{self.offset}] ∈ {_show(self.tokens)}"


@dataclass(frozen=True)
class NextTokenIn(Condition):
    """The token right after the current one (same document, where the stream shows it) is one of ``tokens``.

    An encoder reads both sides (MiniLM), and even a decoder's activation on a word often correlates with what
    follows it in the text; false at a window's last token, whose successor the evidence does not hold."""

    tokens: tuple[str, ...]
    case_sensitive: bool = False
    kind: ClassVar[str] = "next_token"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tokens_field(self.tokens, self.kind))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": list(self.tokens), "case_sensitive": self.case_sensitive}

    def describe(self) -> str:
        return f"token[+1] ∈ {_show(self.tokens)}"


@dataclass(frozen=True)
class PrecedingRegex(Condition):
    """The text of the ``window`` tokens before the current one (same document) matches ``pattern``."""

    pattern: str
    window: int = 8
    case_sensitive: bool = False
    kind: ClassVar[str] = "preceding_regex"

    def __post_init__(self) -> None:
        pattern_field(self.pattern, self.case_sensitive, self.kind)
        int_field(self.window, 1, MAX_OFFSET, f"{self.kind}.window")

    @property
    def max_offset(self) -> int:
        return self.window

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "pattern": self.pattern, "window": self.window,
                "case_sensitive": self.case_sensitive}

    def describe(self) -> str:
        return f"preceding {self.window} tokens ~ /{self.pattern}/"


@dataclass(frozen=True)
class AllOf(Condition):
    """Every sub-condition holds."""

    conditions: tuple[Condition, ...]
    kind: ClassVar[str] = "all"

    def __post_init__(self) -> None:
        conds = tuple(self.conditions)
        if len(conds) < 2:
            raise ExplanationError("all.conditions needs at least two conditions")
        for i, c in enumerate(conds):
            if not isinstance(c, Condition):
                raise ExplanationError(f"all.conditions[{i}] is not a Condition")
        object.__setattr__(self, "conditions", conds)

    @property
    def max_offset(self) -> int:
        return max(c.max_offset for c in self.conditions)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "conditions": [c.to_dict() for c in self.conditions]}

    def describe(self) -> str:
        return " ∧ ".join(f"({c.describe()})" for c in self.conditions)


@dataclass(frozen=True)
class Position(Condition):
    """The token's position in its document (0: the first token) is in ``[start, stop)`` — position effects
    such as "the first few tokens of a document", which no token or context condition can express."""

    stop: int
    start: int = 0
    kind: ClassVar[str] = "position"

    def __post_init__(self) -> None:
        int_field(self.stop, 1, MAX_OFFSET, f"{self.kind}.stop")
        int_field(self.start, 0, self.stop - 1, f"{self.kind}.start")

    @property
    def max_offset(self) -> int:
        return self.stop  # knowing that a token is not among the first ``stop`` needs that much left context

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "stop": self.stop}

    def describe(self) -> str:
        return f"position ∈ [{self.start}, {self.stop})"


@dataclass(frozen=True)
class Not(Condition):
    """The sub-condition does not hold."""

    condition: Condition
    kind: ClassVar[str] = "not"

    def __post_init__(self) -> None:
        if not isinstance(self.condition, Condition):
            raise ExplanationError("not.condition is not a Condition")

    @property
    def max_offset(self) -> int:
        return self.condition.max_offset

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "condition": self.condition.to_dict()}

    def describe(self) -> str:
        return f"¬({self.condition.describe()})"


CONDITION_KINDS: dict[str, type[Condition]] = {c.kind: c for c in (TokenIn, TokenRegex, PrevTokenIn, NextTokenIn,
                                                                   PrecedingRegex, Position, AllOf, Not)}


def condition_from_dict(d: Any, where: str = "condition") -> Condition:
    """Parses and validates one condition; errors name the path of the bad field."""
    if not isinstance(d, dict):
        raise ExplanationError(f"{where} must be an object, got {type(d).__name__}")
    kind = d.get("kind")
    if kind not in CONDITION_KINDS:
        raise ExplanationError(f"{where}.kind must be one of {', '.join(CONDITION_KINDS)}, got {kind!r}")
    cs = bool_field(d.get("case_sensitive", False), f"{where}.case_sensitive")
    if kind == "token":
        check_keys(d, {"kind", "tokens", "case_sensitive"}, where)
        return TokenIn(tokens_field(d.get("tokens"), where), cs)
    if kind == "token_regex":
        check_keys(d, {"kind", "pattern", "case_sensitive"}, where)
        return TokenRegex(pattern_field(d.get("pattern"), cs, where), cs)
    if kind == "prev_token":
        check_keys(d, {"kind", "tokens", "offset", "case_sensitive"}, where)
        offset = int_field(d.get("offset", 1), 1, MAX_OFFSET, f"{where}.offset")
        return PrevTokenIn(tokens_field(d.get("tokens"), where), offset, cs)
    if kind == "next_token":
        check_keys(d, {"kind", "tokens", "case_sensitive"}, where)
        return NextTokenIn(tokens_field(d.get("tokens"), where), cs)
    if kind == "preceding_regex":
        check_keys(d, {"kind", "pattern", "window", "case_sensitive"}, where)
        return PrecedingRegex(pattern_field(d.get("pattern"), cs, where),
                              int_field(d.get("window", 8), 1, MAX_OFFSET, f"{where}.window"), cs)
    if kind == "position":
        check_keys(d, {"kind", "start", "stop"}, where)
        stop = int_field(d.get("stop"), 1, MAX_OFFSET, f"{where}.stop")
        return Position(stop, int_field(d.get("start", 0), 0, stop - 1, f"{where}.start"))
    if kind == "not":
        check_keys(d, {"kind", "condition"}, where)
        if "condition" not in d:
            raise ExplanationError(f"{where}.condition is missing")
        return Not(condition_from_dict(d["condition"], f"{where}.condition"))
    check_keys(d, {"kind", "conditions"}, where)
    subs = d.get("conditions")
    if not isinstance(subs, list) or len(subs) < 2:
        raise ExplanationError(f"{where}.conditions must be a list of at least two conditions")
    return AllOf(tuple(condition_from_dict(s, f"{where}.conditions[{i}]") for i, s in enumerate(subs)))
