"""The static site of a run: ``index.html`` (every neuron, sortable and filterable) and one page per neuron.

The site opens from ``file://`` with no server and no network: CSS and JS are local files under
``assets/``, and the index's rows travel inside the page as a JSON block, because Chromium refuses
``fetch()`` of ``file://`` URLs. Everything that comes from the corpus, the model or an LLM (tokens,
descriptions, labels, transcripts, meta values) is untrusted: neuron pages are rendered here with every
such string HTML-escaped, and ``report.js`` inserts the index's strings as text nodes only.

Input schemas (any key but ``layer``/``index`` may be missing or ``None``; it then shows as "—"):

* ``index_rows``: ``{"layer", "index", "n_modes", "score", "baseline_score", "description", "labels",
  "max_act", "href"}``, one per table row.
* ``neurons``: ``{"layer", "index", "model", "stats": {count, mean, std, min, max, frac_positive},
  "quantiles": {"0.99": value, ...}, "hist": {"lower", "upper", "counts"}, "top": [exemplar, ...],
  "methods": {name: {"text", "score", "coverage", "top_score", "seconds", "backend", "modes": [{"label",
  "description", "conditions", "strength", "score", "coverage", "share", "exemplars"}], "rounds":
  [{"round", "train_score", "heldout_score", "modes"}], "transcript": [{...}]}}}``.
* exemplar: ``{"pieces": [str], "acts": [float] | None, "focus": int, "activation": float, "position": int}``.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections import Counter
from html import escape
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..io import write_text

ASSETS = ("report.css", "report.js")
"""Files copied from ``static/`` to ``out/assets/``."""
DASH = "—"
METHOD_ORDER = ("neuronscope", "single-pass")
"""Methods shown first, in this order (side by side when both exist); any others follow by name."""
_PAGE_RE = re.compile(r"L\d+_N\d+\.html")
# A row's href is untrusted too: only a plain relative path to an .html page is kept as given.
_SAFE_HREF = re.compile(r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_./-]*\.html")


def neuron_page_name(layer: int, index: int) -> str:
    """Path of a neuron's page relative to the site root, e.g. ``"neurons/L3_N493.html"``."""
    return f"neurons/L{int(layer)}_N{int(index)}.html"


def render_site(
    index_rows: list[dict], neurons: list[dict], out: str | Path, *, title: str, meta: dict
) -> Path:
    """Writes ``out/index.html``, ``out/neurons/L{layer}_N{index}.html`` per neuron and ``out/assets/*``.

    Pages of neurons no longer in ``neurons`` are removed from ``out/neurons``. The index is written
    last, so that its links never point at a page not yet written. Returns the path of ``index.html``.
    """
    out = Path(out)
    keys = [_key(r, f"index_rows[{i}]") for i, r in enumerate(index_rows)]
    pages = sorted(((_key(n, f"neurons[{i}]"), n) for i, n in enumerate(neurons)), key=lambda kn: kn[0])
    twice = sorted(k for k, c in Counter(key for key, _ in pages).items() if c > 1)
    if twice:
        raise ConfigError(f"neurons: (layer, index) {twice[:5]} given more than once")
    for name in ASSETS:
        text = resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")
        write_text(out / "assets" / name, text)
    written = set()
    for k, (key, neuron) in enumerate(pages):
        prev = pages[k - 1][0] if k > 0 else None
        nxt = pages[k + 1][0] if k + 1 < len(pages) else None
        write_text(
            out / neuron_page_name(*key), neuron_page(neuron, title=title, prev_key=prev, next_key=nxt)
        )
        written.add(Path(neuron_page_name(*key)).name)
    for stale in (out / "neurons").glob("L*_N*.html"):
        if _PAGE_RE.fullmatch(stale.name) and stale.name not in written:
            stale.unlink()
    page = out / "index.html"
    write_text(
        page,
        index_page(
            [_index_row(r, key) for r, key in zip(index_rows, keys, strict=True)], title=title, meta=meta
        ),
    )
    return page


