"""The scaling curve as a small standalone SVG (no plotting library): tokens/s and peak RSS against corpus
tokens (log scale), one panel each."""

from __future__ import annotations

import math
from html import escape


def _panel(x0: float, title: str, xs: list[float], ys: list[float], unit: str, w: float = 340,
           h: float = 220) -> str:
    left, right, top, bottom = 62, 14, 30, 40
    pw, ph = w - left - right, h - top - bottom
    lx = [math.log10(x) for x in xs]
    xlo, xhi = (min(lx) - 0.1, max(lx) + 0.1) if len(lx) > 1 else (lx[0] - 1, lx[0] + 1)
    yhi = max(ys) * 1.15 if max(ys) > 0 else 1.0

    def px(v: float) -> float:
        return x0 + left + (math.log10(v) - xlo) / (xhi - xlo) * pw

    def py(v: float) -> float:
        return top + ph - v / yhi * ph

    parts = [f'<text x="{x0 + left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
             f'<rect x="{x0 + left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for k in range(5):
        v = yhi * k / 4
        parts.append(f'<text x="{x0 + left - 6}" y="{py(v) + 4:.1f}" font-size="10" text-anchor="end">'
                     f'{v:,.0f}</text>')
        parts.append(f'<line x1="{x0 + left}" x2="{x0 + left + pw}" y1="{py(v):.1f}" y2="{py(v):.1f}" '
                     'stroke="#eee"/>')
    for x in xs:
        label = f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k"
        parts.append(f'<text x="{px(x):.1f}" y="{top + ph + 16}" font-size="10" text-anchor="middle">{label}</text>')
    parts.append(f'<text x="{x0 + left + pw / 2}" y="{h - 6}" font-size="11" text-anchor="middle">'
                 f'corpus tokens (log scale)</text>')
    parts.append(f'<text x="{x0 + 12}" y="{top + ph / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 {x0 + 12} {top + ph / 2})">{escape(unit)}</text>')
    pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
    parts.append(f'<polyline points="{pts}" fill="none" stroke="#1f6feb" stroke-width="2"/>')
    parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="#1f6feb"><title>{y:,.1f}</title></circle>'
              for x, y in zip(xs, ys, strict=True)]
    return "\n".join(parts)


def scaling_svg(result: dict) -> str:
    """Two panels from ``bench_scaling``'s result: mining tokens/s and peak RSS (MiB) per corpus size."""
    pts = result["points"]
    xs = [float(p["tokens"]) for p in pts]
    body = _panel(0, "mining throughput", xs, [p["mined_tokens_per_s"] for p in pts], "tokens/s")
    body += _panel(350, "peak RSS", xs, [p["peak_rss_mib"] for p in pts], "MiB")
    title = escape(f"neuronscope scaling: {result.get('subject', '')}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="700" height="250" viewBox="0 0 700 250" '
            f'font-family="sans-serif"><title>{title}</title><rect width="700" height="250" fill="white"/>'
            f"{body}</svg>\n")
