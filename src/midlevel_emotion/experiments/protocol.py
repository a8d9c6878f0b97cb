"""The paper's experiments (Section 6): which model learns from which clips, with which split.

- ``train_a2mid``: A2Mid+ (whole mid-level set, artist-disjoint 8 % test, Table 3), A2Mid
  (Soundtracks clips only, 20 % test, Table 3) and the A2Mid network behind A2Mid2E, trained
  on the mid-level clips that are NOT Soundtracks clips, so no emotion run's test clip is
  ever seen by it and one training serves all runs.
- ``fit_mid2e``: per run, the linear Mid2E map from annotated mid-level values (Table 2's
  upper bound) and the A2Mid2E linear layer fitted on A2Mid's predictions for the run's
  train split.
- ``train_a2e`` / ``train_joint``: per run, A2E and A2Mid2E-Joint.

Every run ``k`` has its own seed and its own random 80:20 split of the Soundtracks clips,
shared by all models of that run (:func:`run_split`), so comparisons are paired.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from dvclive import Live

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES, run_name
from ..data.labels import Labels, load_labels
from ..data.splits import Split, align, artist_disjoint_split, holdout, random_split
from ..core.errors import MissingDataError
from ..core.fileio import write_json, write_text
from ..signal.store import SpectrogramStore
from ..core.config import Params
from . import results
from ..learning.checkpoints import load_checkpoint, params_hash, save_checkpoint
from .grid import GridSettings, run_grid
from .run import RunResult, RunTask, fit_linear_run
from ..learning.inference import predict_checkpoint
from ..learning.training import TrainConfig

NOT_RUN_FILE = results.NOT_RUN_FILE


@dataclass
class Context:
    """What every training stage reads: labels, spectrogram stores and params."""

    labels: Labels
    stores: dict[str, SpectrogramStore]
    params: Params
    progress: bool = True

    @classmethod
    def load(cls, raw_dir: Path, spectrogram_dir: Path, params: Params, progress: bool = True) -> "Context":
        stores = {name: SpectrogramStore.open(Path(spectrogram_dir) / name)
                  for name in ("midlevel", "soundtracks") if (Path(spectrogram_dir) / name).is_dir()}
        return cls(load_labels(raw_dir), stores, params, progress)

    @property
    def corpus(self) -> str:
        return self.params.data.source

    @property
    def seeds(self) -> list[int]:
        return list(self.params.runs.seeds)

    def config(self, kind: str) -> TrainConfig:
        """The training hyperparameters for a ``kind`` model (see :meth:`TrainConfig.from_params`)."""
        return TrainConfig.from_params(self.params, kind)

    def spectrogram_meta(self, store: SpectrogramStore) -> dict[str, Any]:
        return {**store.stats, "mean": store.mean, "std": store.std}


# ---------------------------------------------------------------------------------------
# Soundtracks runs


def emotion_clip_ids(ctx: Context, decisions: list[str]) -> list[str]:
    """The Soundtracks clips every emotion run splits: rated, with audio, and (when the
    mid-level set is present) annotated, so A2E, A2Mid2E and Joint see the same clips."""
    if ctx.labels.emotions is None or "soundtracks" not in ctx.stores:
        raise MissingDataError("the Soundtracks ratings or audio are missing from data/raw")
    ids = align(list(ctx.labels.emotions.index), set(ctx.stores["soundtracks"].clip_ids), "soundtracks", decisions)
    if ctx.labels.soundtracks_midlevel is not None:
        annotated = set(ctx.labels.soundtracks_midlevel.index)
        for i in (i for i in ids if i not in annotated):
            decisions.append(f"soundtracks clip {i}: no mid-level annotation; excluded from the emotion runs "
                             "so that all models of a run see the same clips")
        ids = [i for i in ids if i in annotated]
    return ids


def run_split(ctx: Context, seed: int, ids: list[str]) -> Split:
    return random_split(ids, seed=seed, test_fraction=ctx.params.runs.test_fraction,
                        validation_fraction=ctx.params.train.validation_fraction)


#: Where DVCLive writes the per-epoch curves, under a log's directory (``Live.plots_dir``).
CURVES_FOLDER = "metrics"


def training_curves(plots_dir: Path) -> Live:
    """A stage's DVCLive log of training curves, one folder per model and seed.

    Each model's curves are ``<plots_dir>/plots/metrics/<model>/<curve>.tsv`` (``train_loss``,
    ``val_loss``, ``val_mean_r``; see :func:`log_epochs`), with the last values in
    ``<plots_dir>/metrics.json``. dvc.yaml declares those two paths, not the whole folder
    (DVCLive issue 456), so DVCLive writes no dvc.yaml of its own and saves no experiment
    (``dvc exp run`` does that for the whole pipeline).
    """
    return Live(dir=str(plots_dir), save_dvc_exp=False, dvcyaml=None, report=None)


def log_epochs(curves: Live, model: str) -> Callable[[dict[str, float]], None]:
    """An ``on_epoch`` callback for :func:`~midlevel_emotion.learning.training.train` that logs ``model``'s curves.

    One DVCLive step per epoch, numbered like the epochs (from 1, as ``best_epoch`` is), so
    each model's curves start at step 1 although the log holds several models.
    """
    def log(row: dict[str, float]) -> None:
        curves.step = int(row["epoch"])
        for curve, value in row.items():
            if curve != "epoch":
                curves.log_metric(f"{model}/{curve}", value)
        curves.next_step()

    return log


def write_not_run(out_dir: Path, results_dir: Path, metrics_path: Path, stage: str, reason: str,
                  plots_dir: Path | None = None) -> dict:
    """Record, in the stage's outputs, that and why it did not run (instead of failing obscurely).

    The models and results directories get ``NOT_RUN.md`` with the reason, the metrics file
    ``{"status": "not run", "reason": ...}``. The training-curve log in ``plots_dir`` is
    written with no curves (an empty curves folder and summary), so the outputs dvc.yaml
    declares exist and ``dvc plots show`` has nothing to stumble on.
    """
    write_text(Path(out_dir) / NOT_RUN_FILE, f"# {stage} was not run\n\n{reason}\n")
    if plots_dir is not None:
        with training_curves(plots_dir) as live:
            Path(live.plots_dir, CURVES_FOLDER).mkdir(parents=True, exist_ok=True)
    return results.write_not_run(results_dir, metrics_path, stage, reason)


def run_task_for(ctx: Context, kind: str, store: SpectrogramStore, split_ids: tuple, targets: dict[str, np.ndarray],
                 *, seed: int, name: str, model: str, models_dir: Path, names: tuple[str, ...],
                 song_ids: dict[str, str] | None = None) -> RunTask:
    """The grid task that trains on ``split_ids = (train, validation, test)`` and scores the test clips.

    ``name`` is the run (checkpoint ``<models_dir>/<name>.pt``, curve folder), ``model`` its
    name in the results tables; ``song_ids`` maps the store's clip ids to mid-level song ids
    (None: they are mid-level song ids).
    """
    train_ids, val_ids, test_ids = split_ids
    return RunTask(kind=kind, name=name, model=model, seed=seed, store=store.directory,
                   split={"train": tuple(train_ids), "validation": tuple(val_ids), "test": tuple(test_ids)},
                   targets=targets, names=tuple(names), song_ids=song_ids, config=ctx.config(kind),
                   checkpoint=Path(models_dir) / f"{name}.pt",
                   checkpoint_meta={"spectrogram": ctx.spectrogram_meta(store), "corpus": ctx.corpus,
                                    "params_digest": params_hash(ctx.params)})


def train_runs(ctx: Context, stage: str, tasks: list[RunTask], plots_dir: Path) -> tuple[list[dict], list[dict]]:
    """Train a stage's runs where ``grid`` says (:mod:`midlevel_emotion.experiments.grid`), logging their curves.

    Returns the runs' records and split rows, concatenated in task order.
    """
    warning = check_precision(ctx)
    if warning:
        print(f"{stage}: warning: {warning}", file=sys.stderr, flush=True)
    curves = training_curves(plots_dir)
    outcomes: list[RunResult] = run_grid(tasks, GridSettings.from_params(ctx.params), desc=stage,
                                         progress=ctx.progress, curves=lambda task: log_epochs(curves, task.name))
    curves.end()
    return ([row for outcome in outcomes for row in outcome.records],
            [row for outcome in outcomes for row in outcome.splits])


def check_precision(ctx: Context) -> str | None:
    """``train.precision`` against the hardware (:func:`midlevel_emotion.learning.precision.check`)."""
    from ..learning.precision import check
    from ..learning.training import default_device

    return check(ctx.params.train.precision, default_device(),
                 reproducible=ctx.params.train.reproducible)


# ---------------------------------------------------------------------------------------
# Stages


def train_a2mid(ctx: Context, models_dir: Path, results_dir: Path, metrics_path: Path, plots_dir: Path) -> dict:
    """The ``train_a2mid`` stage: A2Mid+, A2Mid and the A2Mid behind A2Mid2E."""
    labels, models_dir = ctx.labels, Path(models_dir)
    if labels.midlevel is None or "midlevel" not in ctx.stores:
        return write_not_run(models_dir, results_dir, metrics_path, "train_a2mid",
                             "No mid-level annotations in data/raw (a Soundtracks-only corpus): "
                             "A2Mid+, A2Mid and A2Mid2E need the Mid-level Perceptual Features dataset.",
                             plots_dir)
    p = ctx.params.train_a2mid
    features = list(MIDLEVEL_FEATURES)
    decisions: list[str] = list(labels.decisions)
    store = ctx.stores["midlevel"]
    ids = align(list(labels.midlevel.index), set(store.clip_ids), "mid-level", decisions)
    y = labels.midlevel
    tasks: list[RunTask] = []

    def fit(name: str, train_ids: list[str], test_ids: list[str], seed: int, st: SpectrogramStore, ylab,
            song_ids: dict[str, str] | None = None) -> None:
        tr, va = holdout(train_ids, fraction=ctx.params.train.validation_fraction, seed=seed)
        targets = {"train": ylab.loc[tr, features].to_numpy(), "validation": ylab.loc[va, features].to_numpy(),
                   "test": ylab.loc[test_ids, features].to_numpy() if test_ids else None}
        tasks.append(run_task_for(ctx, "a2mid", st, (tr, va, test_ids), targets, seed=seed, name=name, model=name,
                                  models_dir=models_dir, names=MIDLEVEL_FEATURES, song_ids=song_ids))

    # A2Mid+: all mid-level clips, Aljanaki's artist-disjoint test split
    train_ids, test_ids = artist_disjoint_split(labels.metadata, [i for i in ids if i in labels.metadata.index],
                                                test_fraction=p.plus_test_fraction, seed=p.seed)
    train_ids += [i for i in ids if i not in labels.metadata.index]
    fit("a2mid_plus", train_ids, test_ids, p.seed, store, y)

    # A2Mid: Soundtracks clips only, random 20 % test
    if labels.soundtracks_midlevel is not None and "soundtracks" in ctx.stores:
        st_store = ctx.stores["soundtracks"]
        st_ids = align(list(labels.soundtracks_midlevel.index), set(st_store.clip_ids), "soundtracks", decisions)
        rest, test = holdout(st_ids, fraction=p.soundtracks_test_fraction, seed=p.seed)
        fit("a2mid", rest, test, p.seed, st_store, labels.soundtracks_midlevel, labels.soundtracks_song_ids)

    # The A2Mid behind A2Mid2E: mid-level clips that are not Soundtracks clips (its training
    # ids are recorded; `evaluate` checks them against every emotion run's test clips)
    soundtrack_song_ids = set(labels.soundtracks_song_ids.values())
    non_st = [i for i in ids if i not in soundtrack_song_ids]
    fit("a2mid_for_a2mid2e", non_st, [], p.seed, store, y)
    records, splits = train_runs(ctx, "train_a2mid", tasks, plots_dir)
    write_text(models_dir / "data_decisions.txt", "".join(f"{d}\n" for d in decisions))
    return results.write_stage(results_dir, metrics_path, records, splits, {"excluded_clips": len(decisions)})


def fit_mid2e(ctx: Context, a2mid_checkpoint: Path, models_dir: Path, results_dir: Path, metrics_path: Path) -> dict:
    """The ``fit_mid2e`` stage: per run, Mid2E on annotations and A2Mid2E on A2Mid's predictions."""
    labels, models_dir = ctx.labels, Path(models_dir)
    if labels.soundtracks_midlevel is None or not Path(a2mid_checkpoint).is_file():
        return write_not_run(models_dir, results_dir, metrics_path, "fit_mid2e",
                             "No mid-level annotations for the Soundtracks clips (or no A2Mid model): "
                             "Mid2E and A2Mid2E need the Mid-level Perceptual Features dataset.")
    decisions: list[str] = []
    ids = emotion_clip_ids(ctx, decisions)
    store = ctx.stores["soundtracks"]
    a2mid, meta = load_checkpoint(a2mid_checkpoint)
    mid_pred = predict_checkpoint(a2mid, meta, [store.clip(i) for i in ids])
    mid_pred = dict(zip(ids, mid_pred))
    annotated = labels.soundtracks_midlevel.loc[ids, list(MIDLEVEL_FEATURES)]
    emotions = labels.emotions.loc[ids, list(EMOTIONS)]
    records: list[dict] = []
    splits: list[dict] = []
    linear: dict[str, Any] = {"mid2e": {}, "a2mid2e": {}, "emotions": list(EMOTIONS),
                              "midlevel_features": list(MIDLEVEL_FEATURES)}
    for seed in ctx.seeds:
        split = run_split(ctx, seed, ids)
        # the linear maps are fitted on train + validation (nothing to stop early)
        split_ids = {"train": list(split.train) + list(split.validation), "test": list(split.test)}
        for name, x, upstream in (("mid2e", lambda s: annotated.loc[s].to_numpy(), ""),
                                  ("a2mid2e", lambda s: np.stack([mid_pred[i] for i in s]),
                                   Path(a2mid_checkpoint).stem)):
            run, weight, bias = fit_linear_run(name, seed, split_ids, labels.soundtracks_song_ids, x=x,
                                               y=lambda s: emotions.loc[s].to_numpy(), names=EMOTIONS,
                                               upstream=upstream)
            records.extend(run.records)
            splits.extend(run.splits)
            linear[name][f"seed_{seed}"] = {"weight": weight.round(6).tolist(), "bias": bias.round(6).tolist()}
            if name == "a2mid2e" and seed == ctx.seeds[0]:
                _save_a2mid2e(ctx, a2mid, meta, weight, bias, seed, results.test_pearson(run.records),
                              models_dir / "a2mid2e.pt")
    write_json(models_dir / "linear.json", linear)
    return results.write_stage(results_dir, metrics_path, records, splits, {"excluded_clips": len(decisions)})


