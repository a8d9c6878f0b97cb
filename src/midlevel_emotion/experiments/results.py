"""One shape for every test result, written by every training stage and read by ``evaluate``.

A training stage writes its results folder (``results/<stage>/``, committed, a DVC output
with ``cache: false``) through :func:`write_stage`:

- ``scores.csv``: one record per (model, seed, target), columns :data:`RECORD_COLUMNS`:
  the test Pearson r, the test MSE and the MSE of predicting the run's training mean
  (:func:`midlevel_emotion.learning.scores.mse_vs_baseline`), the run's split sizes and, for trained
  networks, the kept and the last epoch. ``upstream`` names the model whose outputs this one
  reads (A2Mid2E reads ``a2mid_for_a2mid2e``), empty otherwise. A model with no test split
  (``n_test`` 0) has its records with empty scores.
- ``splits.csv``: one row per (model, seed, clip), columns :data:`SPLIT_COLUMNS`: what the
  model used the clip for (``train``: fitted on it; ``validation``: early stopping;
  ``test``: scored on it) and the clip's mid-level ``song_id`` (the same audio in both
  datasets), so ``evaluate`` can check that no model an emotion model builds on saw one of
  its test clips.
- ``NOT_RUN.md`` instead of both when the stage could not run on the corpus.

The same function writes ``metrics/<stage>.json`` from the records (:func:`stage_metrics`:
nested dicts of numbers, no lists, which ``dvc metrics diff`` reads), so no stage writes a
metrics shape of its own. :func:`read_results` returns every stage's tables as DataFrames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..core.errors import ResultsError
from ..core.fileio import replace_dir, staging_dir, write_json, write_text
from ..learning.scores import mse_vs_baseline, pearson

SCORES_FILE = "scores.csv"
SPLITS_FILE = "splits.csv"
NOT_RUN_FILE = "NOT_RUN.md"
#: The columns of ``scores.csv``, in file order.
RECORD_COLUMNS = ("model", "seed", "target", "group", "r", "mse", "baseline_mse",
                  "n_train", "n_validation", "n_test", "best_epoch", "epochs", "upstream")
#: The columns of ``splits.csv``, in file order.
SPLIT_COLUMNS = ("model", "seed", "part", "clip_id", "song_id")
PARTS = ("train", "validation", "test")
#: Decimals kept: r as the paper prints it and every table here averages it; the per-run
#: group MSE (the metrics files and the calibration both use :func:`group_mse`).
R_DECIMALS, MSE_DECIMALS = 4, 6
#: Significant digits of the per-target MSEs in the CSV (their group mean is rounded to
#: :data:`MSE_DECIMALS` decimals after averaging, as when it was computed in one go).
CSV_FLOAT_FORMAT = "%.10g"


def target_group(target: str) -> str:
    """``"midlevel"`` or ``"emotions"``."""
    if target in MIDLEVEL_FEATURES:
        return "midlevel"
    if target in EMOTIONS:
        return "emotions"
    raise ValueError(f"unknown target {target!r}")


def _rounded(value: float, digits: int) -> float:
    return float("nan") if not math.isfinite(value) else round(float(value), digits)


# ---------------------------------------------------------------------------------------
# Records


def score_records(model: str, seed: int, names: Sequence[str], split: Mapping[str, Sequence[str]], *,
                  y_train: np.ndarray, y_test: np.ndarray | None, prediction: np.ndarray | None,
                  best_epoch: int | None = None, epochs: int | None = None, upstream: str = "") -> list[dict]:
    """The records of one model's run: one per target.

    Parameters
    ----------
    model, seed : str, int
        The model key (``"a2e"``, ``"a2mid_plus"``, ...) and the run's seed.
    names : sequence of str
        The targets, in the column order of ``y_train``, ``y_test`` and ``prediction``.
    split : mapping
        ``{"train" | "validation" | "test": clip ids}`` as the model used them (its sizes
        are recorded).
    y_train : np.ndarray
        The targets the model was fitted on (their mean is the baseline), (n_train, targets).
    y_test, prediction : np.ndarray or None
        Test targets and the model's test predictions; None when the model has no test split.
    best_epoch, epochs : int, optional
        The kept epoch and the epochs trained (networks only).
    upstream : str
        The model whose outputs this one reads, if any.

    Returns
    -------
    list of dict
        Keys :data:`RECORD_COLUMNS`; r rounded to :data:`R_DECIMALS` decimals, NaN where it is
        undefined (a constant prediction or target) or there is no test split.
    """
    n = len(names)
    if y_test is not None and len(y_test):
        r = pearson(y_test, prediction)
        mse, baseline = mse_vs_baseline(y_train, y_test, prediction)
    else:
        r = mse = baseline = np.full(n, np.nan)
    sizes = {f"n_{part}": len(split.get(part, ())) for part in PARTS}
    return [{"model": model, "seed": int(seed), "target": name, "group": target_group(name),
             "r": _rounded(r[j], R_DECIMALS), "mse": float(mse[j]), "baseline_mse": float(baseline[j]),
             **sizes, "best_epoch": best_epoch, "epochs": epochs, "upstream": upstream}
            for j, name in enumerate(names)]


def split_records(model: str, seed: int, split: Mapping[str, Sequence[str]],
                  song_ids: Mapping[str, str] | None = None) -> list[dict]:
    """The rows of ``splits.csv`` for one model's run.

    ``song_ids`` maps a clip id to its mid-level song id (Soundtracks clips); None means the
    clip ids already are mid-level song ids. A clip with no mid-level song gets ``""``.
    """
    return [{"model": model, "seed": int(seed), "part": part, "clip_id": str(clip),
             "song_id": str(clip) if song_ids is None else str(song_ids.get(str(clip), ""))}
            for part in PARTS for clip in split.get(part, ())]


def test_pearson(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Target -> test r and their ``mean`` (what a checkpoint records), finite values only."""
    scores = {rec["target"]: rec["r"] for rec in records if math.isfinite(rec["r"])}
    if scores:
        scores["mean"] = round(float(np.mean(list(scores.values()))), R_DECIMALS)
    return scores


