"""Natural-language labels and descriptions rendered from conditions (the offline explainer's voice)."""

from __future__ import annotations

import re

from ..explanations.model import (
    AllOf,
    Condition,
    Mode,
    NextTokenIn,
    Not,
    Position,
    PrecedingRegex,
    PrevTokenIn,
    TokenIn,
    TokenRegex,
)

_SHAPES = {
    r"^\d+$": "numbers",
    r"^[A-Z][a-z]+$": "capitalised words",
    r"^[A-Z]+$": "upper-case words",
    r"^[^\w\s]+$": "punctuation",
    r"^[a-z]+$": "lower-case words",
}


INSIDE_PARENS = r"\((?:[^()]|\([^()]*\))*$"
"""``preceding_regex`` pattern: the window before the token holds a ``(`` not closed since (pairs nested one
deep inside it are skipped): the token is inside parentheses."""
INSIDE_BRACKETS = r"\[(?:[^\[\]]|\[[^\[\]]*\])*$"
_NAMED = {INSIDE_PARENS: ("inside parentheses", "outside parentheses"),
          INSIDE_BRACKETS: ("inside square brackets", "outside square brackets")}
_WORDS = re.compile(r"^\\b\(\?:(.+)\)\\b$")


def after_words(words, window: int) -> PrecedingRegex:
    """``preceding_regex``: one of these whole words among the ``window`` tokens before the token."""
    return PrecedingRegex(r"\b(?:" + "|".join(re.escape(w) for w in sorted(set(words))) + r")\b", window)


def _context(c: PrecedingRegex, negated: bool = False) -> str:
    """Where a preceding-text condition holds, as a phrase ("inside parentheses", "within 3 tokens after ...")."""
    named = _NAMED.get(c.pattern)
    if named is not None:
        return named[negated]
    m = _WORDS.match(c.pattern)
    if m is not None:
        words = tuple(re.sub(r"\\(.)", r"\1", w) for w in m.group(1).split("|"))
        span = "right after" if c.window == 1 else f"within {c.window} tokens after"
        return f"{'not ' if negated else ''}{span} {quote_tokens(words)}"
    return f"{'not ' if negated else ''}shortly after text matching /{c.pattern}/"


def quote_tokens(tokens: tuple[str, ...], limit: int = 6, mark: str = '"') -> str:
    """``"a", "b" or "c"`` (the first ``limit`` tokens, then "and N more")."""
    shown = [f"{mark}{t.strip()}{mark}" for t in tokens[:limit]]
    more = f" and {len(tokens) - limit} more" if len(tokens) > limit else ""
    if len(shown) == 1:
        return shown[0] + more
    return ", ".join(shown[:-1]) + (" or " if not more else ", ") + shown[-1] + more


def context_phrase(c: Condition) -> str:
    """A context condition as a phrase after a token ("inside parentheses", "right after "import"")."""
    return describe_condition(c).replace("any token ", "")


def describe_condition(c: Condition) -> str:
    """A phrase for one condition, e.g. ``the token "return" or "value"``."""
    if isinstance(c, TokenIn):
        return f"the token {quote_tokens(c.tokens)}"
    if isinstance(c, TokenRegex):
        shape = _SHAPES.get(c.pattern)
        if shape:
            return shape
        if c.pattern.endswith("$") and c.pattern[:-1].isalpha():
            return f'words ending in "-{c.pattern[:-1]}"'
        return f"tokens matching /{c.pattern}/"
    if isinstance(c, PrevTokenIn):
        where = "right after" if c.offset == 1 else f"{c.offset} tokens after"
        return f"any token {where} {quote_tokens(c.tokens)}"
    if isinstance(c, NextTokenIn):
        return f"any token right before {quote_tokens(c.tokens)}"
    if isinstance(c, PrecedingRegex):
        return f"any token {_context(c)}"
    if isinstance(c, Not):
        if isinstance(c.condition, PrecedingRegex):
            return f"any token {_context(c.condition, negated=True)}"
        return "not " + describe_condition(c.condition)
    if isinstance(c, Position):
        if c.start == 0:
            return "the first token of a document" if c.stop == 1 else f"the first {c.stop} tokens of a document"
        return f"tokens {c.start + 1} to {c.stop} of a document"
    if isinstance(c, AllOf):
        parts = [describe_condition(s) for s in c.conditions]
        head = parts[0]
        rest = [context_phrase(p) for p in c.conditions[1:]]
        return head + " " + " and ".join(rest)
    return c.describe()


