"""The training grid: a stage's runs as tasks, trained here, in worker processes, or on Slurm.

A training stage's runs are independent (A2E and Joint: one per seed; ``train_a2mid``: three
networks): each has its own seed, split, crops, early stopping and checkpoint. ``grid`` in
params.yaml says where they run:

- ``executor: local``, ``jobs: 1``: one after another in the stage's process, with live
  training curves and a per-epoch progress bar.
- ``executor: local``, ``jobs: 0`` (default): as many at a time as fill the machine
  (:func:`runs_at_once`); on 2 cores in the reproducible mode that is one, as ``jobs: 1``.
- ``executor: local``, ``jobs: N``: N runs at a time in worker processes. In the reproducible
  mode each keeps the mode's fixed thread count, so every run is bit for bit the run it is
  alone; otherwise each gets ``cores // N`` threads (and so the numbers a solo run with that
  many threads gets). On a GPU the workers share it (or take the GPUs in turn).
- ``executor: slurm``: one Slurm job per run, submitted as a job array through ``submitit``
  with ``grid.slurm``'s partition, GPUs, CPUs, memory and time limit (the folders must be on a
  filesystem the nodes share, as usual on a cluster).

Whatever the executor, the stage waits for every run and then writes its results and one
metrics file, so DVC sees one stage and one ``dvc.lock`` entry. Which one is fastest where is
measured by ``benchmarks/train.py`` (docs/performance.md, "Benchmarks").

What happens in a run is :mod:`.run`'s business (:func:`.run.run_task`); this module only
decides where. Like :mod:`.run`, it imports neither numpy nor torch at load.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..core.config import EXECUTORS, Params, SlurmParams
from ..core.determinism import REPRODUCIBLE_THREADS
from ..core.errors import GridError
from .run import RunResult, RunTask, run_task

#: ``grid.slurm`` keys and the ``submitit`` parameter each one sets.
SLURM_PARAMETERS = {"partition": "slurm_partition", "gpus_per_node": "gpus_per_node",
                    "cpus_per_task": "cpus_per_task", "mem_gb": "mem_gb", "timeout_min": "timeout_min",
                    "array_parallelism": "slurm_array_parallelism"}


@dataclass(frozen=True)
class GridSettings:
    """Where a stage's runs are trained (params.yaml ``grid``; see the module docstring)."""

    executor: str
    jobs: int
    reproducible: bool  # train.reproducible: fixes each run's thread count
    slurm: SlurmParams | None  # grid.slurm: needed by the slurm executor only

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"grid.executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 0:
            raise ValueError(f"grid.jobs must be an integer >= 0 (0 = as many as fill the machine), got {self.jobs!r}")
        if self.executor == "slurm" and self.slurm is None:
            raise ValueError("grid.executor is slurm, but no grid.slurm settings were given")

    @classmethod
    def from_params(cls, params: Params) -> "GridSettings":
        """The settings params.yaml's ``grid`` and ``train.reproducible`` give (checked as the file was read)."""
        return cls(executor=params.grid.executor, jobs=params.grid.jobs, reproducible=params.train.reproducible,
                   slurm=params.grid.slurm)


def run_grid(tasks: Sequence[RunTask], settings: GridSettings, *, desc: str, progress: bool = True,
             curves: Callable[[RunTask], Callable[[dict[str, float]], None]] | None = None) -> list[RunResult]:
    """Train every task where ``settings`` say; return their results in task order.

    Parameters
    ----------
    curves : callable, optional
        ``curves(task)`` gives the ``on_epoch`` callback that logs the task's training curves.
        Runs in this process log each epoch as it ends; runs elsewhere are logged, epoch by
        epoch, when they return (in task order).
    """
    if settings.executor == "slurm":
        outcomes = _run_on_slurm(tasks, settings, desc=desc, progress=progress)
    elif runs_at_once(settings, len(tasks)) == 1:
        return [run_task(task, progress=progress, on_epoch=curves(task) if curves else None) for task in tasks]
    else:
        outcomes = _run_in_workers(tasks, settings, desc=desc, progress=progress)
    if curves is not None:
        for task, outcome in zip(tasks, outcomes):
            log = curves(task)
            for row in outcome.history:
                log(dict(row))
    return outcomes


