"""Explanations as data: an Explanation is a list of Modes, a Mode fires where any of its Conditions holds.

Conditions are the "testable atomic conditions" of NeuronScope's decomposition step, kept executable:

===================  ==========================================================================
``token``            the current token is one of ``tokens`` (normalised strings, see ``vocab``)
``token_regex``      the current (normalised) token matches ``pattern`` (``re.search``)
``prev_token``       the token ``offset`` positions back (1 = previous) is one of ``tokens``
``next_token``       the next token (where the stream shows it) is one of ``tokens``
``preceding_regex``  the text of the ``window`` tokens before the current one matches ``pattern``
``position``         the token's position in its document (0 = its first token) is in ``[start, stop)``
``all``              every sub-condition holds (a conjunction)
``not``              the sub-condition does not hold (inside an ``all``: "this token, but not in that context")
===================  ==========================================================================

Token strings are compared after normalisation: leading-space markers (``Ġ``, ``▁``, a literal space),
the WordPiece continuation marker ``##`` and surrounding whitespace are stripped; unless
``case_sensitive`` both sides are lower-cased. Offsets and windows never cross a document boundary.
Positions are counted from the start of the token's segment: a document in a corpus stream; in evidence
windows, which carry up to ``MAX_OFFSET`` tokens of left context from their document, that is the document
position exactly for ``stop <= MAX_OFFSET`` (records imported without context count from the record start).

A mode is a *meaning* with graded strength: each of its conditions may carry its own strength
(``condition_strengths``, one per condition), so "the token one, strongly; two and three, weaker" is one
mode with two levels, not two modes. A mode of kind ``background`` is the explanation's term for diffuse
low-level firing: it is simulated like any mode but is not counted, or shown, as a meaning. A mode of kind
``context`` is the explanation's context term: each of its conditions (a neighbouring token: ``prev_token`` or
``next_token``) *adds* its strength to the token's predicted activation, on top of the strongest mode, and
several that hold add up ("right after *def*: +0.4"); it is not a meaning either. A background term with
``similar`` > 0 also reads the words the explanation never lists by their nearest listed words in meaning.

JSON form (schema 4): ``{"schema": 4, "layer": .., "index": .., "modes": [{"label", "description",
"conditions": [{"kind": "token", "tokens": [..]}, ..], "strength", "condition_strengths": [..] | null,
"kind": "mode" | "background" | "context", "concept": str | null, "similar": int, "exemplars", "scores"}],
...}``. Schema 1 files (no per-condition strengths, no kinds) are read as uniform-strength modes; schema 2 is
schema 3 without the ``position`` and ``not`` conditions; schema 3 is schema 4 without ``next_token``, context
terms and ``similar``. ``from_dict`` validates everything and names the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ExplanationError
from .condition_kinds import (  # noqa: F401  (re-exported: the condition kinds are part of the data model)
    CONDITION_KINDS,
    MAX_OFFSET,
    AllOf,
    Condition,
    NextTokenIn,
    Not,
    Position,
    PrecedingRegex,
    PrevTokenIn,
    TokenIn,
    TokenRegex,
    condition_from_dict,
    normalise,
)
from .validate import check_keys, float_field, int_field

SCHEMA_VERSION = 4
READABLE_SCHEMAS = (1, 2, 3, 4)
MODE_KINDS = ("mode", "background", "context")
SIMILAR_MAX = 100
"""Largest ``Mode.similar`` (nearest listed words a background term reads an unlisted word by)."""


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
    similar: int = 0
    """Background only: a word that no ``token`` condition of the explanation names, where no mode fires, is
    predicted at the cosine-weighted mean level of the ``similar`` listed words nearest to it in meaning
    (``scoring/similar.py``); 0: not at all."""

    def __post_init__(self) -> None:
        if self.kind not in MODE_KINDS:
            raise ExplanationError(f"mode kind must be one of {', '.join(MODE_KINDS)}, got {self.kind!r}")
        if self.similar and (self.kind != "background" or not 0 < self.similar <= SIMILAR_MAX):
            raise ExplanationError(f"mode {self.label!r}: similar={self.similar!r} needs a background mode and "
                                   f"0 < similar <= {SIMILAR_MAX}")
        if self.condition_strengths is not None:
            self.condition_strengths = [float(x) for x in self.condition_strengths]
            if len(self.condition_strengths) != len(self.conditions):
                raise ExplanationError(f"mode {self.label!r}: {len(self.condition_strengths)} condition strengths "
                                       f"for {len(self.conditions)} conditions")

    @property
    def is_background(self) -> bool:
        return self.kind == "background"

    @property
    def is_meaning(self) -> bool:
        """A meaning (kind ``mode``), not the background or the context term."""
        return self.kind == "mode"

    @property
    def additive(self) -> bool:
        """The context term: its conditions' strengths add to the prediction instead of competing with it."""
        return self.kind == "context"

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
                "kind": self.kind, "concept": self.concept, "similar": self.similar,
                "exemplars": list(self.exemplars), "scores": dict(self.scores)}

    @property
    def max_offset(self) -> int:
        return max((c.max_offset for c in self.conditions), default=0)

    @classmethod
    def from_dict(cls, d: Any, where: str = "mode") -> Mode:
        if not isinstance(d, dict):
            raise ExplanationError(f"{where} must be an object, got {type(d).__name__}")
        check_keys(d, {"label", "description", "conditions", "strength", "exemplars", "scores",
                        "condition_strengths", "kind", "concept", "similar"}, where)
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
        similar = int_field(d.get("similar", 0), 0, SIMILAR_MAX, f"{where}.similar")
        if similar and kind != "background":
            raise ExplanationError(f"{where}.similar is only meaningful on a background mode")
        return cls(label=label, description=desc,
                   conditions=[condition_from_dict(c, f"{where}.conditions[{i}]") for i, c in enumerate(conds)],
                   strength=float_field(d.get("strength"), f"{where}.strength", 1.0), exemplars=list(ex),
                   scores={str(k): float_field(v, f"{where}.scores.{k}") for k, v in scores.items() if v is not None},
                   condition_strengths=levels, kind=kind, concept=concept, similar=similar)


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
        return [m for m in self.modes if m.conditions and m.is_meaning]

    @property
    def summary(self) -> str:
        """One line: the text, or the modes' labels joined."""
        if self.text:
            return self.text
        return "; ".join(m.description or m.label for m in self.modes if m.is_meaning)

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
