"""Statistics over runs, on the per-model runs x targets tables :mod:`collect` builds.

Each run's average over targets, mean and sample std over runs, and paired tests between two
models' runs (the cost of explainability: :mod:`midlevel_emotion.evaluation.tables`).
A score of NaN (a constant prediction or target) is a missing value: it is left out of means
and of the paired tests, and ``n_runs`` says how many runs were used.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

AVERAGE = "average"


def column(runs: pd.DataFrame, target: str) -> np.ndarray:
    """Per-run values of one target, or of ``"average"`` (each run's mean over targets)."""
    if target == AVERAGE:
        return run_averages(runs.to_numpy(dtype=np.float64))
    return runs[target].to_numpy(dtype=np.float64)


def _value(score: Any) -> float:
    return float("nan") if score is None else float(score)


def run_averages(values: np.ndarray) -> np.ndarray:
    """Each run's mean over targets (NaN scores left out): the paper's 'Avg.' per run."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape[0], np.nan)
    for i, row in enumerate(values):
        finite = row[np.isfinite(row)]
        if finite.size:
            out[i] = finite.mean()
    return out


def mean_std(values: np.ndarray) -> dict[str, float | int | None]:
    """Mean and sample standard deviation (ddof=1) over runs, ignoring NaN.

    Returns
    -------
    dict
        ``mean``, ``std`` (None with fewer than 2 finite values) and ``n_runs``.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return {"mean": float(v.mean()) if v.size else None,
            "std": float(v.std(ddof=1)) if v.size >= 2 else None,
            "n_runs": int(v.size)}


def paired_tests(baseline: np.ndarray, model: np.ndarray) -> dict[str, Any]:
    """Paired t-test and Wilcoxon signed-rank test of ``baseline - model`` across runs.

    Parameters
    ----------
    baseline, model : np.ndarray
        Per-run scores, paired by position (same seed); runs where either is NaN are dropped.

    Returns
    -------
    dict
        ``mean``/``std`` of the differences, ``n_runs`` (pairs used), ``p_ttest``
        (:func:`scipy.stats.ttest_rel`, two-sided) and ``p_wilcoxon``
        (:func:`scipy.stats.wilcoxon`, two-sided, zero differences dropped). A test that
        cannot be computed gives None and a ``ttest_reason``/``wilcoxon_reason``.
    """
    from scipy import stats

    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(model, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two 1-D arrays of the same length, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    diff = a - b
    out: dict[str, Any] = {**mean_std(diff), "p_ttest": None, "p_wilcoxon": None}
    n = diff.size
    if n < 2:
        reason = f"{n} paired run(s); a paired test needs at least 2"
        out.update(ttest_reason=reason, wilcoxon_reason=reason)
        return out
    if np.all(diff == 0):
        reason = "all paired differences are zero"
        out.update(ttest_reason=reason, wilcoxon_reason=reason)
        return out
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if np.ptp(diff) == 0:
            out["ttest_reason"] = "the difference is identical in every run (zero variance); t is undefined"
        else:
            p = float(stats.ttest_rel(a, b).pvalue)
            if math.isfinite(p):
                out["p_ttest"] = p
            else:
                out["ttest_reason"] = "scipy.stats.ttest_rel returned NaN"
        p = float(stats.wilcoxon(a, b).pvalue)
        if math.isfinite(p):
            out["p_wilcoxon"] = p
        else:
            out["wilcoxon_reason"] = "scipy.stats.wilcoxon returned NaN"
    return out


def min_wilcoxon_p(n_runs: int) -> float:
    """Smallest two-sided p the exact Wilcoxon signed-rank test can give with ``n_runs`` pairs."""
    return min(1.0, 2.0 / 2 ** n_runs) if n_runs > 0 else 1.0
