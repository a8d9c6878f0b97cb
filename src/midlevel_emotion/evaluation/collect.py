"""What the ``evaluate`` stage reads, and the checks that make its comparisons valid.

- the training stages' result tables (:mod:`midlevel_emotion.experiments.results`), grouped per model into
  runs x targets tables of test r (:func:`collect`);
- the paired design: every emotion model ran the same seeds (:func:`check_seeds`) and, per
  seed, was tested on the same clips (:func:`check_test_ids`);
- the leak check: no A2Mid whose outputs an emotion model reads was trained on one of that
  model's test clips (:func:`leak_check`, on the recorded ids);
- the learned mid-level -> emotion weights and the synthetic corpus's planted ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES, checkpoint_file
from ..core.errors import EvaluationError
from ..experiments.results import Results, read_results

#: The training stages' results folders (``results/<stage>``).
STAGES = ("a2mid", "mid2e", "a2e", "joint")
#: Every model the evaluation reports: key -> (results folder, ``model`` in the records, target group).
MODELS: dict[str, tuple[str, str, str]] = {
    "mid2e": ("mid2e", "mid2e", "emotions"),
    "a2mid2e": ("mid2e", "a2mid2e", "emotions"),
    "a2e": ("a2e", "a2e", "emotions"),
    "joint": ("joint", "joint", "emotions"),
    "joint_midlevel": ("joint", "joint", "midlevel"),
    "a2mid_plus": ("a2mid", "a2mid_plus", "midlevel"),
    "a2mid": ("a2mid", "a2mid", "midlevel"),
}
#: The models run once per seed of ``runs.seeds``, paired by seed.
PAIRED = ("mid2e", "a2mid2e", "a2e", "joint", "joint_midlevel")
#: The emotion models whose test clips must be the same for a seed.
EMOTION_MODELS = ("mid2e", "a2mid2e", "a2e", "joint")
GROUP_TARGETS = {"emotions": EMOTIONS, "midlevel": MIDLEVEL_FEATURES}


@dataclass
class Collected:
    """What :func:`collect` read.

    Attributes
    ----------
    results : Results
        The records and splits of every stage.
    runs : dict
        Model key -> DataFrame of test r, one row per seed (sorted), one column per target
        of the model's group in the paper's order (NaN where r is undefined).
    not_run : dict
        Model key -> why it has no results.
    sources : dict
        Model key -> the scores file its runs come from (named in errors and the report).
    """

    results: Results
    runs: dict[str, pd.DataFrame]
    not_run: dict[str, str]
    sources: dict[str, str]


def model_runs(scores: pd.DataFrame, model: str, group: str, source: str) -> pd.DataFrame | None:
    """One model's runs x targets table of test r (None when it has no records)."""
    rows = scores[(scores["model"] == model) & (scores["group"] == group)]
    if rows.empty:
        return None
    targets = GROUP_TARGETS[group]
    duplicated = rows[rows.duplicated(["seed", "target"])]
    if not duplicated.empty:
        seed, target = duplicated.iloc[0][["seed", "target"]]
        raise EvaluationError(f"{source}: {model} seed {seed} has two records for {target}")
    for seed, have in rows.groupby("seed")["target"].apply(set).items():
        missing = [t for t in targets if t not in have]
        if missing:
            raise EvaluationError(f"{source}: {model} seed {seed} lacks the scores of {', '.join(missing)}")
    table = rows.pivot(index="seed", columns="target", values="r").sort_index()
    return table[list(targets)].astype(np.float64)


def collect(results_dir: Path) -> Collected:
    """Read every stage's results and group them per model (see :class:`Collected`)."""
    results = read_results(results_dir, STAGES)
    runs: dict[str, pd.DataFrame] = {}
    not_run: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key, (stage, model, group) in MODELS.items():
        source = sources[key] = str(Path(results.folders[stage]) / "scores.csv")
        if stage in results.not_run:
            not_run[key] = results.not_run[stage]
            continue
        table = model_runs(results.scores[results.scores["stage"] == stage], model, group, source)
        if table is None:
            not_run[key] = (f"{source} has no records of {model} "
                            "(e.g. no Soundtracks clips with mid-level annotations)")
        else:
            runs[key] = table
    return Collected(results, runs, not_run, sources)


