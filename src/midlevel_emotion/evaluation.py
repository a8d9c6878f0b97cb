"""The ``evaluate`` stage: Tables 2 and 3, the cost of explainability with paired tests,
calibration against the predict-the-train-mean baseline, explanations scored against the
synthetic corpus's planted weights, and the Markdown report.

The scores themselves (Pearson r, the linear map, MSE) are in :mod:`midlevel_emotion.scores`.
``scipy`` and ``training`` (torch) are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .corpus import EMOTIONS, MIDLEVEL_FEATURES, SYNTHETIC_TRUTH_JSON
from .scores import fit_linear, pearson  # noqa: F401  (re-exported: the paper's metric)


# =======================================================================================
# The `evaluate` stage: Tables 2 and 3, the cost of explainability with paired tests,
# explanations scored against the synthetic corpus's planted weights, and the report.
#
# Everything below reads the JSON the training stages write (see protocol.py):
#
# - ``a2e.json``   ``{"a2e": {"seed_<s>": {"emotions": {emotion: r, "mean": r}, ...}}}``
# - ``joint.json`` ``{"joint": {"seed_<s>": {"emotions": {...}, "midlevel": {...}, ...}}}``
# - ``mid2e.json`` ``{"mid2e": {"seed_<s>": {emotion: r, "mean": r}}, "a2mid2e": {...}}``
# - ``a2mid.json`` ``{"a2mid_plus": {"test": {feature: r, "mean": r}, ...}, "a2mid": {...}}``
#
# or ``{"status": "not run", "reason": ...}`` for a stage that could not run on the corpus.
# A score of ``null`` (a constant prediction or target) is a missing value: it is left out
# of means and of the paired tests, and ``n_runs`` says how many runs were used.

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
#: The models of Table 3: key -> display name.
TABLE3_MODELS: dict[str, str] = {"a2mid_plus": "A2Mid+", "a2mid": "A2Mid", "joint": "Joint"}
#: Which metrics file holds which model's runs, and under which key.
RUN_SOURCES: dict[str, tuple[str, str, str | None]] = {
    # model: (file, top-level key, per-run sub-key holding the scores or None)
    "mid2e": ("mid2e.json", "mid2e", None),
    "a2mid2e": ("mid2e.json", "a2mid2e", None),
    "a2e": ("a2e.json", "a2e", "emotions"),
    "joint": ("joint.json", "joint", "emotions"),
    "joint_midlevel": ("joint.json", "joint", "midlevel"),
}
AVERAGE = "average"
BASELINE = "a2e"


class EvaluationError(ValueError):
    """The inputs of the evaluation are inconsistent; the message names the files."""


@dataclass(frozen=True)
class NotRun:
    """A model whose stage recorded ``{"status": "not run", "reason": ...}`` (or is absent)."""

    reason: str
    source: str


@dataclass
class ModelRuns:
    """Per-run test Pearson r of one model.

    Attributes
    ----------
    name : str
        Model key (``"a2e"``, ``"joint_midlevel"``, ...).
    source : str
        The metrics file the values come from (for error messages).
    seeds : list of int
        The run seeds, in file order.
    targets : tuple of str
        Column names (emotions or mid-level features).
    values : np.ndarray
        Shape (n_runs, n_targets); NaN where a run's score is null.
    """

    name: str
    source: str
    seeds: list[int]
    targets: tuple[str, ...]
    values: np.ndarray

    def column(self, target: str) -> np.ndarray:
        """Per-run values of one target, or of ``"average"`` (each run's mean over targets)."""
        if target == AVERAGE:
            return run_averages(self.values)
        return self.values[:, self.targets.index(target)]


@dataclass
class Runs:
    """Everything :func:`collect_runs` read from the metrics directory."""

    models: dict[str, ModelRuns | NotRun]
    a2mid: dict[str, dict[str, float | None] | NotRun]
    files: dict[str, Path] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Reading


def read_stage_metrics(path: Path) -> dict | NotRun:
    """Read one stage's metrics JSON.

    Parameters
    ----------
    path : Path
        A file written by a training stage.

    Returns
    -------
    dict or NotRun
        The parsed metrics, or :class:`NotRun` when the stage recorded that it did not run.

    Raises
    ------
    EvaluationError
        When the file is missing or is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: metrics file not found (run the stage that writes it first)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise EvaluationError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: expected a JSON object")
    if data.get("status") == "not run":
        return NotRun(str(data.get("reason") or "no reason recorded"), str(path))
    return data


def _value(score: Any) -> float:
    return float("nan") if score is None else float(score)


def _seed_of(key: str, path: Path) -> int:
    if not key.startswith("seed_"):
        raise EvaluationError(f"{path}: run key {key!r} is not of the form seed_<n>")
    try:
        return int(key[len("seed_"):])
    except ValueError:
        raise EvaluationError(f"{path}: run key {key!r} is not of the form seed_<n>") from None


def model_runs(data: Mapping[str, Any], path: Path, name: str, key: str, sub_key: str | None,
               targets: tuple[str, ...]) -> ModelRuns | NotRun:
    """Extract one model's per-run scores from a stage's metrics.

    Parameters
    ----------
    data : mapping
        The stage's metrics (see :func:`read_stage_metrics`).
    path : Path
        Where they were read from (named in errors).
    name : str
        The model key to give the result.
    key : str
        Top-level key of the model's runs (``"a2e"``, ``"mid2e"``, ...).
    sub_key : str or None
        Key inside each run that holds the scores (``"emotions"``, ``"midlevel"``), or None
        when the run's value is the score dict itself.
    targets : tuple of str
        The names of the scored targets, in output order.

    Returns
    -------
    ModelRuns or NotRun
    """
    runs = data.get(key)
    if not isinstance(runs, dict) or not runs:
        return NotRun(f"{path} has no runs under {key!r}", str(path))
    seeds, rows = [], []
    for run_key, run in runs.items():
        seeds.append(_seed_of(run_key, path))
        scores = run.get(sub_key) if sub_key else run
        if not isinstance(scores, dict):
            raise EvaluationError(f"{path}: {key}.{run_key} has no {sub_key or 'score'} dict")
        missing = [t for t in targets if t not in scores]
        if missing:
            raise EvaluationError(f"{path}: {key}.{run_key} lacks the scores of {', '.join(missing)}")
        rows.append([_value(scores[t]) for t in targets])
    return ModelRuns(name, str(path), seeds, tuple(targets), np.asarray(rows, dtype=np.float64))


def collect_runs(metrics_dir: Path) -> Runs:
    """Read the per-run test scores of every model from the training stages' metrics.

    Parameters
    ----------
    metrics_dir : Path
        Holds ``a2mid.json``, ``mid2e.json``, ``a2e.json`` and ``joint.json``.

    Returns
    -------
    Runs
        ``models``: ``mid2e``, ``a2mid2e``, ``a2e``, ``joint`` (emotion scores) and
        ``joint_midlevel`` (the Joint model's mid-level scores), each a :class:`ModelRuns`
        or a :class:`NotRun`; ``a2mid``: ``a2mid_plus`` and ``a2mid`` test scores (one
        model each) or :class:`NotRun`.
    """
    metrics_dir = Path(metrics_dir)
    files = {name: metrics_dir / name for name in ("a2mid.json", "mid2e.json", "a2e.json", "joint.json")}
    loaded = {name: read_stage_metrics(path) for name, path in files.items()}
    models: dict[str, ModelRuns | NotRun] = {}
    for name, (file, key, sub_key) in RUN_SOURCES.items():
        data = loaded[file]
        targets = MIDLEVEL_FEATURES if sub_key == "midlevel" else EMOTIONS
        models[name] = data if isinstance(data, NotRun) else model_runs(data, files[file], name, key, sub_key,
                                                                         targets)
    a2mid: dict[str, dict[str, float | None] | NotRun] = {}
    data = loaded["a2mid.json"]
    for name in ("a2mid_plus", "a2mid"):
        if isinstance(data, NotRun):
            a2mid[name] = data
            continue
        test = (data.get(name) or {}).get("test")
        if not isinstance(test, dict):
            a2mid[name] = NotRun(f"{files['a2mid.json']} has no test scores for {name} "
                                 "(e.g. no Soundtracks clips with mid-level annotations)", str(files["a2mid.json"]))
            continue
        missing = [f for f in MIDLEVEL_FEATURES if f not in test]
        if missing:
            raise EvaluationError(f"{files['a2mid.json']}: {name}.test lacks the scores of {', '.join(missing)}")
        a2mid[name] = {f: test[f] for f in MIDLEVEL_FEATURES}
    return Runs(models, a2mid, files)


# ---------------------------------------------------------------------------------------
# Paired design: same seeds, same test clips


def check_seeds(runs: Runs, expected: list[int] | None = None) -> list[int]:
    """Check that every model that ran used the same seeds (and ``expected``, when given).

    Returns
    -------
    list of int
        The common seeds, in the order of the first model's file.

    Raises
    ------
    EvaluationError
        Naming the two files (or params) whose seeds differ.
    """
    reference: ModelRuns | None = None
    for runs_ in runs.models.values():
        if isinstance(runs_, NotRun):
            continue
        if len(set(runs_.seeds)) != len(runs_.seeds):
            raise EvaluationError(f"{runs_.source}: {runs_.name} lists a seed twice: {runs_.seeds}")
        if reference is None:
            reference = runs_
        elif sorted(runs_.seeds) != sorted(reference.seeds):
            raise EvaluationError(
                f"the comparison is paired, but {reference.source} ({reference.name}) has seeds "
                f"{sorted(reference.seeds)} and {runs_.source} ({runs_.name}) has seeds {sorted(runs_.seeds)}; "
                "re-run the stages with the same runs.seeds")
    if reference is None:
        return []
    if expected is not None and sorted(int(s) for s in expected) != sorted(reference.seeds):
        raise EvaluationError(
            f"{reference.source} has seeds {sorted(reference.seeds)} but params runs.seeds is "
            f"{sorted(int(s) for s in expected)}; the metrics are stale (re-run the training stages)")
    return list(reference.seeds)


def recorded_test_ids(models_dir: Path, seeds: list[int],
                      which: tuple[str, ...] = ("mid2e", "a2mid2e", "a2e", "joint")) -> dict[int, dict[str, list[str]]]:
    """The test clip ids each model recorded for each seed, where they were recorded.

    Sources: ``mid2e/linear.json`` (``mid2e`` and ``a2mid2e``, per ``seed_<s>``) and the
    checkpoints ``a2e/a2e_seed_<s>.pt`` and ``joint/joint_seed_<s>.pt`` (``extra.test_ids``).
    Missing files are skipped.

    Returns
    -------
    dict
        seed -> {file description: sorted test ids}.
    """
    from .training import load_checkpoint  # late: training imports this module

    models_dir = Path(models_dir)
    found: dict[int, dict[str, list[str]]] = {s: {} for s in seeds}
    linear_path = models_dir / "mid2e" / "linear.json"
    if linear_path.is_file():
        linear = json.loads(linear_path.read_text())
        for name in ("mid2e", "a2mid2e"):
            if name not in which:
                continue
            for s in seeds:
                ids = (linear.get(name) or {}).get(f"seed_{s}", {}).get("test_ids")
                if ids is not None:
                    found[s][f"{linear_path} ({name})"] = sorted(map(str, ids))
    for name in ("a2e", "joint"):
        if name not in which:
            continue
        for s in seeds:
            path = models_dir / name / f"{name}_seed_{s}.pt"
            if path.is_file():
                _, meta = load_checkpoint(path)
                ids = (meta.get("extra") or {}).get("test_ids")
                if ids is not None:
                    found[s][str(path)] = sorted(map(str, ids))
    return found


def check_test_ids(recorded: dict[int, dict[str, list[str]]]) -> None:
    """Raise :class:`EvaluationError` when two models of one seed were tested on different clips."""
    for seed, by_file in recorded.items():
        items = list(by_file.items())
        for other, ids in items[1:]:
            first, first_ids = items[0]
            if ids != first_ids:
                only_first = sorted(set(first_ids) - set(ids))[:5]
                only_other = sorted(set(ids) - set(first_ids))[:5]
                raise EvaluationError(
                    f"seed {seed}: the comparison is paired, but {first} and {other} record different test "
                    f"clips ({len(first_ids)} vs {len(ids)}; only in the first: {only_first}, only in the "
                    f"second: {only_other})")


# ---------------------------------------------------------------------------------------
# Statistics


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


def table2(models: Mapping[str, ModelRuns | NotRun]) -> dict[str, dict[str, Any]]:
    """Table 2: per model, per emotion and on average, mean and std of test r over runs.

    Parameters
    ----------
    models : mapping
        Model key -> :class:`ModelRuns` (or :class:`NotRun`, which is left out).

    Returns
    -------
    dict
        ``{model: {emotion | "average": {"mean", "std"}, "n_runs": int}}`` for the models of
        :data:`TABLE2_MODELS` that ran.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in TABLE2_MODELS:
        runs_ = models.get(name)
        if not isinstance(runs_, ModelRuns):
            continue
        row: dict[str, Any] = {}
        for target in EMOTIONS + (AVERAGE,):
            stats_ = mean_std(runs_.column(target))
            row[target] = {"mean": stats_["mean"], "std": stats_["std"]}
        row["n_runs"] = len(runs_.seeds)
        out[name] = row
    return out


#: Where each model's test MSE and baseline MSE are recorded: key -> (file, top-level key,
#: per-run key holding ``{group: {"model", "train_mean_baseline"}}``, display name).
#: A2Mid+ and A2Mid are single models (no seeds).
CALIBRATION_SOURCES: dict[str, tuple[str, str, str, str]] = {
    "mid2e": ("mid2e.json", "mid2e", "mse", "Mid2E"),
    "a2e": ("a2e.json", "a2e", "test_mse", "A2E"),
    "a2mid2e": ("mid2e.json", "a2mid2e", "mse", "A2Mid2E"),
    "joint": ("joint.json", "joint", "test_mse", "A2Mid2E-Joint"),
    "a2mid_plus": ("a2mid.json", "a2mid_plus", "test_mse", "A2Mid+"),
    "a2mid": ("a2mid.json", "a2mid", "test_mse", "A2Mid"),
}


def calibration(metrics_dir: Path) -> dict[str, dict[str, dict[str, float | int]]]:
    """Test MSE of every model against the predict-the-train-mean baseline.

    Pearson r ignores offset and scale; MSE does not, so this shows whether a model's outputs
    are usable as ratings and not only correlated with them.

    Returns
    -------
    dict
        ``{model: {"emotions" | "midlevel": {"model_mse", "baseline_mse", "ratio",
        "runs_better", "n_runs"}}}``: means over runs, ``ratio`` = mean over runs of model /
        baseline MSE (below 1 = better than the baseline), ``runs_better`` = runs whose model
        MSE is below the baseline's. Models whose stage did not run are left out.
    """
    result: dict[str, dict[str, dict[str, float | int]]] = {}
    for key, (file, top, mse_key, _) in CALIBRATION_SOURCES.items():
        path = Path(metrics_dir) / file
        data = read_stage_metrics(path) if path.is_file() else None
        if not isinstance(data, dict) or top not in data:
            continue
        entry = data[top]
        runs = [entry] if mse_key in entry else [v for k, v in entry.items() if k.startswith("seed_")]
        groups: dict[str, list[tuple[float, float]]] = {}
        for run in runs:
            recorded = run.get(mse_key) or {}
            if "model" in recorded:  # mid2e.json: emotions only, not grouped
                recorded = {"emotions": recorded}
            for group, pair in recorded.items():
                try:
                    groups.setdefault(group, []).append((float(pair["model"]), float(pair["train_mean_baseline"])))
                except (KeyError, TypeError, ValueError):
                    raise EvaluationError(f"{path}: {top}.{mse_key}.{group} needs numeric 'model' and "
                                          "'train_mean_baseline'") from None
        for group, pairs in groups.items():
            model, baseline = np.array(pairs).T
            result.setdefault(key, {})[group] = {
                "model_mse": float(model.mean()), "baseline_mse": float(baseline.mean()),
                "ratio": float(np.mean(model / baseline)), "runs_better": int((model < baseline).sum()),
                "n_runs": len(pairs)}
    return result


def _aligned(baseline: ModelRuns, model: ModelRuns, target: str) -> tuple[np.ndarray, np.ndarray]:
    if sorted(baseline.seeds) != sorted(model.seeds):
        raise EvaluationError(f"{baseline.source} and {model.source} have different seeds: "
                              f"{sorted(baseline.seeds)} vs {sorted(model.seeds)}")
    order = [model.seeds.index(s) for s in baseline.seeds]
    return baseline.column(target), model.column(target)[order]


def cost_of_explainability(baseline: ModelRuns, model: ModelRuns) -> dict[str, Any]:
    """CoE = r(A2E) - r(model), per emotion and on average, with paired tests across runs.

    Parameters
    ----------
    baseline : ModelRuns
        A2E's runs.
    model : ModelRuns
        The explainable model's runs (same seeds; paired by seed).

    Returns
    -------
    dict
        ``{emotion | "average": paired_tests(...)}`` plus ``n_runs``. Positive = A2E better.
    """
    out: dict[str, Any] = {}
    for target in EMOTIONS + (AVERAGE,):
        out[target] = paired_tests(*_aligned(baseline, model, target))
    out["n_runs"] = len(baseline.seeds)
    return out


def coe_table(models: Mapping[str, ModelRuns | NotRun]) -> dict[str, dict[str, Any]]:
    """Both CoE rows of Table 2 (only for models that ran, and only when A2E ran)."""
    baseline = models.get(BASELINE)
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(baseline, ModelRuns):
        return out
    for key, (name, _) in COE_ROWS.items():
        if isinstance(models.get(name), ModelRuns):
            out[key] = cost_of_explainability(baseline, models[name])
    return out


def table3(a2mid: Mapping[str, Mapping[str, float | None] | NotRun],
           joint_midlevel: ModelRuns | NotRun | None) -> dict[str, dict[str, Any]]:
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
        scores = a2mid.get(name)
        if scores is None or isinstance(scores, NotRun):
            continue
        values = np.array([_value(scores[f]) for f in MIDLEVEL_FEATURES])
        row = {f: (None if not math.isfinite(v) else float(v)) for f, v in zip(MIDLEVEL_FEATURES, values)}
        row[AVERAGE] = mean_std(values)["mean"]
        out[name] = row
    if isinstance(joint_midlevel, ModelRuns):
        row = {}
        for target in MIDLEVEL_FEATURES + (AVERAGE,):
            s = mean_std(joint_midlevel.column(target))
            row[target] = {"mean": s["mean"], "std": s["std"]}
        row["n_runs"] = len(joint_midlevel.seeds)
        out["joint"] = row
    return out


# ---------------------------------------------------------------------------------------
# Explanations against the synthetic corpus's planted weights


def _as_matrix(value: Any, names: tuple[list[str] | None, list[str] | None] = (None, None)) -> np.ndarray | None:
    """``value`` as an (8 emotions, 7 features) array, or None when it is not one."""
    emotions, features = names
    if isinstance(value, dict):
        keys = set(value)
        if keys == set(EMOTIONS):
            rows = []
            for e in EMOTIONS:
                v = value[e]
                if isinstance(v, dict) and set(v) == set(MIDLEVEL_FEATURES):
                    rows.append([v[f] for f in MIDLEVEL_FEATURES])
                elif isinstance(v, list) and len(v) == len(MIDLEVEL_FEATURES):
                    rows.append(v)
                else:
                    return None
            return np.asarray(rows, dtype=np.float64)
        if keys == set(MIDLEVEL_FEATURES):
            cols = []
            for f in MIDLEVEL_FEATURES:
                v = value[f]
                if isinstance(v, dict) and set(v) == set(EMOTIONS):
                    cols.append([v[e] for e in EMOTIONS])
                elif isinstance(v, list) and len(v) == len(EMOTIONS):
                    cols.append(v)
                else:
                    return None
            return np.asarray(cols, dtype=np.float64).T
        return None
    if not isinstance(value, list):
        return None
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    n_e, n_f = len(EMOTIONS), len(MIDLEVEL_FEATURES)
    if array.shape == (n_f, n_e):  # features x emotions (the paper's Figure 5 layout)
        array = array.T  # the name lists label axes by length, so they need no swap
    elif array.shape != (n_e, n_f):
        return None
    if emotions is not None and list(emotions) != list(EMOTIONS):
        if sorted(emotions) != sorted(EMOTIONS):
            return None
        array = array[[list(emotions).index(e) for e in EMOTIONS]]
    if features is not None and list(features) != list(MIDLEVEL_FEATURES):
        if sorted(features) != sorted(MIDLEVEL_FEATURES):
            return None
        array = array[:, [list(features).index(f) for f in MIDLEVEL_FEATURES]]
    return array


def read_truth_weights(path: Path) -> np.ndarray:
    """The planted mid-level -> emotion weights of the synthetic corpus.

    Parameters
    ----------
    path : Path
        ``data/raw/synthetic_truth.json`` as :mod:`midlevel_emotion.synthetic` writes it: the
        map on the paper's scale (annotation/10 -> rating/10) under ``paper_scale.weights``
        (8x7, rows ``emotions``, columns ``features``, as listed at the top level). Other
        layouts are accepted as a fallback: a matrix under a key containing "weight"
        (searched recursively), 8x7 (emotions x features) or 7x8, or a dict keyed by emotion
        (or feature) names; sibling ``emotions`` / ``midlevel_features`` (or ``features``)
        lists, when present, give the order of a list's axes.

    Returns
    -------
    np.ndarray
        Shape (8, 7), rows in :data:`EMOTIONS` order, columns in :data:`MIDLEVEL_FEATURES` order
        (the layout of ``torch.nn.Linear(7, 8).weight``).
    """
    path = Path(path)
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise EvaluationError(f"{path}: expected a JSON object")
    paper_scale = data.get("paper_scale")
    if isinstance(paper_scale, dict) and "weights" in paper_scale:
        names = (data.get("emotions"), data.get("midlevel_features") or data.get("features"))
        matrix = _as_matrix(paper_scale["weights"], tuple(n if isinstance(n, list) else None for n in names))
        if matrix is None:
            raise EvaluationError(f"{path}: paper_scale.weights is not an 8x7 emotion x mid-level matrix "
                                  "with the canonical emotion and feature names")
        return matrix
    found: list[tuple[str, np.ndarray]] = []

    def walk(node: Any, where: str) -> None:
        if not isinstance(node, dict):
            return
        names = (node.get("emotions"), node.get("midlevel_features") or node.get("features"))
        names = tuple(n if isinstance(n, list) else None for n in names)
        for key, value in node.items():
            here = f"{where}.{key}" if where else key
            if "weight" in key.lower():
                matrix = _as_matrix(value, names)
                if matrix is not None:
                    found.append((here, matrix))
                    continue
            walk(value, here)

    walk(data, "")
    if not found:
        raise EvaluationError(f"{path}: no 8x7 (emotion x mid-level) weight matrix under a key named '*weight*'")
    if len(found) > 1:
        preferred = [f for f in found if any(w in f[0].lower() for w in ("emotion", "mid2e"))]
        if len(preferred) != 1:
            raise EvaluationError(f"{path}: several weight matrices ({', '.join(k for k, _ in found)}); "
                                  "cannot tell which is the planted mid-level -> emotion map")
        found = preferred
    return found[0][1]


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


def learned_weights(models_dir: Path, seeds: list[int], models: Mapping[str, ModelRuns | NotRun]
                    ) -> dict[str, dict[int, np.ndarray] | str]:
    """The learned 8x7 emotion layers per model and seed.

    ``mid2e`` and ``a2mid2e`` from ``mid2e/linear.json``; ``joint`` from the
    ``emotion_layer.weight`` of ``joint/joint_seed_<s>.pt``. A model that did not run, or
    whose files are missing, maps to a reason string instead.
    """
    from .training import load_checkpoint  # late: training imports this module

    models_dir = Path(models_dir)
    out: dict[str, dict[int, np.ndarray] | str] = {}
    linear_path = models_dir / "mid2e" / "linear.json"
    linear = json.loads(linear_path.read_text()) if linear_path.is_file() else None
    for name in ("mid2e", "a2mid2e", "joint"):
        if isinstance(models.get(name), NotRun):
            out[name] = f"not run: {models[name].reason}"
            continue
        weights: dict[int, np.ndarray] = {}
        missing: list[str] = []
        for s in seeds:
            if name == "joint":
                path = models_dir / "joint" / f"joint_seed_{s}.pt"
                if not path.is_file():
                    missing.append(str(path))
                    continue
                model, _ = load_checkpoint(path)
                weights[s] = model.emotion_layer.weight.detach().cpu().numpy().astype(np.float64)
            else:
                entry = ((linear or {}).get(name) or {}).get(f"seed_{s}")
                if entry is None:
                    missing.append(f"{linear_path} ({name}, seed_{s})")
                    continue
                weights[s] = _reorder_linear(np.asarray(entry["weight"], dtype=np.float64), linear, linear_path)
        if not seeds:
            out[name] = "no runs"
        elif missing:
            out[name] = f"missing for {len(missing)} of {len(seeds)} runs, e.g. {missing[0]}"
        else:
            out[name] = weights
    return out


def _reorder_linear(weight: np.ndarray, linear: Mapping[str, Any], path: Path) -> np.ndarray:
    matrix = _as_matrix(weight.tolist(), (linear.get("emotions"), linear.get("midlevel_features")))
    if matrix is None or weight.shape != (len(EMOTIONS), len(MIDLEVEL_FEATURES)):
        raise EvaluationError(f"{path}: expected 8x7 weights with the canonical emotion/feature names, "
                              f"got shape {weight.shape}")
    return matrix


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
# Reference values (the paper's), metrics hygiene


def load_reference(path: Path) -> dict[str, Any]:
    """Read ``reference/paper.json`` (the paper's published numbers, for comparison only)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: reference file not found")
    ref = json.loads(path.read_text())
    for key in ("source", "note", "table2", "table3"):
        if key not in ref:
            raise EvaluationError(f"{path}: missing {key!r}")
    return ref


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


# ---------------------------------------------------------------------------------------
# Report


def _fmt(x: float | None, digits: int = 2, sign: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if round(x, digits) == 0:
        x = 0.0  # no "-0.00"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _fmt_ms(cell: Mapping[str, Any] | None) -> str:
    if not cell or cell.get("mean") is None:
        return "n/a"
    if cell.get("std") is None:
        return _fmt(cell["mean"])
    return f"{_fmt(cell['mean'])} ± {_fmt(cell['std'])}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _diff(ours: float | None, paper: float | None) -> float | None:
    if ours is None or paper is None:
        return None
    return ours - paper


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _not_run_row(label: str, ncols: int, reason: str) -> list[str]:
    return [label, f"not run: {reason}"] + [""] * (ncols - 1)


def render_report(result: Mapping[str, Any], reference: Mapping[str, Any]) -> str:
    """The Markdown report: Tables 2 and 3 as in the paper, ours beside the paper's values.

    Parameters
    ----------
    result : mapping
        What :func:`evaluate` computed: ``corpus``, ``seeds``, ``synthetic``, ``metrics``
        (the scalar metrics), ``not_run`` (model -> reason), ``truth_skipped``,
        ``reference_path``.
    reference : mapping
        The paper's values (:func:`load_reference`).

    Returns
    -------
    str
        Markdown.
    """
    metrics, not_run = result["metrics"], result["not_run"]
    seeds = result["seeds"]
    t2, t3 = metrics.get("table2", {}), metrics.get("table3", {})
    ref2, ref3 = reference.get("table2", {}), reference.get("table3", {})
    cols = list(EMOTIONS) + [AVERAGE]
    header = ["Model"] + [c if c != AVERAGE else "avg" for c in cols]
    lines = ["# Evaluation: emotion and mid-level prediction (Tables 2 and 3)", ""]
    lines += [f"- Corpus (params `data.source`): **{result['corpus']}**",
              f"- Runs: **{len(seeds)}** (seeds {', '.join(map(str, seeds)) or 'none'}), each with its own "
              "80:20 split shared by all models of the run (paired comparison); the paper used 10.",
              "- Ours: mean ± sample standard deviation (ddof=1) of the test Pearson r over runs. "
              "'avg' is each run's mean over the 8 emotions, then mean ± std over runs.",
              f"- Paper: its published values, kept in `{result['reference_path']}` for comparison only "
              "(never used as results); Δ = ours − paper, from our unrounded mean.", ""]
    if result["synthetic"]:
        lines += ["> **WARNING: SYNTHETIC CORPUS.** These numbers come from the embedded synthetic corpus, "
                  "not from the Soundtracks and Mid-level Perceptual Features datasets. The paper's numbers "
                  "are **NOT** expected to match; the comparison columns only show the layout. Switch "
                  "`data.source` to the real data to reproduce the paper.", ""]

    # Table 2
    lines += ["## Table 2: emotion prediction, Pearson r on the test splits", ""]
    rows: list[list[str]] = []
    if "mid2e_aljanaki" in ref2:
        rows.append(["Mid2E (Aljanaki), paper"] + [_fmt(ref2["mid2e_aljanaki"].get(c)) for c in cols])
    for key, label in TABLE2_MODELS.items():
        paper = ref2.get(key, {})
        if key not in t2:
            rows.append(_not_run_row(f"{label}", len(cols), not_run.get(key, "no results")))
            if paper:
                rows.append([f"{label}, paper"] + [_fmt(paper.get(c)) for c in cols])
            continue
        ours = t2[key]
        rows.append([f"**{label}**, ours"] + [_fmt_ms(ours[c]) for c in cols])
        if paper:
            rows.append([f"{label}, paper"] + [_fmt(paper.get(c)) for c in cols])
            rows.append([f"{label}, Δ"] + [_fmt(_diff(ours[c]["mean"], paper.get(c)), sign=True) for c in cols])
    lines += _md_table(header, rows) + [""]

    # CoE
    lines += ["## Cost of explainability (CoE = r(A2E) − r(model); positive = A2E better)", "",
              "Paired across runs (same seed, same test clips): two-sided paired t-test "
              "(`scipy.stats.ttest_rel`) and Wilcoxon signed-rank test (`scipy.stats.wilcoxon`, zero "
              "differences dropped). With n runs the exact Wilcoxon test cannot give p below 2/2^n "
              f"(= {_fmt_p(min_wilcoxon_p(len(seeds)))} for n = {len(seeds)}).", ""]
    rows = []
    coe = metrics.get("table2", {})
    for key, (model, label) in COE_ROWS.items():
        paper = ref2.get(key, {})
        if key not in coe:
            reason = not_run.get(BASELINE) or not_run.get(model, "no results")
            rows.append(_not_run_row(label, len(cols), reason))
            if paper:
                rows.append([f"{label}, paper"] + [_fmt(paper.get(c)) for c in cols])
            continue
        ours = coe[key]
        rows.append([f"**{label}**, ours"] + [_fmt_ms(ours[c]) for c in cols])
        if paper:
            rows.append([f"{label}, paper"] + [_fmt(paper.get(c)) for c in cols])
            rows.append([f"{label}, Δ"] + [_fmt(_diff(ours[c]["mean"], paper.get(c)), sign=True) for c in cols])
        rows.append([f"{label}, p (t-test)"] + [_fmt_p(ours[c]["p_ttest"]) for c in cols])
        rows.append([f"{label}, p (Wilcoxon)"] + [_fmt_p(ours[c]["p_wilcoxon"]) for c in cols])
    lines += _md_table(header, rows) + [""]
    reasons = sorted({f"{ours[c][r]}" for ours in (coe.get(k) for k in COE_ROWS) if ours
                      for c in cols for r in ("ttest_reason", "wilcoxon_reason") if ours[c].get(r)})
    if reasons:
        lines += ["Tests shown as '–' could not be computed: " + "; ".join(reasons) + ".", ""]

    # Later re-run
    later = reference.get("later_rerun")
    if later:
        lines += ["### Average r beside the lab's later re-run", "",
                  f"{later.get('description', '')} Its mid-level bottleneck model is set beside our "
                  "A2Mid2E-Joint (the bottleneck network trained end to end).", ""]
        rows = []
        for ours_key, ref_key, label in (("a2e", "a2e", "A2E"), ("joint", "midlevel_bottleneck", "A2Mid2E-Joint")):
            paper = (later.get(ref_key) or {}).get(AVERAGE) or {}
            ours = (t2.get(ours_key) or {}).get(AVERAGE)
            rows.append([label, _fmt_ms(ours) if ours else f"not run: {not_run.get(ours_key, 'no results')}",
                         _fmt_ms(paper), _fmt(_diff((ours or {}).get("mean"), paper.get("mean")), sign=True)])
        lines += _md_table(["Model", "ours (avg r)", f"re-run ({later.get('n_runs', '?')} runs)", "Δ"], rows) + [""]

    # Table 3
    lines += ["## Table 3: mid-level feature prediction, Pearson r on the test split", "",
              "A2Mid+ and A2Mid are one model each (no spread); Joint is the mid-level output of the "
              "A2Mid2E-Joint runs, mean ± std over runs.", ""]
    header3 = ["Mid-level feature", "Aljanaki (paper)"]
    for key, label in TABLE3_MODELS.items():
        header3 += [f"{label} ours", f"{label} paper", f"{label} Δ"]
    rows = []
    for f in MIDLEVEL_FEATURES + (AVERAGE,):
        row = [f if f != AVERAGE else "avg", _fmt((ref3.get("aljanaki") or {}).get(f))]
        for key in TABLE3_MODELS:
            paper = (ref3.get(key) or {}).get(f)
            if f == AVERAGE and paper is None and ref3.get(key):
                paper = float(np.mean([ref3[key][g] for g in MIDLEVEL_FEATURES]))
            if key not in t3:
                row += ["not run", _fmt(paper), ""]
                continue
            cell = t3[key][f]
            mean = cell["mean"] if isinstance(cell, dict) else cell
            row += [_fmt_ms(cell) if isinstance(cell, dict) else _fmt(cell), _fmt(paper),
                    _fmt(_diff(mean, paper), sign=True)]
        if f == AVERAGE and (ref3.get("aljanaki")):
            row[1] = _fmt(float(np.mean([ref3["aljanaki"][g] for g in MIDLEVEL_FEATURES])))
        rows.append(row)
    lines += _md_table(header3, rows) + [""]
    lines += ["(The paper prints no average for Table 3; its 'avg' row here is the mean of its printed values.)", ""]
    t3_missing = [f"{TABLE3_MODELS[k]}: not run: {not_run[k if k != 'joint' else 'joint_midlevel']}"
                  for k in TABLE3_MODELS if k not in t3 and (k if k != "joint" else "joint_midlevel") in not_run]
    if t3_missing:
        lines += [f"- {m}" for m in t3_missing] + [""]

    # Calibration
    cal = metrics.get("calibration") or {}
    if cal:
        lines += ["## Calibration: test MSE against the predict-the-train-mean baseline", "",
                  "Pearson r ignores offset and scale. Here each model's test MSE (rating / 10 units, mean over "
                  "runs) is set beside that of predicting every test clip as the mean of its run's training "
                  "targets; ratio = mean over runs of model / baseline (below 1 = better than the baseline).", ""]
        rows = []
        for key, (_, _, _, label) in CALIBRATION_SOURCES.items():
            for group in ("emotions", "midlevel"):
                c = cal.get(key, {}).get(group)
                if c:
                    rows.append([label, "emotions" if group == "emotions" else "mid-level",
                                 f"{c['model_mse']:.4f}", f"{c['baseline_mse']:.4f}", f"{c['ratio']:.2f}",
                                 f"{c['runs_better']} of {c['n_runs']}"])
        lines += _md_table(["Model", "targets", "model MSE", "baseline MSE", "ratio", "runs better than baseline"],
                           rows) + [""]

    # Explanations vs truth
    truth = metrics.get("explanation_truth")
    if result["synthetic"] or truth or result.get("truth_skipped"):
        lines += ["## Explanations against the planted weights (synthetic corpus)", ""]
        if result.get("truth_error"):
            lines += [f"Not scored: {result['truth_error']}", ""]
        else:
            lines += ["The synthetic corpus plants a linear mid-level → emotion map "
                      f"(`{SYNTHETIC_TRUTH_JSON}`). Each model's learned 8×7 emotion layer is compared with it "
                      "per run: Pearson r over the 56 weights and the share of planted non-zero weights whose "
                      "learned sign agrees (both scale-free), and the relative error ‖learned − planted‖ / ‖planted‖ "
                      "on the paper's scale; mean ± std over runs.", ""]
            rows = []
            labels = {"mid2e": "Mid2E (annotated mid-level)", "a2mid2e": "A2Mid2E", "joint": "A2Mid2E-Joint"}
            for key, label in labels.items():
                if truth and key in truth:
                    t = truth[key]
                    rows.append([label, _fmt_ms(t["weight_correlation"]), _fmt_ms(t["sign_agreement"]),
                                 _fmt_ms(t["relative_error"]), str(t["n_runs"])])
                else:
                    rows.append([label, (result.get("truth_skipped") or {}).get(key, "no results"), "", "", ""])
            lines += _md_table(["Model", "weight correlation", "sign agreement", "relative error", "runs"],
                               rows) + [""]
            if result.get("output_init") == "train_mean" and truth and "joint" in truth:
                lines += ["A2Mid2E-Joint's emotion layer started at each run's Mid2E least-squares fit "
                          "(`train.output_init: train_mean`), so its agreement with the planted map largely "
                          "reflects that start, not what end-to-end training learned.", ""]

    lines += ["Table 4 (song-level profiles of Soundtracks #153 and #322) is kept in the reference file "
              "for the song-level explanation, not evaluated here.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The stage


def evaluate(metrics_dir: Path, models_dir: Path, raw_dir: Path, reference_path: Path,
             params: Mapping[str, Any]) -> dict[str, Any]:
    """Run the whole evaluation.

    Parameters
    ----------
    metrics_dir : Path
        The training stages' metrics (``a2mid.json``, ``mid2e.json``, ``a2e.json``, ``joint.json``).
    models_dir : Path
        ``mid2e/linear.json``, ``a2e/a2e_seed_<s>.pt``, ``joint/joint_seed_<s>.pt`` (test ids
        and learned weights; missing files are skipped where they are only cross-checks).
    raw_dir : Path
        ``data/raw``; its ``synthetic_truth.json``, when present, enables the explanation check.
    reference_path : Path
        ``reference/paper.json``.
    params : mapping
        Reads ``data.source``, ``runs.seeds`` and ``train.output_init`` (a note on the Joint
        model's start).

    Returns
    -------
    dict
        ``metrics`` (scalar, nested dicts, no lists: ``table2``, ``table3``,
        ``explanation_truth``, ``n_runs``), ``report`` (Markdown), and what the report was
        built from (``corpus``, ``seeds``, ``synthetic``, ``not_run``, ``truth_skipped``).

    Raises
    ------
    EvaluationError
        Inconsistent inputs: different seeds across models (or vs params), different test
        clips for one seed, malformed metrics files.
    """
    corpus = str((params.get("data") or {}).get("source", "unknown"))
    expected = (params.get("runs") or {}).get("seeds")
    runs = collect_runs(metrics_dir)
    seeds = check_seeds(runs, expected)
    check_test_ids(recorded_test_ids(models_dir, seeds, tuple(k for k in ("mid2e", "a2mid2e", "a2e", "joint")
                                                               if isinstance(runs.models.get(k), ModelRuns))))
    not_run = {k: v.reason for k, v in {**runs.models, **runs.a2mid}.items() if isinstance(v, NotRun)}

    metrics: dict[str, Any] = {"n_runs": len(seeds)}
    metrics["table2"] = {**table2(runs.models), **coe_table(runs.models)}
    metrics["table3"] = table3(runs.a2mid, runs.models.get("joint_midlevel"))
    metrics["calibration"] = calibration(metrics_dir)

    truth_path = Path(raw_dir) / SYNTHETIC_TRUTH_JSON
    synthetic = corpus == "synthetic" or truth_path.is_file()
    truth_skipped: dict[str, str] = {}
    truth_error = None
    if truth_path.is_file():
        truth = read_truth_weights(truth_path)
        scored, truth_skipped = explanation_truth(truth, learned_weights(models_dir, seeds, runs.models))
        if scored:
            metrics["explanation_truth"] = scored
    elif synthetic:
        truth_error = f"{truth_path} not found"

    metrics = rounded(metrics)
    lists = list_paths(metrics)
    if lists:  # a programming error, not a data error
        raise AssertionError(f"metrics must hold no lists (dvc metrics diff); found {lists}")
    result = {"metrics": metrics, "corpus": corpus, "seeds": seeds, "synthetic": synthetic, "not_run": not_run,
              "truth_skipped": truth_skipped, "truth_error": truth_error, "reference_path": str(reference_path),
              "output_init": str((params.get("train") or {}).get("output_init", "kaiming"))}
    result["report"] = render_report(result, load_reference(reference_path))
    return result
