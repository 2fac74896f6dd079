"""Undefined correlations, written the way each upstream tool writes them.

Pearson r is undefined when either side is constant or there are fewer than two tokens. neuronscope's
scorer reports 0.0 there (``scoring.corr``: convenient for ranking and means), which in an exported file
would read as "uncorrelated"; the exporters recompute the condition from the data and write what the
upstream code writes for its own undefined scores:

- OpenAI neuron-explainer: ``correlation_score`` is ``np.corrcoef(...)[0, 1]``, NaN for a constant
  side; its ``FastDataclass`` files are written with orjson, which writes NaN as ``null``; the aggregate
  is ``None`` when there are no tokens, and ``get_preferred_score`` documents ``None`` as undefined.
  So: ``null``.
- delphi's simulation scorer turns NaN into the string ``"nan"`` before writing (``ev_correlation_score:
  float | str``). So: ``"nan"``.

Constancy is tested exactly (max == min), not by a variance threshold: a mean of equal float values
need not equal them, so a centred variance can come out a tiny positive number for a constant input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

UNDEFINED_DELPHI = "nan"


def is_undefined(pred: torch.Tensor | np.ndarray | list[float], true: torch.Tensor | np.ndarray | list[float]) -> bool:
    """True when Pearson r of ``pred`` and ``true`` (same length) is undefined: < 2 values or a constant side."""
    x = np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred, dtype=np.float64)
    y = np.asarray(true.detach().cpu() if isinstance(true, torch.Tensor) else true, dtype=np.float64)
    if x.size < 2 or y.size < 2:
        return True
    return bool(x.max() == x.min() or y.max() == y.min())


def defined(score: float, pred: Any, true: Any) -> float:
    """``score`` where the correlation of ``pred`` and ``true`` is defined, NaN where it is not."""
    return math.nan if is_undefined(pred, true) or not math.isfinite(score) else float(score)


def openai_value(x: float | None) -> float | None:
    """A correlation as OpenAI's files hold it: the number, or ``None`` (``null``) when undefined."""
    return float(x) if x is not None and math.isfinite(x) else None


def delphi_value(x: float | None) -> float | str:
    """A correlation as delphi's simulation scorer writes it: the number, or ``"nan"`` when undefined."""
    return float(x) if x is not None and math.isfinite(x) else UNDEFINED_DELPHI


def read_correlation(value: Any) -> float | None:
    """An upstream correlation field read back: a finite float, NaN for undefined (``"nan"``, NaN, null),
    or None when the value is not a correlation at all (another type)."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return math.nan if value.strip().lower() == UNDEFINED_DELPHI else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else math.nan
    return None