# ---------------------------------------------------------------------------------------
# The paired design


def check_seeds(collected: Collected, expected: Sequence[int] | None = None) -> list[int]:
    """The seeds every paired model ran (and ``expected``, when given), sorted.

    Raises
    ------
    EvaluationError
        Naming the two files (or params) whose seeds differ.
    """
    reference: str | None = None
    for key in (k for k in PAIRED if k in collected.runs):
        seeds = list(collected.runs[key].index)
        if reference is None:
            reference = key
        elif seeds != list(collected.runs[reference].index):
            raise EvaluationError(
                f"the comparison is paired, but {collected.sources[reference]} ({reference}) has seeds "
                f"{list(collected.runs[reference].index)} and {collected.sources[key]} ({key}) has seeds {seeds}; "
                "re-run the stages with the same runs.seeds")
    if reference is None:
        return []
    seeds = [int(s) for s in collected.runs[reference].index]
    if expected is not None and sorted(int(s) for s in expected) != seeds:
        raise EvaluationError(
            f"{collected.sources[reference]} has seeds {seeds} but params runs.seeds is "
            f"{sorted(int(s) for s in expected)}; the results are stale (re-run the training stages)")
    return seeds


def _ids(splits: pd.DataFrame, model: str, parts: Sequence[str], column: str = "clip_id") -> pd.Series:
    """Per seed, the sorted ids of ``model``'s clips in ``parts``."""
    rows = splits[(splits["model"] == model) & splits["part"].isin(parts)]
    return rows.groupby("seed")[column].apply(lambda ids: sorted(i for i in ids if i))


def check_test_ids(collected: Collected) -> None:
    """Raise :class:`EvaluationError` when two emotion models of one seed were tested on different clips."""
    splits = collected.results.splits
    tested = {key: _ids(splits, MODELS[key][1], ("test",)) for key in EMOTION_MODELS if key in collected.runs}
    label = {key: f"{Path(collected.sources[key]).with_name('splits.csv')} ({key})" for key in tested}
    keys = list(tested)
    for key in keys[1:]:
        first = keys[0]
        for seed in tested[first].index.union(tested[key].index):
            a, b = tested[first].get(seed, []), tested[key].get(seed, [])
            if a != b:
                raise EvaluationError(
                    f"seed {seed}: the comparison is paired, but {label[first]} and {label[key]} record different "
                    f"test clips ({len(a)} vs {len(b)}; only in the first: {sorted(set(a) - set(b))[:5]}, only in "
                    f"the second: {sorted(set(b) - set(a))[:5]})")


def leak_check(collected: Collected) -> dict[str, dict[str, Any]]:
    """Cross-check every A2Mid's training clips against every emotion run's test clips.

    Clips are compared by their mid-level ``song_id`` (a Soundtracks clip is a mid-level song).
    An A2Mid that an emotion model reads (its records' ``upstream``) must not have been
    trained (``train`` or ``validation``) on any of the emotion runs' test clips.

    Returns
    -------
    dict
        A2Mid model -> ``feeds`` (the emotion models reading it, comma-separated, or ""),
        ``trained_on`` (clips it was trained on), ``test_clips_checked`` (distinct emotion test
        clips with a mid-level song id) and ``test_clips_seen`` (how many of those it was
        trained on; must be 0 where ``feeds`` is not empty).

    Raises
    ------
    EvaluationError
        When an A2Mid an emotion model reads saw one of the test clips, or its ids are missing.
    """
    scores, splits = collected.results.scores, collected.results.splits
    test_songs = set(splits[splits["model"].isin([MODELS[k][1] for k in EMOTION_MODELS if k in collected.runs])
                            & (splits["part"] == "test")]["song_id"]) - {""}
    upstream = scores[scores["upstream"].fillna("") != ""].groupby("upstream")["model"].unique()
    a2mids = splits[splits["stage"] == "a2mid"]
    out: dict[str, dict[str, Any]] = {}
    for model in sorted(set(a2mids["model"]) | set(upstream.index)):
        seen = set(a2mids[(a2mids["model"] == model) & a2mids["part"].isin(["train", "validation"])]["song_id"])
        feeds = ", ".join(sorted(upstream.get(model, [])))
        if feeds and not seen:
            raise EvaluationError(f"{collected.results.folders['a2mid'] / 'splits.csv'}: no training clips recorded "
                                  f"for {model}, which {feeds} read(s); cannot check it for test clips")
        leaked = sorted(seen & test_songs)
        if feeds and leaked:
            raise EvaluationError(f"{model}, which {feeds} read(s), was trained on {len(leaked)} clip(s) that are "
                                  f"test clips of the emotion runs (song ids {leaked[:5]}); its predictions leak "
                                  "test information")
        out[model] = {"feeds": feeds, "trained_on": len(seen - {""}), "test_clips_checked": len(test_songs),
                      "test_clips_seen": len(leaked)}
    return out


