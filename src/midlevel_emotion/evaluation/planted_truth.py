"""The learned mid-level -> emotion weights against the synthetic corpus's planted ones."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..learning.scores import pearson
from .statistics import mean_std


def _value(score: Any) -> float:
    return float("nan") if score is None else float(score)


def weights_vs_truth(truth: np.ndarray, learned: np.ndarray) -> dict[str, float | None]:
    """Compare learned mid-level -> emotion weights with the planted ones.

    Parameters
    ----------
    truth, learned : np.ndarray
        Shape (8, 7) each (rows emotions, columns features).

    Returns
    -------
    dict
        ``weight_correlation``: Pearson r over the 56 entries (scale-free: A2Mid2E and Joint
        read predicted mid-level values, whose scale may differ from the annotations');
        ``sign_agreement``: share of the planted non-zero weights whose learned weight has
        the same sign (None when every planted weight is zero); ``relative_error``:
        ``||learned - truth|| / ||truth||`` (Frobenius; scale-dependent, so meaningful where the
        mid-level inputs are on the annotations' scale: Mid2E, and Joint, whose mid-level
        output is supervised on them).
    """
    t = np.asarray(truth, dtype=np.float64)
    w = np.asarray(learned, dtype=np.float64)
    if t.shape != w.shape:
        raise ValueError(f"shape mismatch: truth {t.shape} vs learned {w.shape}")
    r = pearson(t.ravel(), w.ravel())[0]
    nonzero = t != 0
    agreement = float(np.mean(np.sign(w[nonzero]) == np.sign(t[nonzero]))) if nonzero.any() else None
    norm = float(np.linalg.norm(t))
    relative = float(np.linalg.norm(w - t) / norm) if norm > 0 else None
    return {"weight_correlation": None if not np.isfinite(r) else float(r), "sign_agreement": agreement,
            "relative_error": relative}


def explanation_truth(truth: np.ndarray, learned: Mapping[str, dict[int, np.ndarray] | str]
                      ) -> tuple[dict[str, Any], dict[str, str]]:
    """Score every model's learned weights against the planted ones, mean +/- std over runs.

    Returns
    -------
    metrics : dict
        ``{model: {"weight_correlation" | "sign_agreement" | "relative_error": {"mean", "std"},
        "n_runs": int}}``.
    skipped : dict
        model -> why it is not scored.
    """
    metrics: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, per_seed in learned.items():
        if isinstance(per_seed, str):
            skipped[name] = per_seed
            continue
        scores = [weights_vs_truth(truth, w) for w in per_seed.values()]
        row: dict[str, Any] = {}
        for key in ("weight_correlation", "sign_agreement", "relative_error"):
            s = mean_std(np.array([_value(x[key]) for x in scores]))
            row[key] = {"mean": s["mean"], "std": s["std"]}
        row["n_runs"] = len(scores)
        metrics[name] = row
    return metrics, skipped
