"""Data and models versioned for real: a DVC remote, a fresh clone that pulls instead of
recomputing, the Joint checkpoint as a DVC artifact, and the reproduce script CI runs.

One tiny pipeline run in a throwaway repository (as in test_pipeline.py), pushed to a
local-directory remote, the same way an S3, SSH or HTTP remote is used.
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from test_ci import env
from test_pipeline import TINY, make_project

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def sh(cmd, cwd, check=True):
    result = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def dvc(*args, cwd, check=True):
    return sh([sys.executable, "-m", "dvc", *args], cwd, check)


def test_push_clone_pull_then_nothing_to_recompute_and_the_model_as_an_artifact(tmp_path):
    repo = make_project(tmp_path, TINY)
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "storage", str(remote), cwd=repo)
    (repo / "profiles" / "tiny-lr.yaml").write_text(yaml.safe_dump({"train": {"learning_rate": 0.001}}))
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "remote and profile"], repo)

    # What the reproduce-paper workflow runs: profile, pull (nothing yet), repro, check, push
    done = sh(["bash", "scripts/ci/reproduce.sh", "profiles/tiny-lr.yaml", "verdict.md"], repo, check=False)
    own = sh([str(BIN / "midlevel-emotion"), "check"], repo, check=False)
    assert done.returncode == own.returncode, done.stderr[-3000:]  # the script exits with the verdict
    assert (repo / "verdict.md").read_text().startswith("### Embedded synthetic corpus")
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["learning_rate"] == 0.001
    assert any(remote.rglob("*")), "dvc push stored nothing"
    assert "in sync" in dvc("status", "--cloud", cwd=repo).stdout  # "Cache and remote 'storage' are in sync."
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "tiny run"], repo)
    sh(["git", "tag", "-a", "joint-model@v0.0.1", "-m", "Registering artifact joint-model version v0.0.1"], repo)

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "models" / "joint").exists()
    dvc("pull", cwd=clone)
    assert "Data and pipelines are up to date." in dvc("status", cwd=clone).stdout
    started = time.perf_counter()
    repro = dvc("repro", cwd=clone)
    assert time.perf_counter() - started < 10, "a repro after pull must not recompute anything"
    assert "Running stage" not in repro.stdout
    song = sorted((clone / "data/raw/soundtracks/audio").glob("*.mp3"))[0]
    explained = sh([str(BIN / "midlevel-emotion"), "explain", str(song), "--json"], clone)
    assert '"emotions"' in explained.stdout

    # Another project takes the Joint model without this pipeline
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dvc("artifacts", "get", str(repo), "joint-model", cwd=elsewhere)
    info = sh([str(BIN / "midlevel-emotion"), "info", "joint_seed_0.pt"], elsewhere)
    assert "joint" in info.stdout.lower()