# ---------------------------------------------------------------------------------------
# Weights


def read_truth_weights(path: Path) -> np.ndarray:
    """The planted mid-level -> emotion map of the synthetic corpus, on the paper's scale.

    Parameters
    ----------
    path : Path
        ``data/raw/synthetic_truth.json`` as :mod:`midlevel_emotion.data.synthetic` writes it: the
        map from annotation/10 to rating/10 under ``paper_scale.weights`` (8x7, rows and
        columns named by the top-level ``emotions`` and ``features`` lists).

    Returns
    -------
    np.ndarray
        Shape (8, 7), rows in :data:`EMOTIONS` order, columns in :data:`MIDLEVEL_FEATURES` order
        (the layout of ``torch.nn.Linear(7, 8).weight``).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        weights = np.asarray(data["paper_scale"]["weights"], dtype=np.float64)
        names = (list(data["emotions"]), list(data["features"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise EvaluationError(f"{path}: not a synthetic truth file with paper_scale.weights, emotions and "
                              f"features ({type(err).__name__}: {err})") from None
    if names != (list(EMOTIONS), list(MIDLEVEL_FEATURES)) or weights.shape != (len(EMOTIONS), len(MIDLEVEL_FEATURES)):
        raise EvaluationError(f"{path}: paper_scale.weights is not an 8x7 emotion x mid-level matrix with the "
                              "canonical emotion and feature names")
    return weights


def _linear_weights(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    linear = json.loads(path.read_text())
    if linear.get("emotions") != list(EMOTIONS) or linear.get("midlevel_features") != list(MIDLEVEL_FEATURES):
        raise EvaluationError(f"{path}: expected the canonical emotion and mid-level feature names")
    return linear


def learned_weights(models_dir: Path, seeds: list[int], not_run: Mapping[str, str]
                    ) -> dict[str, dict[int, np.ndarray] | str]:
    """The learned 8x7 emotion layers per model and seed.

    ``mid2e`` and ``a2mid2e`` from ``mid2e/linear.json``; ``joint`` from the
    ``emotion_layer.weight`` of ``joint/joint_seed_<s>.pt``. A model that did not run, or
    whose files are missing, maps to a reason string instead.
    """
    from ..learning.checkpoints import load_checkpoint

    models_dir = Path(models_dir)
    linear_path = models_dir / "mid2e" / "linear.json"
    linear = _linear_weights(linear_path)
    out: dict[str, dict[int, np.ndarray] | str] = {}
    for name in ("mid2e", "a2mid2e", "joint"):
        if name in not_run:
            out[name] = f"not run: {not_run[name]}"
            continue
        weights: dict[int, np.ndarray] = {}
        missing: list[str] = []
        for s in seeds:
            if name == "joint":
                path = checkpoint_file(models_dir / "joint", "joint", s)
                if path.is_file():
                    weights[s] = load_checkpoint(path)[0].emotion_layer.weight.detach().cpu().numpy().astype(np.float64)
                else:
                    missing.append(str(path))
                continue
            entry = ((linear or {}).get(name) or {}).get(f"seed_{s}")
            if entry is None:
                missing.append(f"{linear_path} ({name}, seed_{s})")
                continue
            weights[s] = np.asarray(entry["weight"], dtype=np.float64)
            if weights[s].shape != (len(EMOTIONS), len(MIDLEVEL_FEATURES)):
                raise EvaluationError(f"{linear_path}: {name} seed_{s} weights have shape {weights[s].shape}, not 8x7")
        if not seeds:
            out[name] = "no runs"
        elif missing:
            out[name] = f"missing for {len(missing)} of {len(seeds)} runs, e.g. {missing[0]}"
        else:
            out[name] = weights
    return out
