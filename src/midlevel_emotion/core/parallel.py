"""Worker processes: how many (one rule for every parallel stage) and one way to use them."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence, TypeVar

from tqdm.auto import tqdm

_PARENT_POLL_SECONDS = 0.5

T = TypeVar("T")
R = TypeVar("R")


def resolve_jobs(jobs: int) -> int:
    """Number of worker processes for a ``jobs`` setting.

    Parameters
    ----------
    jobs : int
        0 means one per CPU this process may run on (its affinity mask, so a container
        limited to 2 cores gets 2, not the host's count); a positive number is used as is.

    Returns
    -------
    int
        At least 1.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise ValueError(f"jobs must be an integer >= 0 (0 = all cores), got {jobs!r}")
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0 (0 = all cores), got {jobs}")
    if jobs > 0:
        return jobs
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _die_with_parent(parent_pid: int) -> None:
    """Worker initialiser: end this worker when the process that asked for it is gone.

    Without it a killed stage (SIGKILL, or a closed terminal) leaves its workers running:
    under the fork server a worker's parent is the server, which outlives the stage, so
    ``PR_SET_PDEATHSIG`` alone would not fire. A daemon thread polls the stage's pid.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle

    def watch() -> None:
        while True:
            time.sleep(_PARENT_POLL_SECONDS)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # the pid was reused by another user's process
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _run_chunk(function: Callable[[Any], Any], chunk: Sequence[Any]) -> list[Any]:
    return [function(task) for task in chunk]


def _context() -> multiprocessing.context.BaseContext:
    # Not "fork": the caller may hold threads (torch, tqdm). The fork server starts clean.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def map_tasks(
    function: Callable[[T], R],
    tasks: Sequence[T],
    *,
    jobs: int = 0,
    desc: str = "",
    unit: str = "clip",
    progress: bool = True,
    max_chunk: int = 32,
) -> list[R]:
    """``[function(t) for t in tasks]`` over worker processes, with a progress bar.

    Parameters
    ----------
    function : callable
        A module-level function (it is pickled by reference); it gets one task.
    tasks : sequence
        Picklable tasks.
    jobs : int
        Worker processes, as in :func:`resolve_jobs`; 1 runs in this process (no start-up
        cost, easy to profile).
    desc, unit : str
        Progress bar label and unit.
    progress : bool
        Show the bar (on stderr).
    max_chunk : int
        At most this many tasks travel to a worker at once (keeps the bar moving); at least
        four chunks per worker balance the load.

    Returns
    -------
    list
        The results in task order. The first exception a task raises cancels the rest and
        is raised here.
    """
    tasks = list(tasks)
    jobs = min(resolve_jobs(jobs), max(1, len(tasks)))
    results: list[Any] = [None] * len(tasks)
    with tqdm(total=len(tasks), desc=desc, unit=unit, disable=not progress) as bar:
        if jobs == 1:
            for i, task in enumerate(tasks):
                results[i] = function(task)
                bar.update(1)
            return results
        size = max(1, min(max_chunk, math.ceil(len(tasks) / (jobs * 4))))
        starts = range(0, len(tasks), size)
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_context(), initializer=_die_with_parent,
                                   initargs=(os.getpid(),))
        try:
            pending = {pool.submit(_run_chunk, function, tasks[s:s + size]): s for s in starts}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    start = pending.pop(future)
                    chunk = future.result()
                    results[start:start + len(chunk)] = chunk
                    bar.update(len(chunk))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return results
