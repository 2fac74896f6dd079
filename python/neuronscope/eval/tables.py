"""The evaluation report (``eval.run.evaluate``'s dict) as Markdown tables: ``eval.md``."""

from __future__ import annotations

from .families import FAMILIES

GRAMMAR_KINDS = ("mono", "2-mode", "3-mode", "unequal", "context", "duplicate", "weak")
KIND_ORDER = ("all", *GRAMMAR_KINDS, *FAMILIES)


def _fmt(s: dict) -> str:
    m, (lo, hi) = s["mean"], s["ci95"]
    return "–" if m != m else f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def _num(x: float | None, digits: int = 2) -> str:
    if x is None or x != x:
        return "–"
    return str(int(x)) if float(x).is_integer() else f"{x:.{digits}f}"


def _compact(dist: dict) -> str:
    """``{1: 3, 2: 0, 3: 1}`` → ``1×3, 3×1`` (meanings × neurons)."""
    return ", ".join(f"{k}×{v}" for k, v in dist["counts"].items() if v) or "–"


def _kinds(per: dict) -> list[str]:
    known = [k for k in KIND_ORDER if k in per]
    return known + sorted(k for k in per if k not in KIND_ORDER)


def _distribution(title: str, dists: dict) -> list[str]:
    top = max((int(k) for d in dists.values() for k in d["counts"]), default=0)
    cols = list(range(top + 1))
    head = "| method | n | min | Q1 | median | Q3 | max | mean | " + " | ".join(str(c) for c in cols) + " |"
    lines = [title, "", head, "|---" * (8 + len(cols)) + "|"]
    for m, d in dists.items():
        counts = {int(k): v for k, v in d["counts"].items()}
        lines.append(f"| {m} | {d['n']} | {_num(d['min'])} | {_num(d['q1'])} | {_num(d['median'])} | "
                     f"{_num(d['q3'])} | {_num(d['max'])} | {_num(d['mean'])} | "
                     + " | ".join(str(counts.get(c, 0)) for c in cols) + " |")
    return [*lines, "", "(columns 0, 1, 2, …: how many neurons got that many meanings)", ""]


def _named(title: str, named: dict) -> list[str]:
    lines = [title, "", "| method | meanings | labels naming a concept | share |", "|---|---|---|---|"]
    for m, s in named.items():
        lines.append(f"| {m} | {s['meanings']} | {s['named']} | {_num(s['share'], 3)} |")
    return [*lines, ""]


def _pairs(title: str, pairs: list[dict]) -> list[str]:
    if not pairs:
        return []
    lines = [title, "", "| comparison | n | mean Score diff | wins | losses | ties | Wilcoxon p |",
             "|---|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(f"| {p['a']} − {p['b']} | {p['n']} | {p['mean_diff']:+.3f} | {p['a_better']} | "
                     f"{p['b_better']} | {p['ties']} | {p['p']:.2g} |")
    return [*lines, ""]


def _planted(rep: dict) -> list[str]:
    lines = ["## Planted neurons", "",
             "Explained meanings (the background term excluded) are matched one-to-one to true modes by the IoU of "
             "their firing sets over the whole corpus (≥ 0.5; near-duplicate true modes count as one). Exact Number: "
             "share of neurons explained with as many meanings as true modes. Families `category` … `context-pair` "
             "lie outside the explainer's condition grammar.", "",
             "| method | family | n | Score | mode recall | mode precision | exact Number | meanings found | "
             "true modes | meanings × neurons |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m, per in rep["per_method"].items():
        fam = rep.get("modes_found_by_family", {}).get(m, {})
        for kind in _kinds(per):
            s = per[kind]
            dist = rep["modes_found"][m] if kind == "all" else fam.get(kind)
            lines.append(f"| {m} | {kind} | {s['n']} | {_fmt(s['score'])} | {_fmt(s['recall'])} | "
                         f"{_fmt(s['precision'])} | {_fmt(s['exact'])} | {_num(s['n_found']['mean'])} | "
                         f"{_num(s['n_true']['mean'])} | {_compact(dist) if dist else '–'} |")
    lines.append("")
    lines += _distribution("**Meanings found per planted neuron**", rep["modes_found"])
    lines += _named("**Labels that name a concept** (planted; `mode.concept` set)", rep["concept_named"])
    lines += _pairs(f"**{rep['reference']} against each method** (planted, held-out Score)", rep["paired_score"])
    return lines


def _real(rep: dict) -> list[str]:
    lines = ["## Real neurons", "", "all-MiniLM-L6-v2, a seeded sample across all layers, held-out Score. "
             f"Polysemantic: {rep['polysemantic_rule']}.", "",
             "| method | n | Score | meanings (mean) | median meanings | ≥ 2 meanings | polysemantic (rule) |",
             "|---|---|---|---|---|---|---|"]
    for m, s in rep["per_method"].items():
        med = rep["modes_found"][m]["median"]
        lines.append(f"| {m} | {s['n']} | {_fmt(s['score'])} | {_fmt(s['modes'])} | {_num(med)} | "
                     f"{_fmt(s['multi'])} | {_fmt(s['polysemantic'])} |")
    lines.append("")
    lines += _distribution("**Meanings found per real neuron**", rep["modes_found"])
    lines += _named("**Labels that name a concept** (real; `mode.concept` set)", rep["concept_named"])
    lines += _pairs(f"**{rep['reference']} against each method** (real, held-out Score)", rep["paired_score"])
    return lines


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    lines = [f"Backend `{report['backend']}`, seed {report['seed']}, methods {', '.join(report['methods'])}; "
             "means with 95% bootstrap intervals.", ""]
    if "planted" in report:
        lines += _planted(report["planted"])
    if "real" in report:
        lines += _real(report["real"])
    secs = report.get("seconds", {})
    if secs:
        lines += ["Seconds: " + ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in secs.items()), ""]
    return "\n".join(lines).rstrip("\n") + "\n"
