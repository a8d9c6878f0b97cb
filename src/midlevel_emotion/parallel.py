"""How many worker processes a stage uses (one rule for every parallel stage)."""

from __future__ import annotations

import os


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
