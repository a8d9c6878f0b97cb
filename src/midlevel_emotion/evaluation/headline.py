"""The headline: the few numbers a reader compares between branches and against the paper.

``metrics/headline.json`` is the only file ``dvc metrics diff`` shows by default (about 30
rows); every per-run, per-target number stays in ``metrics/<stage>.json``,
``metrics/evaluate.json`` and ``results/<stage>/scores.csv`` (docs/comparing-and-ci.md).

Row names are the same in the headline file and in :func:`per_run`, which gives each row's
value for every run (seed) so that two revisions can be compared run by run
(:mod:`midlevel_emotion.evaluation.check`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .collect import Collected
from ..experiments.results import group_mse
from .statistics import run_averages
from .tables import BASELINE, COE_ROWS

#: Models with an average-r row: key (as in :data:`midlevel_emotion.evaluation.collect.MODELS`) ->
#: (model in the records, target group) for its MSE ratio.
R_ROWS: dict[str, tuple[str, str]] = {
    "mid2e": ("mid2e", "emotions"),
    "a2e": ("a2e", "emotions"),
    "a2mid2e": ("a2mid2e", "emotions"),
    "joint": ("joint", "emotions"),
    "joint_midlevel": ("joint", "midlevel"),
    "a2mid_plus": ("a2mid_plus", "midlevel"),
    "a2mid": ("a2mid", "midlevel"),
}
#: Which direction is better, by the last part of a row name.
HIGHER_IS_BETTER = {"r_avg": True, "mse_ratio": False, "average": False,
                    "weight_correlation": True, "sign_agreement": True}


def headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Select the headline from the evaluate stage's metrics (nested dicts, no lists).

    Per model: ``r_avg`` (mean and std over runs of each run's average test r; a single
    ``r_avg`` value for the one-run A2Mid models) and ``mse_ratio`` (model / train-mean
    baseline MSE, mean over runs). Per CoE row: the average and its paired p-values. On the
    synthetic corpus, ``planted_truth``: how well each explainable model's weights recover
    the planted ones.
    """
    table2, table3 = metrics.get("table2", {}), metrics.get("table3", {})
    calibration = metrics.get("calibration", {})
    out: dict[str, Any] = {"n_runs": metrics.get("n_runs")}
    for key, (model, group) in R_ROWS.items():
        if key in table2:
            r_avg = {"mean": table2[key]["average"]["mean"], "std": table2[key]["average"]["std"]}
        elif key == "joint_midlevel" and "joint" in table3:
            r_avg = {"mean": table3["joint"]["average"]["mean"], "std": table3["joint"]["average"]["std"]}
        elif key in ("a2mid_plus", "a2mid") and key in table3:
            r_avg = table3[key]["average"]
        else:
            continue
        row: dict[str, Any] = {"r_avg": r_avg}
        ratio = calibration.get(model, {}).get(group, {}).get("ratio")
        if ratio is not None:
            row["mse_ratio"] = ratio
        out[key] = row
    for key in COE_ROWS:
        if key in table2:
            average = table2[key]["average"]
            out[key] = {"average": average["mean"], "p_ttest": average.get("p_ttest"),
                        "p_wilcoxon": average.get("p_wilcoxon")}
    truth = metrics.get("explanation_truth", {})
    if truth:
        out["planted_truth"] = {model: {name: scored[name]["mean"]
                                        for name in ("weight_correlation", "sign_agreement")}
                                for model, scored in truth.items()}
    return out


def per_run(collected: Collected) -> dict[str, pd.Series]:
    """Each comparable headline row's value per run: ``{"a2e.r_avg": Series indexed by seed}``.

    Rows: every model's ``r_avg`` and ``mse_ratio``, and ``coe_<model>.average`` (A2E's
    average r minus the model's, run by run). The planted-truth rows need the trained
    weights, not the result tables, and are compared by their means only.
    """
    rows: dict[str, pd.Series] = {}
    averages = {key: pd.Series(run_averages(runs.to_numpy()), index=runs.index)
                for key, runs in collected.runs.items()}
    ratios = group_mse(collected.results.scores).dropna(subset=["mse", "baseline_mse"])
    for key, (model, group) in R_ROWS.items():
        if key in averages:
            rows[f"{key}.r_avg"] = averages[key]
        selected = ratios[(ratios["model"] == model) & (ratios["group"] == group)]
        if not selected.empty:
            rows[f"{key}.mse_ratio"] = pd.Series((selected["mse"] / selected["baseline_mse"]).to_numpy(),
                                                 index=selected["seed"].to_numpy())
    if BASELINE in averages:
        for key, (model, _) in COE_ROWS.items():
            if model in averages:
                rows[f"{key}.average"] = averages[BASELINE] - averages[model].reindex(averages[BASELINE].index)
    return {name: series.sort_index().astype(np.float64) for name, series in rows.items()}
