"""Shared pytest fixtures."""

import os
import subprocess
from pathlib import Path

import pytest

FAKE_SLURM_BIN = Path(__file__).parent / "fake_slurm"


@pytest.fixture
def fake_slurm(tmp_path_factory, monkeypatch):
    """A fake one-node Slurm first on PATH (tests/fake_slurm/: CI has no Slurm).

    submitit's Slurm executor (``submitit.AutoExecutor(folder, cluster="slurm")``)
    then submits, runs, watches and cancels jobs on this machine through its real
    code path. Yields the folder where ``sbatch`` logs each script it received, as
    ``<job id>.sh`` (``job.job_id`` up to the first "_" for an array task).

    Also makes submitit poll fast: its Slurm jobs share one ``SlurmInfoWatcher``
    (a class attribute, calling sacct at most every 600 s); a fresh one per test
    with ``delay_s=0.2`` calls it at most every 0.2 s and caches no job state of an
    earlier test (the fake's job ids start again at 1000 in every test). The wait
    for a result file after sacct says a job is over goes from 15 s (for slow
    network file systems) to 2 s.
    """
    from submitit.slurm import slurm

    state = tmp_path_factory.mktemp("fake_slurm")
    monkeypatch.setenv("PATH", f"{FAKE_SLURM_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    monkeypatch.setenv("FAKE_SLURM_KILL_WAIT", "1")
    monkeypatch.setattr(slurm.SlurmJob, "watcher", slurm.SlurmInfoWatcher(delay_s=0.2))
    monkeypatch.setattr(slurm.SlurmJob, "_results_timeout_s", 2)
    (state / "submitted").mkdir()
    yield state / "submitted"
    # what a test left running ends with it (SIGTERM now, SIGKILL 1 s later)
    subprocess.run([str(FAKE_SLURM_BIN / "scancel"), "--me"], check=False)



def pytest_collection_modifyitems(items):
    """The files with slow tests first: pytest-xdist (``--dist loadfile``) then starts the longest
    files at once instead of last, so the suite's wall time is not one slow file's tail."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order kept
