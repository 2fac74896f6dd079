"""Reading and writing explanations: JSON Lines, one explanation per line, written atomically."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ..errors import ExplanationError
from ..io import read_jsonl, write_jsonl, write_text  # noqa: F401  (JSONL helpers re-exported)
from .model import Explanation


def read_explanations(path: str | Path) -> list[Explanation]:
    """Explanations from a ``.jsonl`` file (one per line) or a ``.json`` file holding a list or one object.

    Lines of an ``explain`` output that carry the explanation under ``"explanation"`` are accepted too.
    """
    path = Path(path)
    if not path.is_file():
        raise ExplanationError(f"explanations file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    items: list[tuple[str, object]] = []
    if path.suffix == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ExplanationError(f"{path}: not valid JSON ({e})") from None
        for i, o in enumerate(obj if isinstance(obj, list) else [obj]):
            items.append((f"{path.name}[{i}]", o))
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append((f"{path.name}:{n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ExplanationError(f"{path.name}:{n}: not valid JSON ({e})") from None
    out = []
    for where, o in items:
        if isinstance(o, dict) and isinstance(o.get("explanation"), dict):
            o = o["explanation"]
        out.append(Explanation.from_dict(o, where))
    return out


def write_explanations(path: str | Path, explanations: Iterable[Explanation]) -> None:
    """Writes JSON Lines atomically (temp file + rename)."""
    write_jsonl(path, (e.to_dict() for e in explanations))
