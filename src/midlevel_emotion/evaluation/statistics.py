"""The evaluation's statistics, on the per-model runs x targets tables :mod:`collect` builds.

Table 2 and Table 3 (mean and sample std over runs), the cost of explainability with paired
tests across runs, calibration (test MSE against the predict-the-train-mean baseline), the
learned mid-level -> emotion weights against the synthetic corpus's planted ones, and how much
the runs' learned weights agree with each other (stability).
A score of NaN (a constant prediction or target) is a missing value: it is left out of means
and of the paired tests, and ``n_runs`` says how many runs were used.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..experiments.results import group_mse
from ..learning.scores import pearson

#: The models of Table 2, in the paper's row order: key -> display name.
TABLE2_MODELS: dict[str, str] = {
    "mid2e": "Mid2E",
    "a2e": "A2E",
    "a2mid2e": "A2Mid2E",
    "joint": "A2Mid2E-Joint",
}
#: The cost-of-explainability rows: key -> (model compared with A2E, display name).
COE_ROWS: dict[str, tuple[str, str]] = {
    "coe_a2mid2e": ("a2mid2e", "CoE A2Mid2E"),
    "coe_joint": ("joint", "CoE A2Mid2E-Joint"),
}
#: The models of Table 3: key -> display name (``joint`` is the Joint model's mid-level output).
TABLE3_MODELS: dict[str, str] = {"a2mid_plus": "A2Mid+", "a2mid": "A2Mid", "joint": "Joint"}
#: The calibration rows, in report order: model (as in the records) -> display name.
CALIBRATION_MODELS: dict[str, str] = {"mid2e": "Mid2E", "a2e": "A2E", "a2mid2e": "A2Mid2E",
                                      "joint": "A2Mid2E-Joint", "a2mid_plus": "A2Mid+", "a2mid": "A2Mid"}
AVERAGE = "average"
BASELINE = "a2e"
Runs = Mapping[str, pd.DataFrame]


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


# ---------------------------------------------------------------------------------------
# Tables


def _mean_std_row(runs: pd.DataFrame, targets: tuple[str, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for target in targets + (AVERAGE,):
        stats_ = mean_std(column(runs, target))
        row[target] = {"mean": stats_["mean"], "std": stats_["std"]}
    row["n_runs"] = len(runs)
    return row


def table2(runs: Runs) -> dict[str, dict[str, Any]]:
    """Table 2: per model, per emotion and on average, mean and std of test r over runs.

    Returns
    -------
    dict
        ``{model: {emotion | "average": {"mean", "std"}, "n_runs": int}}`` for the models of
        :data:`TABLE2_MODELS` that ran.
    """
    return {name: _mean_std_row(runs[name], EMOTIONS) for name in TABLE2_MODELS if name in runs}


def cost_of_explainability(baseline: pd.DataFrame, model: pd.DataFrame) -> dict[str, Any]:
    """CoE = r(A2E) - r(model), per emotion and on average, with paired tests across runs.

    Parameters
    ----------
    baseline, model : DataFrame
        A2E's runs and the explainable model's, indexed by seed (paired by seed).

    Returns
    -------
    dict
        ``{emotion | "average": paired_tests(...)}`` plus ``n_runs``. Positive = A2E better.
    """
    model = model.reindex(baseline.index)
    out: dict[str, Any] = {target: paired_tests(column(baseline, target), column(model, target))
                           for target in EMOTIONS + (AVERAGE,)}
    out["n_runs"] = len(baseline)
    return out


def coe_table(runs: Runs) -> dict[str, dict[str, Any]]:
    """Both CoE rows of Table 2 (only for models that ran, and only when A2E ran)."""
    if BASELINE not in runs:
        return {}
    return {key: cost_of_explainability(runs[BASELINE], runs[name])
            for key, (name, _) in COE_ROWS.items() if name in runs}


def table3(runs: Runs) -> dict[str, dict[str, Any]]:
    """Table 3: per mid-level feature, test r of A2Mid+, A2Mid (one model each) and Joint.

    Returns
    -------
    dict
        ``{"a2mid_plus": {feature | "average": r}, "a2mid": {...},
        "joint": {feature | "average": {"mean", "std"}, "n_runs": int}}``, models that did
        not run left out. ``average`` is the mean over features (NaN left out).
    """
    out: dict[str, dict[str, Any]] = {}
    for name in ("a2mid_plus", "a2mid"):
        if name in runs:
            values = runs[name].iloc[0].to_numpy(dtype=np.float64)
            row = {f: (None if not math.isfinite(v) else float(v)) for f, v in zip(MIDLEVEL_FEATURES, values)}
            row[AVERAGE] = mean_std(values)["mean"]
            out[name] = row
    if "joint_midlevel" in runs:
        out["joint"] = _mean_std_row(runs["joint_midlevel"], MIDLEVEL_FEATURES)
    return out


def calibration(scores: pd.DataFrame) -> dict[str, dict[str, dict[str, float | int]]]:
    """Test MSE of every model against the predict-the-train-mean baseline.

    Pearson r ignores offset and scale; MSE does not, so this shows whether a model's outputs
    are usable as ratings and not only correlated with them.

    Parameters
    ----------
    scores : DataFrame
        The records (:mod:`midlevel_emotion.experiments.results`).

    Returns
    -------
    dict
        ``{model: {"midlevel" | "emotions": {"model_mse", "baseline_mse", "ratio",
        "runs_better", "n_runs"}}}``: means over runs of each run's group MSE
        (:func:`midlevel_emotion.experiments.results.group_mse`), ``ratio`` = mean over runs of model /
        baseline MSE (below 1 = better than the baseline), ``runs_better`` = runs whose model
        MSE is below the baseline's. Models without a test split are left out.
    """
    per_run = group_mse(scores).dropna(subset=["mse", "baseline_mse"])
    result: dict[str, dict[str, dict[str, float | int]]] = {}
    for name in CALIBRATION_MODELS:
        for group in ("midlevel", "emotions"):
            rows = per_run[(per_run["model"] == name) & (per_run["group"] == group)]
            if rows.empty:
                continue
            model, baseline = rows["mse"].to_numpy(), rows["baseline_mse"].to_numpy()
            result.setdefault(name, {})[group] = {
                "model_mse": float(model.mean()), "baseline_mse": float(baseline.mean()),
                "ratio": float(np.mean(model / baseline)), "runs_better": int((model < baseline).sum()),
                "n_runs": len(rows)}
    return result


# ---------------------------------------------------------------------------------------
# Explanations against the synthetic corpus's planted weights


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


# ---------------------------------------------------------------------------------------
# Stability of the explanations across runs


def _stacked_weights(weights: Mapping[int, np.ndarray]) -> np.ndarray:
    """The runs' emotion layers as one (n_runs, 8, 7) array, in seed order."""
    stacked = [np.asarray(weights[s], dtype=np.float64) for s in sorted(weights)]
    shape = (len(EMOTIONS), len(MIDLEVEL_FEATURES))
    for seed, w in zip(sorted(weights), stacked):
        if w.shape != shape:
            raise ValueError(f"seed {seed}: emotion layer of shape {w.shape}, expected {shape}")
    return np.stack(stacked) if stacked else np.empty((0, *shape))


