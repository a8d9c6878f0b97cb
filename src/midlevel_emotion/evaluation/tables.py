"""The paper's tables, on the per-model runs x targets tables :mod:`collect` builds.

Table 2 and Table 3 (mean and sample std over runs), the cost of explainability with paired
tests across runs (:mod:`midlevel_emotion.evaluation.statistics`, which also says how a NaN
score is handled), and calibration (test MSE against the predict-the-train-mean baseline).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..experiments.results import group_mse
from .statistics import AVERAGE, column, mean_std, paired_tests

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
BASELINE = "a2e"
Runs = Mapping[str, pd.DataFrame]


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
