"""Untrusted values as HTML for the report's pages: escaping, number formats, undefined scores, inline JSON,
the page shell, and where each neuron's page lives.

Every string that comes from a corpus, a model or an LLM goes through :func:`esc`, which also drops the Unicode
bidirectional controls (U+202E and its kin): they are invisible, and one of them in a label would reverse the
rest of the line around it. Legitimate right-to-left text is kept; the pages isolate it with ``dir="auto"``.

A *correlation* score (held-out, top, train, per mode, and the index's difference) that is NaN or None is
*undefined* — Pearson's r of a constant prediction, of constant activations, or of one token, as OpenAI's
scorer and delphi document it — and shows as "undefined" with a tooltip saying why; a score that is absent
shows as a dash, like any other missing value.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from html import escape

DASH = "—"
UNDEFINED = "undefined"
UNDEFINED_WHY = (
    "Pearson correlation is undefined here: the predicted or the true activations are constant on the scored "
    "tokens (e.g. the explanation never fires there), or there is only one token"
)
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Arabic letter mark, LRM/RLM, the embeddings and overrides (LRE…RLO) and the isolates (LRI…PDI)."""


def neuron_page_name(layer: int, index: int) -> str:
    """Path of a neuron's page relative to the site root, e.g. ``"neurons/L3_N493.html"``."""
    return f"neurons/L{int(layer)}_N{int(index)}.html"


def clean(s: str) -> str:
    """``s`` without bidirectional control characters."""
    return BIDI_CONTROLS.sub("", s)


def esc(x: object) -> str:
    """Escaped text of any value, bidi controls removed; missing values are a dash."""
    return DASH if x is None else escape(clean(x if isinstance(x, str) else str(x)), quote=True)


def num(x: object) -> float | None:
    """A finite real number, or None for anything else (missing, NaN, strings from older runs)."""
    # numbers.Real also admits numpy scalars, which callers may pass straight from a store.
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fixed(x: object, nd: int = 2) -> str:
    v = num(x)
    return DASH if v is None else f"{v:.{nd}f}"


def sig(x: object) -> str:
    """An activation-like value with 3 significant digits."""
    v = num(x)
    return DASH if v is None else f"{v + 0.0:.3g}"


def pct(x: object) -> str:
    v = num(x)
    return DASH if v is None else f"{100 * v:.0f}%"


def count(x: object) -> str:
    v = num(x)
    return DASH if v is None else f"{round(v):,}"


def strs(x: object) -> list[str]:
    """A list of strings from a list (or a lone string); other shapes give nothing."""
    if isinstance(x, str):
        return [x]
    return [s if isinstance(s, str) else json.dumps(s, default=str) for s in x] if isinstance(x, list) else []


def is_undefined(d: object, key: str) -> bool:
    """True when ``d[key]`` is there and says "undefined": None, NaN, or the string "nan" (delphi's files)."""
    if not isinstance(d, dict) or key not in d:
        return False
    v = d[key]
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip().lower() == "nan"
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isnan(float(v))


def undefined_html() -> str:
    return f'<span class="undef" title="{escape(UNDEFINED_WHY, quote=True)}">{UNDEFINED}</span>'


def score(d: object, key: str, nd: int = 2) -> str:
    """``d[key]`` as a correlation: fixed-point, "undefined" (see the module's docstring), or a dash if absent."""
    if is_undefined(d, key):
        return undefined_html()
    return fixed(d.get(key) if isinstance(d, dict) else None, nd)


def qnum(q: object) -> float | None:
    """A quantile key (``"0.99"``) as a number in [0, 1], else None."""
    try:
        v = float(q)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if 0.0 <= v <= 1.0 else None


def json_script(obj: object, element_id: str) -> str:
    """``obj`` as an inline JSON block; ``<``, ``>`` and ``&`` are escaped so no string can close the tag."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'


def page(title: str, body: str, *, root: str, script: bool = False) -> str:
    """A whole HTML document around ``body``; ``root`` is the relative path to the site root (``""``, ``"../"``)."""
    js = f'\n<script src="{root}assets/report.js"></script>' if script else ""
    # The empty data: icon keeps Chromium from asking for a favicon.ico that a file:// site lacks.
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{esc(title)}</title>\n<link rel="icon" href="data:,">\n'
        f'<link rel="stylesheet" href="{root}assets/report.css">\n</head>\n<body>\n{body}{js}\n</body>\n</html>\n'
    )