def _key(d: object, where: str) -> tuple[int, int]:
    """(layer, index) of an input dict; the only keys without which nothing can be drawn."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a dict, got {type(d).__name__}")
    try:
        layer, index = d["layer"], d["index"]
        if isinstance(layer, bool) or isinstance(index, bool) or int(layer) != layer or int(index) != index:
            raise ValueError
        return int(layer), int(index)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{where} needs integer 'layer' and 'index', got {str(d)[:80]}") from None


# ---- values ---------------------------------------------------------------------------------------------


def _e(x: object) -> str:
    """Escaped text of any value; missing values are a dash."""
    return DASH if x is None else escape(x if isinstance(x, str) else str(x), quote=True)


def _num(x: object) -> float | None:
    """A finite real number, or None for anything else (missing, NaN, strings from older runs)."""
    # numbers.Real also admits numpy scalars, which callers may pass straight from a store.
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _fixed(x: object, nd: int = 2) -> str:
    v = _num(x)
    return DASH if v is None else f"{v:.{nd}f}"


def _sig(x: object) -> str:
    """An activation-like value with 3 significant digits."""
    v = _num(x)
    return DASH if v is None else f"{v + 0.0:.3g}"


def _pct(x: object) -> str:
    v = _num(x)
    return DASH if v is None else f"{100 * v:.0f}%"


def _count(x: object) -> str:
    v = _num(x)
    return DASH if v is None else f"{round(v):,}"


def _strs(x: object) -> list[str]:
    """A list of strings from a list (or a lone string); other shapes give nothing."""
    if isinstance(x, str):
        return [x]
    return [s if isinstance(s, str) else json.dumps(s, default=str) for s in x] if isinstance(x, list) else []


def json_script(obj: object, element_id: str) -> str:
    """``obj`` as an inline JSON block; ``<``, ``>`` and ``&`` are escaped so no string can close the tag."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{escape(element_id)}">{text}</script>'


def _index_row(r: dict, key: tuple[int, int]) -> dict:
    href = r.get("href")
    if not (isinstance(href, str) and _SAFE_HREF.fullmatch(href)):
        href = neuron_page_name(*key)
    n_modes = _num(r.get("n_modes"))
    score, base = _num(r.get("score")), _num(r.get("baseline_score"))
    desc = r.get("description")
    return {
        "layer": key[0],
        "index": key[1],
        "n_modes": None if n_modes is None else int(n_modes),
        "score": score,
        "baseline": base,
        "delta": None if score is None or base is None else score - base,
        "description": desc if isinstance(desc, str) else ("" if desc is None else str(desc)),
        "labels": [s for s in _strs(r.get("labels")) if s.strip()],
        "href": href,
    }


# ---- pages ----------------------------------------------------------------------------------------------


def _page(title: str, body: str, *, root: str, script: bool = False) -> str:
    js = f'\n<script src="{root}assets/report.js"></script>' if script else ""
    # The empty data: icon keeps Chromium from asking for a favicon.ico that a file:// site lacks.
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>{_e(title)}</title>\n<link rel="icon" href="data:,">\n'
        f'<link rel="stylesheet" href="{root}assets/report.css">\n</head>\n<body>\n{body}{js}\n</body>\n</html>\n'
    )


_COLUMNS = (
    ("layer", "num", "Layer"),
    ("index", "num", "Neuron"),
    ("n_modes", "num", "Modes"),
    ("score", "num", "Score"),
    ("baseline", "num", "Single-pass"),
    ("delta", "num", "Δ"),
    ("description", "text", "Description"),
)


