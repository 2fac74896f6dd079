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


def label_for(conditions: list[Condition]) -> str:
    """A short label: the first few tokens or the shape of the first condition."""
    for c in conditions:
        if isinstance(c, TokenIn):
            return "/".join(t.strip() for t in c.tokens[:3]) + ("/…" if len(c.tokens) > 3 else "")
    for c in conditions:
        if isinstance(c, AllOf) and isinstance(c.conditions[0], TokenIn):
            return "/".join(t.strip() for t in c.conditions[0].tokens[:3]) + " (in context)"
    return describe_condition(conditions[0])[:40] if conditions else "unexplained"


def render_mode(mode: Mode) -> Mode:
    """Fills ``label`` and ``description`` of a mode from its conditions (in place) and returns it."""
    if mode.conditions:
        mode.label = label_for(mode.conditions)
        mode.description = "; or ".join(describe_condition(c) for c in mode.conditions)
        mode.description = mode.description[0].upper() + mode.description[1:]
    return mode
