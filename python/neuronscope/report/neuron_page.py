"""One page per neuron (``neurons/L{layer}_N{index}.html``): statistics, the activation histogram, each
explainer method's modes with their conditions, scores and exemplars side by side, the top activations with
every context token shaded by its activation, and the agent transcripts.

Every value comes from an untrusted dict (``report.html``'s schema) and is escaped here; labels, descriptions
and tokens are bidi-isolated, so right-to-left text stays inside its own element.
"""

from __future__ import annotations

import json

from .markup import DASH, count, esc, fixed, neuron_page_name, num, page, pct, qnum, score, sig, strs
from .svg import histogram_svg, rounds_svg

METHOD_ORDER = ("neuronscope", "single-pass")
"""Methods shown first, in this order (side by side when both exist); any others follow by name."""


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
        ("tokens", count(stats.get("count"))),
        ("mean", sig(stats.get("mean"))),
        ("std", sig(stats.get("std"))),
        ("min", sig(stats.get("min"))),
        ("max", sig(stats.get("max"))),
        ("positive", pct(stats.get("frac_positive"))),
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
<p class="sub" dir="auto">{esc(n.get("model"))}</p>
<dl class="meta stats">{"".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in stat_items)}</dl>
</header>
<main>
<section class="hist-box">
<h2>Activation histogram</h2>
<div class="hist-row">{histogram_svg(n.get("hist"), quantiles, stats)}{_quantile_table(quantiles)}</div>
</section>
<p class="legend">Token shading: <span class="tok" style="{_shade(scale, scale)}">positive</span>
<span class="tok" style="{_shade(-scale, scale)}">negative</span> activation, relative to the neuron's maximum
{sig(scale)}; the outlined token is the one the exemplar is about. Hover a token for its activation.</p>
<div class="{grid}">{sections}</div>
<section id="top" class="top-acts">
<h2>Top activations</h2>
<div class="exemplars">{top}</div>
</section>
{transcripts}
</main>"""
    return page(f"L{layer} N{index} · {title}", body, root="../")


def _scale(n: dict, stats: dict) -> float:
    """The activation that gets full colour: the neuron's maximum, else the largest shown activation."""
    mx = num(stats.get("max"))
    if mx is not None and mx > 0:
        return mx
    acts = [
        abs(v)
        for x in n.get("top") or []
        if isinstance(x, dict)
        for v in [num(a) for a in (x.get("acts") or [])] + [num(x.get("activation"))]
        if v is not None
    ]
    return max(acts, default=0.0) or 1.0


def _quantile_table(quantiles: dict) -> str:
    cells = []
    for q, v in sorted(((qnum(q), v) for q, v in quantiles.items()), key=lambda qv: qv[0] or 0.0):
        if q is not None:
            cells.append(f"<div><dt>p{100 * q:g}</dt><dd>{sig(v)}</dd></div>")
    return f'<dl class="quantiles">{"".join(cells)}</dl>' if cells else ""


def _method(name: str, m: object, scale: float) -> str:
    m = m if isinstance(m, dict) else {}
    sub = " · ".join(
        s
        for s in (
            esc(m["backend"]) if m.get("backend") else "",
            f"{fixed(m.get('seconds'), 1)} s" if num(m.get("seconds")) is not None else "",
        )
        if s
    )
    scores = (
        f'<span class="pill">score <b>{score(m, "score")}</b></span>'
        f'<span class="pill">coverage <b>{pct(m.get("coverage"))}</b></span>'
        f'<span class="pill">top score <b>{score(m, "top_score")}</b></span>'
    )
    text = f'<p class="text" dir="auto">{esc(m["text"])}</p>' if isinstance(m.get("text"), str) and m["text"] else ""
    rounds = [r for r in m.get("rounds") or [] if isinstance(r, dict)]
    rounds_html = ""
    if rounds:
        trs = "".join(
            f'<tr><td class="num">{esc(r.get("round", k))}</td><td class="num">{score(r, "train_score")}'
            f'</td><td class="num">{score(r, "heldout_score")}</td>'
            f'<td class="num">{count(r.get("modes"))}</td></tr>'
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
        f'<section class="method" data-method="{esc(name)}">\n<h2>{esc(name)} <span class="sub">{sub}</span></h2>\n'
        f'<div class="scores">{scores}</div>\n{text}{rounds_html}\n<h3>Modes ({len(modes)})</h3>\n{modes_html}\n'
        "</section>\n"
    )