def runs_at_once(settings: GridSettings, n_tasks: int) -> int:
    """How many of ``n_tasks`` local runs train at a time: ``grid.jobs``, or with 0 as many as fill the machine.

    0 chooses by what ``benchmarks/train.py`` measured on 2 cores: one run per core with one
    thread each beat one run with both threads (1.15x the throughput, torch's own mode), while
    runs beyond the cores slowed everything (two reproducible runs of 2 threads each on 2 cores:
    0.68x). So: the reproducible mode, whose runs keep their 2 threads, fits ``cores // 2``
    runs; otherwise one run per GPU where there are GPUs (not measured), else one per core.
    """
    from ..core.parallel import resolve_jobs

    if settings.jobs:
        jobs = settings.jobs
    elif settings.reproducible:
        jobs = resolve_jobs(0) // REPRODUCIBLE_THREADS
    else:
        import torch

        jobs = torch.cuda.device_count() or resolve_jobs(0)
    return max(1, min(jobs, n_tasks))


def threads_per_run(settings: GridSettings, jobs: int) -> int:
    """Intra-op threads of each of ``jobs`` concurrent local runs."""
    if settings.reproducible:
        return REPRODUCIBLE_THREADS  # the mode's numbers depend on it: never change it
    from ..core.parallel import resolve_jobs

    return max(1, resolve_jobs(0) // jobs)


def _run_in_workers(tasks: Sequence[RunTask], settings: GridSettings, *, desc: str,
                    progress: bool) -> list[RunResult]:
    from ..core.parallel import map_tasks

    jobs = runs_at_once(settings, len(tasks))
    threads = threads_per_run(settings, jobs)
    placed = [dataclasses.replace(task, threads=threads, reproducible=settings.reproducible, gpu_index=k)
              for k, task in enumerate(tasks)]
    return map_tasks(run_task, placed, jobs=jobs, desc=desc, unit="run", progress=progress, max_chunk=1)


def _run_on_slurm(tasks: Sequence[RunTask], settings: GridSettings, *, desc: str,
                  progress: bool) -> list[RunResult]:
    """One Slurm job per task (a job array), through submitit; waits for all of them."""
    import submitit
    from tqdm.auto import tqdm

    slurm = settings.slurm
    assert slurm is not None  # GridSettings refuses the slurm executor without it
    # One folder per stage invocation: submitit finds a job's result by job id, and a stale
    # result of an earlier job with the same id (another cluster, a reset counter) must not count.
    invocation = f"{desc}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder = Path(slurm.log_dir).absolute() / invocation / "%j"
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as err:  # submitit finds no srun: not on a Slurm cluster
        raise ValueError(f"grid.executor is slurm, but {err} (set grid.executor: local)") from None
    given = {parameter: getattr(slurm, key) for key, parameter in SLURM_PARAMETERS.items()}
    executor.update_parameters(name=desc, **{parameter: value for parameter, value in given.items() if value is not None})
    # Paths must mean the same on the nodes: absolute, on the shared filesystem.
    placed = [dataclasses.replace(task, store=Path(task.store).absolute(), checkpoint=Path(task.checkpoint).absolute(),
                                  threads=REPRODUCIBLE_THREADS if settings.reproducible else slurm.cpus_per_task,
                                  reproducible=settings.reproducible)
              for task in tasks]
    jobs = executor.map_array(run_task, placed)
    outcomes: list[RunResult] = []
    try:
        for task, job in tqdm(list(zip(placed, jobs)), desc=desc, unit="run", disable=not progress):
            try:
                outcomes.append(job.result())
            except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as err:
                raise GridError(f"{task.name}: Slurm job {job.job_id} failed: {_cause(str(err))} "
                                f"(log: {job.paths.stderr})") from None
    except BaseException:
        for job in jobs:  # a failed or interrupted stage leaves no jobs queued behind it
            if not job.done():
                job.cancel(check=False)
        raise
    return outcomes


def _cause(message: str) -> str:
    """The exception line (``ValueError: ...``) of the trace in a failed job's error, else its first line.

    submitit keeps a failed job's trace only as text (its pickled outcome is ``("error", trace)``).
    In Python's traceback format every frame line is indented, so the exception is the first
    unindented line after the last ``Traceback`` header (the last one: the exception raised).
    """
    lines = message.splitlines()
    headers = [i for i, line in enumerate(lines) if line.strip() == "Traceback (most recent call last):"]
    if headers:
        for line in lines[headers[-1] + 1:]:
            if line.strip() and not line[0].isspace():
                return line.strip()
    return next((line.strip() for line in lines if line.strip()), "no message")