def index_page(rows: list[dict], *, title: str, meta: dict) -> str:
    """The index: header with the run's meta, filters, and a table that ``report.js`` fills from JSON."""
    items = []
    for k, v in (meta or {}).items():
        if k == "command":
            continue
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            text = _count(v)
        elif v is None or isinstance(v, str | numbers.Real):
            text = _e(v)
        else:
            text = _e(json.dumps(v, default=str))
        items.append(f"<div><dt>{_e(k)}</dt><dd>{text}</dd></div>")
    command = (meta or {}).get("command")
    cmd = f'<p class="command"><code>{_e(command)}</code></p>' if command else ""
    layers = sorted({r["layer"] for r in rows})
    options = "".join(f'<option value="{layer}">Layer {layer}</option>' for layer in layers)
    heads = "".join(
        f'<th data-sort="{key}" data-type="{kind}" class="{kind}"><button type="button">{label}</button></th>'
        for key, kind, label in _COLUMNS
    )
    body = f"""<header class="top">
<h1>{_e(title)}</h1>
<dl class="meta">{"".join(items)}</dl>
{cmd}</header>
<main>
<div class="controls" role="search">
<label class="grow">Search <input type="search" id="search" placeholder="description, label or 3:493 (press /)"
 autocomplete="off"></label>
<label>Layer <select id="layer-filter"><option value="">All</option>{options}</select></label>
<label class="check"><input type="checkbox" id="poly-only"> Polysemantic only</label>
<label>Min score <input type="number" id="min-score" step="0.05" placeholder="any"></label>
<span id="shown-count" aria-live="polite">{len(rows)} of {len(rows)} neurons shown</span>
</div>
<div class="table-wrap"><table id="neuron-table">
<thead><tr>{heads}</tr></thead>
<tbody></tbody>
</table></div>
<p class="more"><button type="button" id="show-more" hidden>Show more</button></p>
<noscript><p>The table needs JavaScript.</p></noscript>
</main>
{json_script({"rows": rows}, "data")}"""
    return _page(title, body, root="", script=True)


def neuron_page(
    n: dict, *, title: str, prev_key: tuple[int, int] | None = None, next_key: tuple[int, int] | None = None
) -> str:
    """One neuron's page (a page of ``out/neurons/``): statistics, histogram, methods, top tokens, transcripts.

    ``prev_key``/``next_key``: (layer, index) of the neighbouring pages, linked from the header.
    """
    layer, index = int(n["layer"]), int(n["index"])
    stats = n.get("stats") if isinstance(n.get("stats"), dict) else {}
    scale = _scale(n, stats)
    nav = ['<a href="../index.html">← All neurons</a>']
    for key, text in ((prev_key, "← L{}:{}"), (next_key, "L{}:{} →")):
        if key is not None:
            nav.append(f'<a href="../{neuron_page_name(*key)}">{text.format(*key)}</a>')
    stat_items = [
        ("tokens", _count(stats.get("count"))),
        ("mean", _sig(stats.get("mean"))),
        ("std", _sig(stats.get("std"))),
        ("min", _sig(stats.get("min"))),
        ("max", _sig(stats.get("max"))),
        ("positive", _pct(stats.get("frac_positive"))),
    ]
    quantiles = n.get("quantiles") if isinstance(n.get("quantiles"), dict) else {}
    methods = n.get("methods") if isinstance(n.get("methods"), dict) else {}
    names = [m for m in METHOD_ORDER if m in methods] + sorted(m for m in methods if m not in METHOD_ORDER)
    sections = "".join(_method(name, methods[name], scale) for name in names)
    if not sections:
        sections = '<p class="muted">No explanation for this neuron.</p>'
    grid = "methods two" if "neuronscope" in methods and "single-pass" in methods else "methods"
    top = "".join(_exemplar(x, scale) for x in n.get("top") or []) or f'<p class="muted">{DASH}</p>'
    transcripts = "".join(_transcript(name, methods[name]) for name in names)
    body = f"""<header class="top">
<nav class="crumbs">{" ".join(nav)}</nav>
<h1>Layer {layer} · Neuron {index}</h1>
<p class="sub">{_e(n.get("model"))}</p>
<dl class="meta stats">{"".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in stat_items)}</dl>
</header>
<main>
<section class="hist-box">
<h2>Activation histogram</h2>
<div class="hist-row">{histogram_svg(n.get("hist"), quantiles, stats)}{_quantile_table(quantiles)}</div>
</section>
<p class="legend">Token shading: <span class="tok" style="{_shade(scale, scale)}">positive</span>
<span class="tok" style="{_shade(-scale, scale)}">negative</span> activation, relative to the neuron's maximum
{_sig(scale)}; the outlined token is the one the exemplar is about. Hover a token for its activation.</p>
<div class="{grid}">{sections}</div>
<section id="top" class="top-acts">
<h2>Top activations</h2>
<div class="exemplars">{top}</div>
</section>
{transcripts}
</main>"""
    return _page(f"L{layer} N{index} · {title}", body, root="../")