def sign_agreement_per_weight(weights: Mapping[int, np.ndarray]) -> np.ndarray:
    """Per weight, the share of runs whose sign equals the majority sign.

    Parameters
    ----------
    weights : mapping
        Seed -> the run's emotion layer, shape (8, 7) (rows emotions, columns features).

    Returns
    -------
    np.ndarray
        Shape (8, 7), values in [0, 1]: 1 = every run gives the weight the same sign. Signs
        are -1, 0 and +1 (an exactly zero weight is its own class: it states no direction, so
        it agrees only with other exact zeros); a non-finite weight has no sign and agrees
        with none. With two runs that split, the share is 1/2.

    Raises
    ------
    ValueError
        No runs, or a matrix that is not 8x7.
    """
    w = _stacked_weights(weights)
    if not len(w):
        raise ValueError("sign agreement needs at least one run")
    signs = np.sign(w)  # NaN stays NaN and so equals none of the three classes below
    counts = np.stack([(signs == s).sum(axis=0) for s in (-1.0, 0.0, 1.0)])
    return counts.max(axis=0) / len(w)


def weight_stability(weights: Mapping[int, np.ndarray]) -> dict[str, float | int | None]:
    """How much the runs of one model agree on its mid-level -> emotion layer.

    Compares the runs with each other, not with a truth, so it applies to real data too: an
    explanation that changes from run to run (seed: split and initialisation) explains the
    run more than the music.

    Parameters
    ----------
    weights : mapping
        Seed -> the run's emotion layer, shape (8, 7), as
        :func:`midlevel_emotion.evaluation.collect.learned_weights` gives them.

    Returns
    -------
    dict
        - ``n_runs``: runs compared.
        - ``pairwise_r_mean``, ``pairwise_r_min``: Pearson r (:func:`midlevel_emotion.learning.scores.pearson`)
          between the flattened 56 weights of two runs, mean and minimum over every pair
          of runs. Scale-free, like ``weight_correlation`` against the planted map: two runs
          whose layers differ only by a positive factor have r = 1.
        - ``n_pairs``: pairs whose r is defined (the mean and min are over these).
        - ``degenerate_runs``: runs whose layer is constant (e.g. all zeros) or holds a
          non-finite weight. Their r with any run is undefined (no variance, or no value), so their
          pairs are reported as missing, not raised on and not counted as 0: the same rule as
          a NaN test r elsewhere in this module. When every pair is undefined the r values
          are None.
        - ``sign_agreement_mean``, ``sign_agreement_min``: mean and minimum over the 56
          weights of :func:`sign_agreement_per_weight`.

        With fewer than 2 runs there is nothing to compare: every value except ``n_runs``,
        ``n_pairs`` (0) and ``degenerate_runs`` is None (as :func:`mean_std` gives no std
        for one run), never a made-up 1.

    Raises
    ------
    ValueError
        A matrix that is not 8x7.
    """
    w = _stacked_weights(weights)
    n = len(w)
    flat = w.reshape(n, len(EMOTIONS) * len(MIDLEVEL_FEATURES))
    # constant or non-finite: no variance to correlate (NaN ptp compares False, hence both tests)
    degenerate = int(np.sum(~np.isfinite(flat).all(axis=1) | (np.ptp(flat, axis=1) == 0)))
    out: dict[str, float | int | None] = {
        "n_runs": n, "pairwise_r_mean": None, "pairwise_r_min": None, "n_pairs": 0,
        "degenerate_runs": degenerate, "sign_agreement_mean": None, "sign_agreement_min": None}
    if n < 2:
        return out
    first, second = np.triu_indices(n, k=1)
    # pearson correlates column by column: one column per pair of runs
    r = pearson(flat[first].T, flat[second].T)
    r = r[np.isfinite(r)]
    if r.size:
        out.update(pairwise_r_mean=float(r.mean()), pairwise_r_min=float(r.min()), n_pairs=int(r.size))
    agreement = sign_agreement_per_weight(weights)
    out.update(sign_agreement_mean=float(agreement.mean()), sign_agreement_min=float(agreement.min()))
    return out


def explanation_stability(learned: Mapping[str, dict[int, np.ndarray] | str]
                          ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]:
    """:func:`weight_stability` of every model :func:`~midlevel_emotion.evaluation.collect.learned_weights` read.

    Parameters
    ----------
    learned : mapping
        Model -> {seed: (8, 7) emotion layer}, or a reason string when it has none (the
        same input as :func:`explanation_truth`).

    Returns
    -------
    metrics : dict
        ``{model: weight_stability(...)}`` (scalars only, for the metrics file).
    per_weight : dict
        Model -> :func:`sign_agreement_per_weight`, (8, 7), for models with 2+ runs (for the
        report; a matrix has no place in the metrics file).
    skipped : dict
        Model -> why it has no weights.
    """
    metrics: dict[str, Any] = {}
    per_weight: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for name, per_seed in learned.items():
        if isinstance(per_seed, str):
            skipped[name] = per_seed
            continue
        metrics[name] = weight_stability(per_seed)
        if len(per_seed) >= 2:
            per_weight[name] = sign_agreement_per_weight(per_seed)
    return metrics, per_weight, skipped


# ---------------------------------------------------------------------------------------
# Metrics hygiene


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
