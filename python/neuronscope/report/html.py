"""The static site of a run: ``index.html`` (every neuron, sortable and filterable) and one page per neuron.

The site opens from ``file://`` with no server and no network: CSS and JS are local files under
``assets/``, and the index's rows travel inside the page as a JSON block, because Chromium refuses
``fetch()`` of ``file://`` URLs. Everything that comes from the corpus, the model or an LLM (tokens,
descriptions, labels, transcripts, meta values) is untrusted: neuron pages are rendered here with every
such string HTML-escaped, and ``report.js`` inserts the index's strings as text nodes only.

The pages live in ``index_page`` and ``neuron_page``, their charts in ``svg``, and the escaping and number
formats both share in ``markup``; this module writes the site.

Input schemas (any key but ``layer``/``index`` may be missing or ``None``; it then shows as "—", except that
a correlation score — ``score``, ``baseline_score``, ``top_score``, a mode's ``score``, a round's
``train_score``/``heldout_score`` — that is present but None or NaN is *undefined* and shows as "undefined"):

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

import re
from collections import Counter
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..io import write_text
from .index_page import index_page, table_row
from .markup import DASH, json_script, neuron_page_name
from .neuron_page import METHOD_ORDER, neuron_page
from .svg import histogram_svg, rounds_svg

__all__ = [
    "ASSETS",
    "DASH",
    "METHOD_ORDER",
    "histogram_svg",
    "index_page",
    "json_script",
    "neuron_page",
    "neuron_page_name",
    "render_site",
    "rounds_svg",
]

ASSETS = ("report.css", "report.js")
"""Files copied from ``static/`` to ``out/assets/``."""
_PAGE_RE = re.compile(r"L\d+_N\d+\.html")


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
            [table_row(r, key) for r, key in zip(index_rows, keys, strict=True)], title=title, meta=meta
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

