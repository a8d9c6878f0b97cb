"""Throwaway copies of this project for the end-to-end tests: real git, real DVC, a tiny corpus.

``make_project`` copies the project's files (as a fresh clone has them) into a new git
repository with some params changed. ``test_pipeline.py``'s ``tiny_run`` fixture runs the tiny
pipeline once and commits it; the tests that start from a finished run take a copy of it
(:func:`copy_project`) instead of running the pipeline again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: The tiny pipeline: 28 clips of 6 s, 1 s crops, 2 epochs, 2 runs.
TINY = {
    "synthetic": {"n_clips": 28, "n_soundtracks": 16, "duration_seconds": 6.0, "jobs": 2},
    "train": {"crop_seconds": 1.0, "eval_hop_seconds": 1.0, "max_epochs": 2, "patience": 2},
    "runs": {"seeds": [0, 1]},
}


def environment(**extra: str) -> dict[str, str]:
    """This venv first on PATH, DVC quiet, a git identity (a CI runner has none)."""
    return {**os.environ, **extra, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MIDLEVEL_EMOTION_ENV": "active",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def run(cmd: list[str], cwd: Path, check: bool = True, extra: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=environment(**(extra or {})), capture_output=True, text=True)
    assert not check or result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd, check=check)


def deep_update(params: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict):
            deep_update(params[key], value)
        else:
            params[key] = value
    return params


def make_project(tmp_path: Path, changes: dict) -> Path:
    """Copy the project's files (as a fresh clone would have them) into a new git repo."""
    repo = tmp_path / "project"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    for name in listed:
        if name == "dvc.lock" or name.startswith(("data/", "metrics/", "plots/", "models/", "results/")):
            continue  # outputs of the committed run: this repo makes its own
        if not (ROOT / name).is_file():
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    params_path = repo / "params.yaml"
    params_path.write_text(yaml.safe_dump(deep_update(yaml.safe_load(params_path.read_text()), changes)))
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny project"], repo)
    return repo


def copy_project(repo: Path, tmp_path: Path) -> Path:
    """A copy of a project with its git history, DVC cache and outputs (a second clone, run)."""
    copy = tmp_path / "project"
    state = (repo / ".dvc").resolve()

    def skip_dvc_tmp(folder: str, names: list[str]) -> list[str]:
        return ["tmp"] if Path(folder).resolve() == state else []  # .dvc/tmp: locks, the state database

    shutil.copytree(repo, copy, symlinks=True, ignore=skip_dvc_tmp)
    return copy