def _save_a2mid2e(ctx: Context, a2mid, meta: dict, weight: np.ndarray, bias: np.ndarray, seed: int,
                  scores: dict, path: Path) -> None:
    """A2Mid2E as one user-facing checkpoint: the A2Mid network plus the run's linear layer."""
    from ..learning.models import build_model

    model = build_model("a2mid2e", **meta["architecture"])
    model.a2mid.load_state_dict(a2mid.state_dict())
    model.set_linear(weight, bias)
    save_checkpoint(path, model, kind="a2mid2e", config=ctx.config("a2mid2e"), spectrogram=meta["spectrogram"],
                    corpus=ctx.corpus, seed=seed, params_digest=params_hash(ctx.params),
                    test_pearson=scores)


def train_emotion_runs(ctx: Context, kind: str, models_dir: Path, results_dir: Path, metrics_path: Path,
                       plots_dir: Path) -> dict:
    """The ``train_a2e`` (kind ``a2e``) and ``train_joint`` (kind ``joint``) stages."""
    labels, models_dir = ctx.labels, Path(models_dir)
    if kind == "joint" and labels.soundtracks_midlevel is None:
        return write_not_run(models_dir, results_dir, metrics_path, "train_joint",
                             "No mid-level annotations for the Soundtracks clips: the Joint model is "
                             "supervised on both mid-level features and emotions.", plots_dir)
    decisions: list[str] = []
    ids = emotion_clip_ids(ctx, decisions)
    store = ctx.stores["soundtracks"]
    emotions = labels.emotions.loc[ids, list(EMOTIONS)]
    if kind == "joint":
        targets_all = np.hstack([labels.soundtracks_midlevel.loc[ids, list(MIDLEVEL_FEATURES)].to_numpy(),
                                 emotions.to_numpy()])
        names = MIDLEVEL_FEATURES + EMOTIONS
    else:
        targets_all, names = emotions.to_numpy(), EMOTIONS
    row = {i: k for k, i in enumerate(ids)}
    tasks: list[RunTask] = []
    for seed in ctx.seeds:
        split = run_split(ctx, seed, ids)
        targets = {part: targets_all[[row[i] for i in getattr(split, part)]]
                   for part in ("train", "validation", "test")}
        tasks.append(run_task_for(ctx, kind, store, (split.train, split.validation, split.test), targets,
                                  seed=seed, name=run_name(kind, seed), model=kind, models_dir=models_dir,
                                  names=names, song_ids=labels.soundtracks_song_ids))
    records, splits = train_runs(ctx, f"train_{kind}", tasks, plots_dir)
    return results.write_stage(results_dir, metrics_path, records, splits, {"excluded_clips": len(decisions)})
