"""The site's ``index.html``: the run's meta, filters, and the table of every neuron.

The rows travel inside the page as a JSON block (Chromium refuses ``fetch()`` of ``file://`` URLs) that
``report.js`` turns into table rows, inserting every string as text. :func:`table_row` makes each row safe and
small first: a checked href, numbers or None, strings without bidi controls, and the list of scores that are
*undefined* (``report.markup``), so that the table can tell them from missing ones.
"""

from __future__ import annotations

import json
import numbers
import re

from .markup import clean, count, esc, is_undefined, json_script, neuron_page_name, num, page, strs

# A row's href is untrusted too: only a plain relative path to an .html page is kept as given.
_SAFE_HREF = re.compile(r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_./-]*\.html")

_COLUMNS = (
    ("layer", "num", "Layer"),
    ("index", "num", "Neuron"),
    ("n_modes", "num", "Modes"),
    ("score", "num", "Score"),
    ("baseline", "num", "Single-pass"),
    ("delta", "num", "Δ"),
    ("description", "text", "Description"),
)


def table_row(r: dict, key: tuple[int, int]) -> dict:
    """The JSON row of one neuron for ``report.js``, from an ``index_rows`` entry whose (layer, index) is ``key``.

    ``undefined`` lists the score columns ("score", "baseline", "delta") whose value is None because the
    correlation is undefined, not because it is missing; the difference is undefined when both scores are
    present and either is undefined.
    """
    href = r.get("href")
    if not (isinstance(href, str) and _SAFE_HREF.fullmatch(href)):
        href = neuron_page_name(*key)
    n_modes = num(r.get("n_modes"))
    score, base = num(r.get("score")), num(r.get("baseline_score"))
    undefined = [col for col, src in (("score", "score"), ("baseline", "baseline_score")) if is_undefined(r, src)]
    if score is None or base is None:
        delta = None
        if len(undefined) == 2 or (undefined and (score is not None or base is not None)):
            undefined.append("delta")
    else:
        delta = score - base
    desc = r.get("description")
    desc = desc if isinstance(desc, str) else ("" if desc is None else str(desc))
    return {
        "layer": key[0],
        "index": key[1],
        "n_modes": None if n_modes is None else int(n_modes),
        "score": score,
        "baseline": base,
        "delta": delta,
        "undefined": undefined,
        "description": clean(desc),
        "labels": [clean(s) for s in strs(r.get("labels")) if clean(s).strip()],
        "href": href,
    }


def index_page(rows: list[dict], *, title: str, meta: dict) -> str:
    """The index: header with the run's meta, filters, and a table that ``report.js`` fills from ``rows``
    (:func:`table_row` outputs)."""
    items = []
    for k, v in (meta or {}).items():
        if k == "command":
            continue
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            text = count(v)
        elif v is None or isinstance(v, str | numbers.Real):
            text = esc(v)
        else:
            text = esc(json.dumps(v, default=str))
        items.append(f'<div><dt>{esc(k)}</dt><dd dir="auto">{text}</dd></div>')
    command = (meta or {}).get("command")
    cmd = f'<p class="command"><code>{esc(command)}</code></p>' if command else ""
    layers = sorted({r["layer"] for r in rows})
    options = "".join(f'<option value="{layer}">Layer {layer}</option>' for layer in layers)
    heads = "".join(
        f'<th data-sort="{key}" data-type="{kind}" class="{kind}"><button type="button">{label}</button></th>'
        for key, kind, label in _COLUMNS
    )
    body = f"""<header class="top">
<h1 dir="auto">{esc(title)}</h1>
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
    return page(title, body, root="", script=True)
