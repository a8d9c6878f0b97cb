"""One run's life, the same for every model of the paper: split, train (or fit), predict the test
clips, score, save, record.

A run is one model under one seed with its own split (:mod:`.protocol` decides which clips and
targets). Its life is:

1. **train** on the train split, stopping early on the validation split: a network through
   :func:`midlevel_emotion.learning.training.train` (:func:`run_task`), a linear map by least
   squares on train + validation, which have nothing to stop early (:func:`fit_linear_run`);
2. **predict** the test clips: a network over windows (:mod:`midlevel_emotion.learning.inference`),
   a linear map on its inputs;
3. **score and record** (:func:`record_run`, the one place a run is scored): test r, MSE and the
   baseline per target, and which clip the run used for what (:mod:`.results`);
4. **save** the checkpoint that the later stages and the CLI load.

Where a network's run happens (here, in a worker process, or as a Slurm job) is
:mod:`.grid`'s business, not this module's.

This module imports neither numpy nor torch at load: a worker or a Slurm job unpickles
:func:`run_task` first, then pins its threads (:mod:`midlevel_emotion.core.determinism`), then
loads torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..core.determinism import configure_cpu

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..learning.training import TrainConfig


@dataclass(frozen=True)
class RunTask:
    """One run of the grid: what to train on, how, and where its checkpoint goes.

    Everything a worker process or a Slurm job needs travels in it (paths, not data: the
    spectrogram store is memory-mapped where the run trains).
    """

    kind: str  # the network: "a2e", "a2mid" or "joint" (models.build_model)
    name: str  # the run: checkpoint stem and training-curve folder, e.g. "a2e_seed_0"
    model: str  # the model's name in the results tables, e.g. "a2e", "a2mid_plus"
    seed: int
    store: Path  # spectrogram store folder (clips.ClipSet's clips)
    split: dict[str, tuple[str, ...]]  # "train", "validation", "test" clip ids
    targets: dict[str, "np.ndarray | None"]  # the same keys; rows in the split's order
    names: tuple[str, ...]  # target names, in the targets' column order
    song_ids: dict[str, str] | None  # store clip id -> mid-level song id (None: they are song ids)
    config: "TrainConfig"
    checkpoint: Path
    checkpoint_meta: dict[str, Any]  # spectrogram, corpus, params_digest: checkpoints.save_checkpoint's
    threads: int | None = None  # intra-op threads where the run trains; None: leave as configured
    reproducible: bool = False
    gpu_index: int | None = None  # with several GPUs, which one (modulo their count)


@dataclass
class RunResult:
    """What a run returns to the stage: its results rows (:mod:`midlevel_emotion.experiments.results`) and curves."""

    records: list[dict]
    splits: list[dict]
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch (networks only)


def run_task(task: RunTask, progress: bool = False,
             on_epoch: Callable[[dict[str, float]], None] | None = None) -> RunResult:
    """Train one run, save its checkpoint and score its test clips.

    ``progress`` shows the per-epoch bar; ``on_epoch`` receives each epoch's history row
    (live training curves, in the stage's process only).
    """
    if task.threads is not None:
        configure_cpu(task.reproducible, task.threads)  # before torch loads, in a fresh worker
    import numpy as np

    from ..learning.checkpoints import save_checkpoint
    from ..learning.inference import predict
    from ..learning.clips import ClipSet
    from ..learning.training import train
    from ..signal.store import SpectrogramStore
    from .results import test_pearson

    device = run_device(task.gpu_index)
    store = SpectrogramStore.open(task.store)

    def clips(part: str) -> ClipSet:
        return ClipSet(list(task.split[part]), [store.clip(i) for i in task.split[part]],
                       np.asarray(task.targets[part], dtype=np.float32))

    result = train(task.kind, clips("train"), clips("validation"), mean=store.mean, std=store.std,
                   config=task.config, seed=task.seed, device=device, description=task.name, progress=progress,
                   on_epoch=on_epoch)
    test_ids = task.split["test"]
    prediction = None
    if test_ids:
        prediction = predict(result.model, [store.clip(i) for i in test_ids], mean=store.mean, std=store.std,
                             crop_frames=task.config.crop_frames, hop_frames=task.config.hop_frames, device=device)
    run = record_run(task.model, task.seed, task.names, task.split, task.song_ids, y_train=task.targets["train"],
                     y_test=task.targets["test"], prediction=prediction, best_epoch=result.best_epoch,
                     epochs=len(result.history))
    save_checkpoint(task.checkpoint, result.model, kind=task.kind, config=task.config,
                    test_pearson=test_pearson(run.records), seed=task.seed, **task.checkpoint_meta,
                    extra={"best_epoch": result.best_epoch, "epochs": len(result.history),
                           "test_ids": list(test_ids)})
    run.history = result.history
    return run


def record_run(model: str, seed: int, names: Sequence[str], split: Mapping[str, Sequence[str]],
               song_ids: Mapping[str, str] | None, *, y_train: np.ndarray, y_test: np.ndarray | None,
               prediction: np.ndarray | None, **details: Any) -> RunResult:
    """Score a run's test predictions and record which clip it used for what: the one place a run
    of any model is scored (:func:`midlevel_emotion.experiments.results.score_records` and
    ``split_records``; ``details``: ``best_epoch``, ``epochs`` or ``upstream``)."""
    from . import results

    records = results.score_records(model, seed, names, split, y_train=y_train, y_test=y_test,
                                    prediction=prediction, **details)
    return RunResult(records, results.split_records(model, seed, split, song_ids))


def fit_linear_run(model: str, seed: int, split: Mapping[str, Sequence[str]], song_ids: Mapping[str, str] | None,
                   *, x: Callable[[Sequence[str]], np.ndarray], y: Callable[[Sequence[str]], np.ndarray],
                   names: Sequence[str], upstream: str = "") -> tuple[RunResult, np.ndarray, np.ndarray]:
    """A linear map's run (Mid2E, A2Mid2E's layer): least squares on the ``train`` clips, predict
    and score the ``test`` clips.

    ``x(ids)`` and ``y(ids)`` give the inputs and targets of clips, one row per id. Returns the
    run's record and the fitted (n_targets, n_inputs) weight and (n_targets,) bias.
    """
    from ..learning.scores import fit_linear

    y_train, y_test = y(split["train"]), y(split["test"])
    weight, bias = fit_linear(x(split["train"]), y_train)
    prediction = x(split["test"]) @ weight.T + bias
    run = record_run(model, seed, names, split, song_ids, y_train=y_train, y_test=y_test, prediction=prediction,
                     upstream=upstream)
    return run, weight, bias


def run_device(gpu_index: int | None) -> torch.device:
    """Where a run trains: the CPU without a GPU, else GPU ``gpu_index`` modulo their count
    (runs spread round-robin over the GPUs; None: torch's current GPU)."""
    import torch

    from ..learning.training import default_device

    device = default_device()
    if device.type == "cuda" and gpu_index is not None:
        device = torch.device("cuda", gpu_index % torch.cuda.device_count())
    return device


__all__ = ["RunResult", "RunTask", "fit_linear_run", "record_run", "run_device", "run_task"]