# ---------------------------------------------------------------------------------------
# Writing


def _frame(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def write_stage(results_dir: Path, metrics_path: Path, records: list[dict], splits: list[dict],
                extra: Mapping[str, Any] | None = None) -> dict:
    """Write a stage's results folder and its metrics file, both from ``records``.

    Parameters
    ----------
    results_dir : Path
        ``results/<stage>``; replaced as a whole (never half-written).
    metrics_path : Path
        ``metrics/<stage>.json``, see :func:`stage_metrics`.
    records, splits : list of dict
        From :func:`score_records` and :func:`split_records`.
    extra : mapping, optional
        Stage-level scalars for the metrics file (e.g. ``excluded_clips``).

    Returns
    -------
    dict
        The metrics written.
    """
    scores = _frame(records, RECORD_COLUMNS)
    staging = staging_dir(results_dir)
    scores.to_csv(staging / SCORES_FILE, index=False, float_format=CSV_FLOAT_FORMAT)
    _frame(splits, SPLIT_COLUMNS).to_csv(staging / SPLITS_FILE, index=False)
    replace_dir(staging, results_dir)
    metrics = stage_metrics(scores, extra)
    write_json(metrics_path, metrics)
    return metrics


def write_not_run(results_dir: Path, metrics_path: Path, stage: str, reason: str) -> dict:
    """Record in the results folder and the metrics file that, and why, a stage did not run."""
    staging = staging_dir(results_dir)
    write_text(staging / NOT_RUN_FILE, f"# {stage} was not run\n\n{reason}\n")
    replace_dir(staging, results_dir)
    metrics = {"status": "not run", "reason": reason}
    write_json(metrics_path, metrics)
    return metrics


def group_mse(scores: pd.DataFrame) -> pd.DataFrame:
    """Per (model, seed, group): the test MSE and the baseline's, means over the group's targets.

    Every target has the same test clips, so the mean of the per-target MSEs is the MSE over
    the group's whole test matrix; rounded to :data:`MSE_DECIMALS` decimals.
    """
    frame = scores.groupby(["model", "seed", "group"], sort=False)[["mse", "baseline_mse"]].mean()
    return frame.round(MSE_DECIMALS).reset_index()


def _finite(value: Any) -> float | None:
    """``value`` as a float, or None where it is missing or NaN (JSON has no NaN)."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


def stage_metrics(scores: pd.DataFrame, extra: Mapping[str, Any] | None = None) -> dict:
    """The metrics file of a stage, from its records.

    Returns
    -------
    dict
        ``{model: {"seed_<s>": {group: {target: r, "mean": r, "mse": m, "baseline_mse": b},
        "n_train", "n_validation", "n_test", "best_epoch", "epochs"}}, **extra}``: no lists
        (``dvc metrics diff`` drops them); ``mean`` is the mean r over the group's targets;
        ``mse``/``baseline_mse`` as in :func:`group_mse`; null where undefined; epochs only
        for networks.
    """
    metrics: dict[str, Any] = {}
    mse = group_mse(scores).set_index(["model", "seed", "group"])
    for (model, seed), run in scores.groupby(["model", "seed"], sort=False):
        entry: dict[str, Any] = {}
        for group, rows in run.groupby("group", sort=False):
            r = rows["r"].to_numpy(dtype=np.float64)
            cell = {t: _finite(v) for t, v in zip(rows["target"], r)}
            cell["mean"] = round(float(np.nanmean(r)), R_DECIMALS) if np.isfinite(r).any() else None
            cell["mse"] = _finite(mse.loc[(model, seed, group), "mse"])
            cell["baseline_mse"] = _finite(mse.loc[(model, seed, group), "baseline_mse"])
            entry[group] = cell
        first = run.iloc[0]
        for key in ("n_train", "n_validation", "n_test", "best_epoch", "epochs"):
            value = first[key]
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                entry[key] = int(value)
        metrics.setdefault(str(model), {})[f"seed_{int(seed)}"] = entry
    metrics.update(extra or {})
    return metrics


# ---------------------------------------------------------------------------------------
# Reading


@dataclass
class Results:
    """Every stage's results: records and splits of the stages that ran, reasons of the others.

    ``scores`` and ``splits`` carry a ``stage`` column (the folder name) and ``source`` (the
    file) besides :data:`RECORD_COLUMNS` / :data:`SPLIT_COLUMNS`.
    """

    scores: pd.DataFrame
    splits: pd.DataFrame
    not_run: dict[str, str] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)


def _read_csv(path: Path, columns: tuple[str, ...], dtypes: Mapping[str, Any]) -> pd.DataFrame:
    if not path.is_file():
        raise ResultsError(f"{path}: not found (run the stage that writes it first)")
    try:
        frame = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values={c: [""] for c in columns
                                                                                 if c not in dtypes})
    except (ValueError, pd.errors.ParserError) as err:
        raise ResultsError(f"{path}: not a readable CSV table ({str(err).splitlines()[0]})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: lacks the column(s) {', '.join(missing)}")
    return frame[list(columns)]


def read_stage(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame] | str:
    """One stage's ``(scores, splits)``, or the reason it did not run (from ``NOT_RUN.md``)."""
    folder = Path(folder)
    not_run = folder / NOT_RUN_FILE
    if not_run.is_file():
        lines = [line for line in not_run.read_text().splitlines()[1:] if line.strip()]
        return " ".join(lines) or "no reason recorded"
    text = {"model": str, "target": str, "group": str, "upstream": str}
    scores = _read_csv(folder / SCORES_FILE, RECORD_COLUMNS, text)
    bad = sorted(set(scores["group"]) - {"midlevel", "emotions"})
    if bad:
        raise ResultsError(f"{folder / SCORES_FILE}: unknown group(s) {bad}")
    splits = _read_csv(folder / SPLITS_FILE, SPLIT_COLUMNS,
                       {"model": str, "part": str, "clip_id": str, "song_id": str})
    bad = sorted(set(splits["part"]) - set(PARTS))
    if bad:
        raise ResultsError(f"{folder / SPLITS_FILE}: unknown part(s) {bad}")
    return scores, splits


def read_results(results_dir: Path, stages: Sequence[str]) -> Results:
    """Read ``results_dir/<stage>/`` for each stage into one :class:`Results`."""
    results_dir = Path(results_dir)
    scores, splits, not_run, folders = [], [], {}, {}
    for stage in stages:
        folder = folders[stage] = results_dir / stage
        read = read_stage(folder)
        if isinstance(read, str):
            not_run[stage] = read
            continue
        scores.append(read[0].assign(stage=stage, source=str(folder / SCORES_FILE)))
        splits.append(read[1].assign(stage=stage, source=str(folder / SPLITS_FILE)))
    empty = (_frame([], RECORD_COLUMNS + ("stage", "source")), _frame([], SPLIT_COLUMNS + ("stage", "source")))
    return Results(pd.concat(scores, ignore_index=True) if scores else empty[0],
                   pd.concat(splits, ignore_index=True) if splits else empty[1], not_run, folders)
