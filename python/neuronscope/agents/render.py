"""Natural-language labels and descriptions rendered from conditions (the offline explainer's voice)."""

from __future__ import annotations

from ..explanations.model import AllOf, Condition, Mode, PrecedingRegex, PrevTokenIn, TokenIn, TokenRegex

_SHAPES = {
    r"^\d+$": "numbers",
    r"^[A-Z][a-z]+$": "capitalised words",
    r"^[A-Z]+$": "upper-case words",
    r"^[^\w\s]+$": "punctuation",
    r"^[a-z]+$": "lower-case words",
}


def quote_tokens(tokens: tuple[str, ...], limit: int = 6, mark: str = '"') -> str:
    """``"a", "b" or "c"`` (the first ``limit`` tokens, then "and N more")."""
    shown = [f"{mark}{t.strip()}{mark}" for t in tokens[:limit]]
    more = f" and {len(tokens) - limit} more" if len(tokens) > limit else ""
    if len(shown) == 1:
        return shown[0] + more
    return ", ".join(shown[:-1]) + (" or " if not more else ", ") + shown[-1] + more


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
    if isinstance(c, PrecedingRegex):
        return f"tokens shortly after text matching /{c.pattern}/"
    if isinstance(c, AllOf):
        parts = [describe_condition(s) for s in c.conditions]
        head = parts[0]
        rest = [p.replace("any token ", "") for p in parts[1:]]
        return head + " " + " and ".join(rest)
    return c.describe()


def _groups(conditions: list[Condition]) -> list[Condition | tuple]:
    """For reading only: single-token conditions of one kind and offset shown as one set, in their order
    (strongest first in a graded mode). Items: a Condition, or ``(offset, tokens)`` (offset 0: the token)."""
    out: list[Condition | tuple] = []
    sets: dict[int, list[str]] = {}
    for c in conditions:
        if isinstance(c, (TokenIn, PrevTokenIn)) and not c.case_sensitive:
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
            return "/".join(t.strip() for t in x.conditions[0].tokens[:3]) + " (in context)"
    return _describe_item(items[0])[:40] if items else "unexplained"


def render_mode(mode: Mode) -> Mode:
    """Fills ``label`` and ``description`` of a mode from its conditions (in place) and returns it."""
    if mode.conditions:
        mode.label = label_for(mode.conditions)
        mode.description = describe_conditions(mode.conditions)
        mode.description = mode.description[0].upper() + mode.description[1:]
    return mode