def _scale(n: dict, stats: dict) -> float:
    """The activation that gets full colour: the neuron's maximum, else the largest shown activation."""
    mx = _num(stats.get("max"))
    if mx is not None and mx > 0:
        return mx
    acts = [
        abs(v)
        for x in n.get("top") or []
        if isinstance(x, dict)
        for v in [_num(a) for a in (x.get("acts") or [])] + [_num(x.get("activation"))]
        if v is not None
    ]
    return max(acts, default=0.0) or 1.0


def _quantile_table(quantiles: dict) -> str:
    cells = []
    for q, v in sorted(((_qnum(q), v) for q, v in quantiles.items()), key=lambda qv: qv[0] or 0.0):
        if q is not None:
            cells.append(f"<div><dt>p{100 * q:g}</dt><dd>{_sig(v)}</dd></div>")
    return f'<dl class="quantiles">{"".join(cells)}</dl>' if cells else ""


def _qnum(q: object) -> float | None:
    try:
        v = float(q)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if 0.0 <= v <= 1.0 else None


# ---- method sections -----------------------------------------------------------------------------------


def _method(name: str, m: object, scale: float) -> str:
    m = m if isinstance(m, dict) else {}
    sub = " · ".join(
        s
        for s in (
            _e(m["backend"]) if m.get("backend") else "",
            f"{_fixed(m.get('seconds'), 1)} s" if _num(m.get("seconds")) is not None else "",
        )
        if s
    )
    scores = (
        f'<span class="pill">score <b>{_fixed(m.get("score"))}</b></span>'
        f'<span class="pill">coverage <b>{_pct(m.get("coverage"))}</b></span>'
        f'<span class="pill">top score <b>{_fixed(m.get("top_score"))}</b></span>'
    )
    text = f'<p class="text">{_e(m["text"])}</p>' if isinstance(m.get("text"), str) and m["text"] else ""
    rounds = [r for r in m.get("rounds") or [] if isinstance(r, dict)]
    rounds_html = ""
    if rounds:
        trs = "".join(
            f'<tr><td class="num">{_e(r.get("round", k))}</td><td class="num">{_fixed(r.get("train_score"))}'
            f'</td><td class="num">{_fixed(r.get("heldout_score"))}</td>'
            f'<td class="num">{_count(r.get("modes"))}</td></tr>'
            for k, r in enumerate(rounds)
        )
        rounds_html = (
            f'<div class="rounds"><table class="small"><thead><tr><th>Round</th><th>Train</th>'
            f"<th>Held-out</th><th>Modes</th></tr></thead><tbody>{trs}</tbody></table>"
            f"{rounds_svg(rounds)}</div>"
        )
    modes = [x for x in m.get("modes") or [] if isinstance(x, dict)]
    modes_html = "".join(_mode(k, x, scale) for k, x in enumerate(modes)) or '<p class="muted">No modes.</p>'
    return (
        f'<section class="method" data-method="{_e(name)}">\n<h2>{_e(name)} <span class="sub">{sub}</span></h2>\n'
        f'<div class="scores">{scores}</div>\n{text}{rounds_html}\n<h3>Modes ({len(modes)})</h3>\n{modes_html}\n'
        "</section>\n"
    )


