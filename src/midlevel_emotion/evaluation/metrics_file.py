"""The metrics file's hygiene: rounded numbers, NaN as null, and no lists."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def list_paths(obj: Any, where: str = "") -> list[str]:
    """Dotted paths of every list inside ``obj`` (the metrics file must have none)."""
    if isinstance(obj, (list, tuple)):
        return [where or "<root>"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in list_paths(v, f"{where}.{k}" if where else str(k))]
    return []


def rounded(obj: Any, digits: int = 4) -> Any:
    """Round floats for the metrics file (p-values to 4 significant digits); NaN -> None."""
    if isinstance(obj, dict):
        return {k: (_round_p(v) if k.startswith("p_") else rounded(v, digits)) for k, v in obj.items()}
    if isinstance(obj, (float, np.floating)):
        return None if not math.isfinite(obj) else round(float(obj), digits)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _round_p(p: Any) -> float | None:
    if p is None or not math.isfinite(p):
        return None
    return float(f"{float(p):.4g}")
