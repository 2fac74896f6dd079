"""Explanations as data: an Explanation is a list of Modes, a Mode fires where any of its Conditions holds.

Conditions are the "testable atomic conditions" of NeuronScope's decomposition step, kept executable:

===================  ==========================================================================
``token``            the current token is one of ``tokens`` (normalised strings, see ``vocab``)
``token_regex``      the current (normalised) token matches ``pattern`` (``re.search``)
``prev_token``       the token ``offset`` positions back (1 = previous) is one of ``tokens``
``preceding_regex``  the text of the ``window`` tokens before the current one matches ``pattern``
``all``              every sub-condition holds (a conjunction)
===================  ==========================================================================

Token strings are compared after normalisation: leading-space markers (``Ġ``, ``▁``, a literal space),
the WordPiece continuation marker ``##`` and surrounding whitespace are stripped; unless
``case_sensitive`` both sides are lower-cased. Offsets and windows never cross a document boundary.

A mode is a *meaning* with graded strength: each of its conditions may carry its own strength
(``condition_strengths``, one per condition), so "the token one, strongly; two and three, weaker" is one
mode with two levels, not two modes. A mode of kind ``background`` is the explanation's term for diffuse
low-level firing: it is simulated like any mode but is not counted, or shown, as a meaning.

JSON form (schema 2): ``{"schema": 2, "layer": .., "index": .., "modes": [{"label", "description",
"conditions": [{"kind": "token", "tokens": [..]}, ..], "strength", "condition_strengths": [..] | null,
"kind": "mode" | "background", "concept": str | null, "exemplars", "scores"}], ...}``. Schema 1 files
(no per-condition strengths, no kinds) are read as uniform-strength modes. ``from_dict`` validates
everything and names the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ExplanationError
from .validate import bool_field, check_keys, float_field, int_field, pattern_field, tokens_field

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
MODE_KINDS = ("mode", "background")
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


CONDITION_KINDS: dict[str, type[Condition]] = {c.kind: c for c in (TokenIn, TokenRegex, PrevTokenIn, PrecedingRegex,
                                                                   AllOf)}


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
    if kind == "preceding_regex":
        check_keys(d, {"kind", "pattern", "window", "case_sensitive"}, where)
        return PrecedingRegex(pattern_field(d.get("pattern"), cs, where),
                              int_field(d.get("window", 8), 1, MAX_OFFSET, f"{where}.window"), cs)
    check_keys(d, {"kind", "conditions"}, where)
    subs = d.get("conditions")
    if not isinstance(subs, list) or len(subs) < 2:
        raise ExplanationError(f"{where}.conditions must be a list of at least two conditions")
    return AllOf(tuple(condition_from_dict(s, f"{where}.conditions[{i}]") for i, s in enumerate(subs)))


@dataclass
class Mode:
    """One semantic mode of a neuron: what it responds to, how strongly, and how well that holds up."""

    label: str
    description: str = ""
    conditions: list[Condition] = field(default_factory=list)
    strength: float = 1.0
    """Typical activation where the mode fires (without ``condition_strengths`` the exec simulator predicts
    this value wherever the mode fires)."""
    exemplars: list[int] = field(default_factory=list)
    """Global token positions of supporting exemplars."""
    scores: dict[str, float] = field(default_factory=dict)
    condition_strengths: list[float] | None = None
    """Graded strength: the activation predicted where each condition fires (the largest where several do)."""
    kind: str = "mode"
    """``mode`` (a meaning) or ``background`` (diffuse low-level firing; simulated, not counted as a mode)."""
    concept: str | None = None
    """The shared meaning the label names, when the mode's tokens have one (e.g. "months"); None otherwise."""

    def __post_init__(self) -> None:
        if self.kind not in MODE_KINDS:
            raise ExplanationError(f"mode kind must be one of {', '.join(MODE_KINDS)}, got {self.kind!r}")
        if self.condition_strengths is not None:
            self.condition_strengths = [float(x) for x in self.condition_strengths]
            if len(self.condition_strengths) != len(self.conditions):
                raise ExplanationError(f"mode {self.label!r}: {len(self.condition_strengths)} condition strengths "
                                       f"for {len(self.conditions)} conditions")

    @property
    def is_background(self) -> bool:
        return self.kind == "background"

    @property
    def strengths(self) -> list[float]:
        """(n_conditions,) the strength predicted where each condition fires."""
        if self.condition_strengths is not None:
            return list(self.condition_strengths)
        return [self.strength] * len(self.conditions)

    @property
    def graded(self) -> bool:
        return self.condition_strengths is not None and len(set(self.condition_strengths)) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "description": self.description,
                "conditions": [c.to_dict() for c in self.conditions], "strength": self.strength,
                "condition_strengths": None if self.condition_strengths is None else list(self.condition_strengths),
                "kind": self.kind, "concept": self.concept,
                "exemplars": list(self.exemplars), "scores": dict(self.scores)}

    @property
    def max_offset(self) -> int:
        return max((c.max_offset for c in self.conditions), default=0)

    @classmethod
    def from_dict(cls, d: Any, where: str = "mode") -> Mode:
        if not isinstance(d, dict):
            raise ExplanationError(f"{where} must be an object, got {type(d).__name__}")
        check_keys(d, {"label", "description", "conditions", "strength", "exemplars", "scores",
                        "condition_strengths", "kind", "concept"}, where)
        label = d.get("label")
        if not isinstance(label, str) or not label.strip():
            raise ExplanationError(f"{where}.label must be a non-empty string")
        desc = d.get("description", "")
        if not isinstance(desc, str):
            raise ExplanationError(f"{where}.description must be a string")
        conds = d.get("conditions", [])
        if not isinstance(conds, list):
            raise ExplanationError(f"{where}.conditions must be a list")
        ex = d.get("exemplars", [])
        if not isinstance(ex, list) or any(isinstance(p, bool) or not isinstance(p, int) for p in ex):
            raise ExplanationError(f"{where}.exemplars must be a list of integer token positions")
        scores = d.get("scores", {})
        if not isinstance(scores, dict):
            raise ExplanationError(f"{where}.scores must be an object")
        levels = d.get("condition_strengths")
        if levels is not None:
            if not isinstance(levels, list) or len(levels) != len(conds):
                raise ExplanationError(f"{where}.condition_strengths must be a list with one number per condition")
            levels = [float_field(v, f"{where}.condition_strengths[{i}]") for i, v in enumerate(levels)]
        kind = d.get("kind", "mode")
        if kind not in MODE_KINDS:
            raise ExplanationError(f"{where}.kind must be one of {', '.join(MODE_KINDS)}, got {kind!r}")
        concept = d.get("concept")
        if concept is not None and not isinstance(concept, str):
            raise ExplanationError(f"{where}.concept must be a string or null")
        return cls(label=label, description=desc,
                   conditions=[condition_from_dict(c, f"{where}.conditions[{i}]") for i, c in enumerate(conds)],
                   strength=float_field(d.get("strength"), f"{where}.strength", 1.0), exemplars=list(ex),
                   scores={str(k): float_field(v, f"{where}.scores.{k}") for k, v in scores.items() if v is not None},
                   condition_strengths=levels, kind=kind, concept=concept)