def _mode(k: int, m: dict, scale: float) -> str:
    share = _num(m.get("share"))
    bar = ""
    if share is not None:
        width = 100 * min(max(share, 0.0), 1.0)
        bar = (
            '<span class="share" title="share of the neuron\'s activating tokens">'
            f'<span style="width:{width:.0f}%"></span></span>'
        )
    stats = (
        f"strength {_sig(m.get('strength'))} · score {_fixed(m.get('score'))} · "
        f"coverage {_pct(m.get('coverage'))} · share {_pct(share)}"
    )
    conds = "".join(f"<li><code>{_e(c)}</code></li>" for c in _strs(m.get("conditions")))
    conds = f'<ul class="conditions">{conds}</ul>' if conds else ""
    exemplars = "".join(_exemplar(x, scale) for x in m.get("exemplars") or [])
    exemplars = f'<div class="exemplars">{exemplars}</div>' if exemplars else ""
    return (
        f'<div class="mode"><div class="mode-head"><span class="num-badge">{k + 1}</span>'
        f'<span class="label">{_e(m.get("label"))}</span>{bar}</div>'
        f'<p class="mode-stats">{stats}</p><p class="desc">{_e(m.get("description"))}</p>'
        f"{conds}{exemplars}</div>\n"
    )


def _shade(a: float | None, scale: float) -> str:
    """Inline background for a token: orange for positive, blue for negative activation, by |a| / scale."""
    if a is None or not scale:
        return ""
    alpha = min(abs(a) / scale, 1.0) * 0.8
    if alpha < 0.02:
        return ""
    return f"background:rgba(249,115,22,{alpha:.2f})" if a > 0 else f"background:rgba(59,130,246,{alpha:.2f})"


def _piece(s: object) -> str:
    # Newlines and tabs would break the one-line layout of an exemplar; show them as visible marks.
    s = s if isinstance(s, str) else ("" if s is None else str(s))
    return _e(s.replace("\r\n", "\n").replace("\n", "↵").replace("\t", "⇥"))


def _exemplar(x: object, scale: float) -> str:
    if not isinstance(x, dict):
        return ""
    pieces = x.get("pieces") if isinstance(x.get("pieces"), list) else []
    acts = x.get("acts") if isinstance(x.get("acts"), list) and len(x["acts"]) == len(pieces) else None
    focus = x.get("focus") if isinstance(x.get("focus"), int) else None
    toks = []
    for i, p in enumerate(pieces):
        a = _num(acts[i]) if acts is not None else (_num(x.get("activation")) if i == focus else None)
        attrs = ' class="tok focus"' if i == focus else ' class="tok"'
        if style := _shade(a, scale):
            attrs += f' style="{style}"'
        if a is not None:
            attrs += f' title="{_e(f"activation {a + 0.0:.3g}")}"'
        toks.append(f"<span{attrs}>{_piece(p)}</span>")
    pos = _num(x.get("position"))
    where = f' title="token position {int(pos)}"' if pos is not None else ""
    return (
        f'<div class="ex"><span class="ex-act"{where}>{_sig(x.get("activation"))}</span>'
        f'<span class="ex-text">{"".join(toks)}</span></div>'
    )


# ---- transcripts ---------------------------------------------------------------------------------------


def _transcript(name: str, m: object) -> str:
    steps = m.get("transcript") if isinstance(m, dict) else None
    if not isinstance(steps, list) or not steps:
        return ""
    groups: list[tuple[object, list]] = []
    for s in steps:
        r = s.get("round") if isinstance(s, dict) else None
        if not groups or groups[-1][0] != r:
            groups.append((r, []))
        groups[-1][1].append(s)
    if len(groups) == 1 and groups[0][0] is None:
        inner = "".join(_step(s) for s in steps)
    else:
        inner = "".join(
            f'<details class="round" open><summary>'
            f'{"Round " + _e(r) if r is not None else "Steps"} <span class="muted">({_steps(len(g))})</span></summary>'
            f"{''.join(_step(s) for s in g)}</details>"
            for r, g in groups
        )
    return (
        f'<details class="transcript" data-method="{_e(name)}"><summary>Agent transcript · {_e(name)} '
        f'<span class="muted">({_steps(len(steps))})</span></summary>{inner}</details>\n'
    )


def _steps(n: int) -> str:
    return "1 step" if n == 1 else f"{n} steps"


def _step(s: object) -> str:
    if not isinstance(s, dict):
        return f'<div class="step">{_value(s)}</div>'
    role = s.get("role")
    rest = {k: v for k, v in s.items() if k not in ("role", "round")}
    return (
        f'<div class="step"><span class="role">{_e(role if role is not None else "step")}</span>'
        f"{_value(rest)}</div>"
    )


