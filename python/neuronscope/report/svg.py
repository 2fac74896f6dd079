"""The neuron page's charts as inline SVG (no library, nothing to load): the activation histogram and the
score-per-round line chart. Inputs are the untrusted dicts of ``report.html``'s schema."""

from __future__ import annotations

import math

from .markup import DASH, esc, num, qnum


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
        for lo, hi, c in zip(*[[num(v) for v in col] for col in cols], strict=False)
        if lo is not None and hi is not None and c is not None and c > 0
    ]
    if not bins:
        return f'<p class="muted">No histogram ({DASH}).</p>'
    ends = [v for b in bins for v in b[:2]] + [
        v for v in (num(stats.get("min")), num(stats.get("max"))) if v is not None
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
        ((qnum(q), num(v)) for q, v in (quantiles or {}).items()), key=lambda qv: qv[1] or 0.0
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
    series = {k: [(i, num(r.get(k))) for i, r in enumerate(rounds)] for k, _ in keys}
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
            f'<text class="tick" x="{x(i):.1f}" y="{base + 13}" text-anchor="middle">{esc(r.get("round", i))}</text>'
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