def _groups(conditions: list[Condition]) -> list[Condition | tuple]:
    """For reading only: single-token conditions of one kind and offset shown as one set, in their order
    (strongest first in a graded mode), and position ranges as their union (a graded ladder of nested ranges
    reads as one span). Items: a Condition, or ``(offset, tokens)`` (offset 0: the token)."""
    out: list[Condition | tuple] = []
    sets: dict[int, list[str]] = {}
    spans = [c for c in conditions if isinstance(c, Position)]
    for c in conditions:
        if isinstance(c, Position):
            if c is spans[0]:
                out.append(Position(max(p.stop for p in spans), min(p.start for p in spans)))
        elif isinstance(c, (TokenIn, PrevTokenIn)) and not c.case_sensitive:
            off = c.offset if isinstance(c, PrevTokenIn) else 0
            if off not in sets:
                sets[off] = []
                out.append((off,))
            sets[off].extend(t for t in c.tokens if t not in sets[off])
        else:
            out.append(c)
    return [(item[0], tuple(sets[item[0]])) if isinstance(item, tuple) else item for item in out]


def _describe_item(item: Condition | tuple) -> str:
    if isinstance(item, tuple):
        off, toks = item
        if off == 0:
            return f"the token {quote_tokens(toks)}"
        where = "right after" if off == 1 else f"{off} tokens after"
        return f"any token {where} {quote_tokens(toks)}"
    return describe_condition(item)


def describe_conditions(conditions: list[Condition]) -> str:
    """The executable reading of a mode in words, single-token conditions grouped (in their order)."""
    return "; or ".join(_describe_item(x) for x in _groups(conditions))


def label_for(conditions: list[Condition]) -> str:
    """A short label: the first few tokens or the shape of the first condition."""
    items = _groups(conditions)
    for x in items:
        if isinstance(x, tuple) and x[0] == 0:
            return "/".join(t.strip() for t in x[1][:3]) + ("/…" if len(x[1]) > 3 else "")
    for x in items:
        if isinstance(x, AllOf) and isinstance(x.conditions[0], TokenIn):
            head = "/".join(t.strip() for t in x.conditions[0].tokens[:3])
            where = " and ".join(context_phrase(c) for c in x.conditions[1:])
            bases = [y.conditions[0] for y in items if isinstance(y, AllOf)]
            if bases.count(x.conditions[0]) > 1:  # the same words in several contexts (graded): the words
                return head
            return f"{head} {where}" if len(where) <= 40 else f"{head} (in context)"
    return _describe_item(items[0])[:40] if items else "unexplained"


def render_mode(mode: Mode) -> Mode:
    """Fills ``label`` and ``description`` of a mode from its conditions (in place) and returns it."""
    if mode.conditions:
        mode.label = label_for(mode.conditions)
        mode.description = describe_conditions(mode.conditions)
        mode.description = mode.description[0].upper() + mode.description[1:]
    return mode


def render_context(mode: Mode, shown: int = 8) -> Mode:
    """Label and description of a context term (``kind == "context"``, one neighbouring token per condition,
    each with the activation it adds): the largest shifts first, e.g. ``right after "def" +0.42``."""
    parts = []
    for c, v in sorted(zip(mode.conditions, mode.strengths, strict=True), key=lambda cv: -abs(cv[1]))[:shown]:
        where = "right after" if isinstance(c, PrevTokenIn) else "right before"
        parts.append(f"{where} {quote_tokens(c.tokens)} {v:+.2f}")
    more = f" and {len(mode.conditions) - shown} more" if len(mode.conditions) > shown else ""
    mode.label = "context"
    mode.description = ("Added to any token's activation, by its neighbour: " + "; ".join(parts) + more
                        if parts else "")
    return mode