def _mode(k: int, m: dict, scale: float) -> str:
    share = num(m.get("share"))
    bar = ""
    if share is not None:
        width = 100 * min(max(share, 0.0), 1.0)
        bar = (
            '<span class="share" title="share of the neuron\'s activating tokens">'
            f'<span style="width:{width:.0f}%"></span></span>'
        )
    stats = (
        f"strength {sig(m.get('strength'))} · score {score(m, 'score')} · "
        f"coverage {pct(m.get('coverage'))} · share {pct(share)}"
    )
    conds = "".join(f"<li><code>{esc(c)}</code></li>" for c in strs(m.get("conditions")))
    conds = f'<ul class="conditions">{conds}</ul>' if conds else ""
    exemplars = "".join(_exemplar(x, scale) for x in m.get("exemplars") or [])
    exemplars = f'<div class="exemplars">{exemplars}</div>' if exemplars else ""
    return (
        f'<div class="mode"><div class="mode-head"><span class="num-badge">{k + 1}</span>'
        f'<span class="label" dir="auto">{esc(m.get("label"))}</span>{bar}</div>'
        f'<p class="mode-stats">{stats}</p><p class="desc" dir="auto">{esc(m.get("description"))}</p>'
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
    return esc(s.replace("\r\n", "\n").replace("\n", "↵").replace("\t", "⇥"))


def _exemplar(x: object, scale: float) -> str:
    if not isinstance(x, dict):
        return ""
    pieces = x.get("pieces") if isinstance(x.get("pieces"), list) else []
    acts = x.get("acts") if isinstance(x.get("acts"), list) and len(x["acts"]) == len(pieces) else None
    focus = x.get("focus") if isinstance(x.get("focus"), int) else None
    toks = []
    for i, p in enumerate(pieces):
        a = num(acts[i]) if acts is not None else (num(x.get("activation")) if i == focus else None)
        attrs = ' class="tok focus"' if i == focus else ' class="tok"'
        if style := _shade(a, scale):
            attrs += f' style="{style}"'
        if a is not None:
            attrs += f' title="{esc(f"activation {a + 0.0:.3g}")}"'
        toks.append(f"<span{attrs}>{_piece(p)}</span>")
    pos = num(x.get("position"))
    where = f' title="token position {int(pos)}"' if pos is not None else ""
    return (
        f'<div class="ex"><span class="ex-act"{where}>{sig(x.get("activation"))}</span>'
        f'<span class="ex-text">{"".join(toks)}</span></div>'
    )


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
            f'{"Round " + esc(r) if r is not None else "Steps"} <span class="muted">({_steps(len(g))})</span></summary>'
            f"{''.join(_step(s) for s in g)}</details>"
            for r, g in groups
        )
    return (
        f'<details class="transcript" data-method="{esc(name)}"><summary>Agent transcript · {esc(name)} '
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
        f'<div class="step"><span class="role">{esc(role if role is not None else "step")}</span>'
        f"{_value(rest)}</div>"
    )


def _value(v: object, depth: int = 0) -> str:
    """Any JSON-like value as HTML: dicts as definition lists, lists as lists, long strings as blocks."""
    if depth > 8:
        return f"<span>{esc(json.dumps(v, default=str)[:200])}</span>"
    if isinstance(v, dict):
        if not v:
            return f'<span class="muted">{DASH}</span>'
        return (
            '<dl class="kv">'
            + "".join(f"<dt>{esc(k)}</dt><dd>{_value(x, depth + 1)}</dd>" for k, x in v.items())
            + "</dl>"
        )
    if isinstance(v, list | tuple):
        if not v:
            return f'<span class="muted">{DASH}</span>'
        return '<ul class="tlist">' + "".join(f"<li>{_value(x, depth + 1)}</li>" for x in v) + "</ul>"
    if isinstance(v, str) and ("\n" in v or len(v) > 160):
        return f'<pre class="long">{esc(v)}</pre>'
    if isinstance(v, float):
        return f"<span>{esc(f'{v:.4g}')}</span>"
    return f"<span>{esc(v)}</span>"