def _value(v: object, depth: int = 0) -> str:
    """Any JSON-like value as HTML: dicts as definition lists, lists as lists, long strings as blocks."""
    if depth > 8:
        return f"<span>{_e(json.dumps(v, default=str)[:200])}</span>"
    if isinstance(v, dict):
        if not v:
            return f'<span class="muted">{DASH}</span>'
        return (
            '<dl class="kv">'
            + "".join(f"<dt>{_e(k)}</dt><dd>{_value(x, depth + 1)}</dd>" for k, x in v.items())
            + "</dl>"
        )
    if isinstance(v, list | tuple):
        if not v:
            return f'<span class="muted">{DASH}</span>'
        return '<ul class="tlist">' + "".join(f"<li>{_value(x, depth + 1)}</li>" for x in v) + "</ul>"
    if isinstance(v, str) and ("\n" in v or len(v) > 160):
        return f'<pre class="long">{_e(v)}</pre>'
    if isinstance(v, float):
        return f"<span>{_e(f'{v:.4g}')}</span>"
    return f"<span>{_e(v)}</span>"


# ---- charts (inline SVG: no library, nothing to load) --------------------------------------------------


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """Round-numbered ticks (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n))
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= n:
            step *= mult
            break
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 12) + 0.0 for k in range(first, math.floor(hi / step + 1e-9) + 1)]


def _count_label(c: int) -> str:
    for div, suffix in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if c >= div:
            return f"{c // div}{suffix}"
    return str(c)


def histogram_svg(hist: object, quantiles: dict, stats: dict) -> str:
    """The activation histogram: one bar per non-empty bin on a linear activation axis, counts on a log
    scale (heavy tails would otherwise be invisible), a marker per quantile.

    Bins may have unequal widths (the store's grid is logarithmic in magnitude), so each bar spans its
    own [lower, upper]; a bar is at least 1 px wide so that a narrow bin near zero stays visible.
    """
    hist = hist if isinstance(hist, dict) else {}
    cols = [hist.get(k) if isinstance(hist.get(k), list) else [] for k in ("lower", "upper", "counts")]
    bins = [
        (lo, hi, int(c))
        for lo, hi, c in zip(*[[_num(v) for v in col] for col in cols], strict=False)
        if lo is not None and hi is not None and c is not None and c > 0
    ]
    if not bins:
        return f'<p class="muted">No histogram ({DASH}).</p>'
    ends = [v for b in bins for v in b[:2]] + [
        v for v in (_num(stats.get("min")), _num(stats.get("max"))) if v is not None
    ]
    x0, x1 = min(ends), max(ends)
    if x1 - x0 < 1e-12:
        x0, x1 = x0 - 0.5, x1 + 0.5
    w, h, left, right, top, bottom = 720, 250, 58, 18, 44, 42
    pw, ph = w - left - right, h - top - bottom
    cmax = max(c for _, _, c in bins)
    ylog = math.log10(1 + cmax)

    def x(v: float) -> float:
        return left + (min(max(v, x0), x1) - x0) / (x1 - x0) * pw

    def y(c: float) -> float:
        return top + ph - (math.log10(1 + c) / ylog) * ph

    parts = [f'<svg class="hist" viewBox="0 0 {w} {h}" role="img" aria-label="Histogram of activations">']
    powers = [10**k for k in range(int(math.log10(cmax)) + 1)]
    for p in powers[:: max(1, math.ceil(len(powers) / 6))]:
        parts.append(
            f'<line class="grid" x1="{left}" x2="{w - right}" y1="{y(p):.1f}" y2="{y(p):.1f}"/>'
            f'<text class="tick" x="{left - 6}" y="{y(p) + 4:.1f}" text-anchor="end">{_count_label(p)}</text>'
        )
    for t in _ticks(x0, x1):
        parts.append(
            f'<line class="axis" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top + ph}" y2="{top + ph + 5}"/>'
            f'<text class="tick" x="{x(t):.1f}" y="{top + ph + 18}" text-anchor="middle">{t:g}</text>'
        )
    if x0 < 0 < x1:
        parts.append(f'<line class="zero" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top}" y2="{top + ph}"/>')
    for lo, hi, c in bins:
        bx = x(lo)
        parts.append(
            f'<rect class="bar" x="{bx:.2f}" y="{y(c):.2f}" width="{max(x(hi) - bx, 1.0):.2f}" '
            f'height="{top + ph - y(c):.2f}"><title>{c:,} tokens in [{lo:.3g}, {hi:.3g})</title></rect>'
        )
    # Quantile labels sit on up to three rows so that nearby quantiles do not overprint each other;
    # one that finds no room keeps its line and tooltip (the table below the chart lists every value).
    rows_end = [-1e9, -1e9, -1e9]
    for q, v in sorted(
        ((_qnum(q), _num(v)) for q, v in (quantiles or {}).items()), key=lambda qv: qv[1] or 0.0
    ):
        if q is None or v is None:
            continue
        qx = x(v)
        parts.append(
            f'<line class="q" x1="{qx:.1f}" x2="{qx:.1f}" y1="{top - 4}" y2="{top + ph}">'
            f"<title>p{100 * q:g} = {v:.3g}</title></line>"
        )
        row = next((r for r, end in enumerate(rows_end) if qx - end > 34), None)
        if row is not None:
            rows_end[row] = qx
            parts.append(
                f'<text class="qlabel" x="{qx:.1f}" y="{top - 8 - 12 * row}" text-anchor="middle">'
                f"p{100 * q:g}</text>"
            )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{w - right}" y1="{top + ph}" y2="{top + ph}"/>'
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}"/>'
        f'<text class="axis-label" x="{left + pw / 2}" y="{h - 6}" text-anchor="middle">activation</text>'
        f'<text class="axis-label" transform="translate(14 {top + ph / 2}) rotate(-90)" '
        'text-anchor="middle">tokens (log scale)</text></svg>'
    )
    return "".join(parts)


def rounds_svg(rounds: list[dict]) -> str:
    """A small line chart of train (dashed) and held-out (solid) score per refinement round."""
    keys = (("train_score", "train"), ("heldout_score", "held-out"))
    series = {k: [(i, _num(r.get(k))) for i, r in enumerate(rounds)] for k, _ in keys}
    vals = [v for s in series.values() for _, v in s if v is not None]
    if len(rounds) < 2 or not vals:
        return ""
    w, h, left, right, top, bottom = 260, 112, 36, 10, 8, 40
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05

    def x(i: int) -> float:
        return left + i / (len(rounds) - 1) * (w - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (h - top - bottom - 6)

    base = h - bottom
    parts = [
        f'<svg class="rounds-chart" viewBox="0 0 {w} {h}" role="img" aria-label="Score per round">',
        f'<line class="axis" x1="{left}" x2="{w - right}" y1="{base}" y2="{base}"/>',
        f'<text class="tick" x="{left - 5}" y="{y(hi) + 4:.1f}" text-anchor="end">{hi:.2f}</text>',
        f'<text class="tick" x="{left - 5}" y="{y(lo) + 4:.1f}" text-anchor="end">{lo:.2f}</text>',
    ]
    for i, r in enumerate(rounds):
        parts.append(
            f'<text class="tick" x="{x(i):.1f}" y="{base + 13}" text-anchor="middle">{_e(r.get("round", i))}</text>'
        )
    for k, (key, name) in enumerate(keys):
        pts = [(x(i), y(v)) for i, v in series[key] if v is not None]
        parts.append(f'<polyline class="{key}" points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}"/>')
        parts.extend(f'<circle class="{key}" cx="{a:.1f}" cy="{b:.1f}" r="2.5"/>' for a, b in pts)
        lx = left + 90 * k
        parts.append(
            f'<polyline class="{key}" points="{lx},{h - 6} {lx + 18},{h - 6}"/>'
            f'<text class="tick" x="{lx + 23}" y="{h - 2}">{name}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