@dataclass
class Explanation:
    """What one neuron does: its modes (one for a monosemantic neuron) and provenance."""

    layer: int
    index: int
    modes: list[Mode]
    method: str = "manual"
    """Who wrote it: ``neuronscope``, ``single-pass``, ``manual``, ``openai`` (imported), ..."""
    text: str = ""
    """A free-text summary; for imported free-text explanations the only content (no conditions)."""
    scores: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int]:
        return (self.layer, self.index)

    @property
    def executable(self) -> bool:
        """True when at least one mode has conditions (the exec simulator can run it)."""
        return any(m.conditions for m in self.modes)

    @property
    def max_offset(self) -> int:
        return max((m.max_offset for m in self.modes), default=0)

    @property
    def meanings(self) -> list[Mode]:
        """The modes that are meanings: executable and not the background term (what "Number" counts)."""
        return [m for m in self.modes if m.conditions and not m.is_background]

    @property
    def summary(self) -> str:
        """One line: the text, or the modes' labels joined."""
        if self.text:
            return self.text
        return "; ".join(m.description or m.label for m in self.modes if not m.is_background)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "layer": self.layer, "index": self.index, "method": self.method,
                "text": self.text, "modes": [m.to_dict() for m in self.modes], "scores": dict(self.scores),
                "meta": self.meta}

    @classmethod
    def from_dict(cls, d: Any, where: str = "explanation") -> Explanation:
        if not isinstance(d, dict):
            raise ExplanationError(f"{where} must be an object, got {type(d).__name__}")
        schema = d.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise ExplanationError(f"{where}.schema is {schema!r}; this neuronscope reads schemas "
                                   f"{', '.join(map(str, READABLE_SCHEMAS))}")
        check_keys(d, {"schema", "layer", "index", "method", "text", "modes", "scores", "meta"}, where)
        layer = int_field(d.get("layer"), 0, 1 << 20, f"{where}.layer")
        index = int_field(d.get("index"), 0, 1 << 31, f"{where}.index")
        modes = d.get("modes")
        if not isinstance(modes, list):
            raise ExplanationError(f"{where}.modes must be a list")
        text = d.get("text", "")
        if not isinstance(text, str):
            raise ExplanationError(f"{where}.text must be a string")
        if not modes and not text:
            raise ExplanationError(f"{where} has neither modes nor text")
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise ExplanationError(f"{where}.meta must be an object")
        scores = d.get("scores", {})
        if not isinstance(scores, dict):
            raise ExplanationError(f"{where}.scores must be an object")
        return cls(layer=layer, index=index, method=str(d.get("method", "manual")), text=text,
                   modes=[Mode.from_dict(m, f"{where}.modes[{i}]") for i, m in enumerate(modes)],
                   scores={str(k): float_field(v, f"{where}.scores.{k}") for k, v in scores.items() if v is not None},
                   meta=meta)
