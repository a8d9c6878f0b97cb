"""Data and models versioned for real: a DVC remote, a fresh clone that pulls instead of
recomputing, the Joint checkpoint as a DVC artifact, and the reproduce script CI runs.

One tiny pipeline run in a throwaway repository (as in test_pipeline.py), pushed to a
local-directory remote, the same way an S3, SSH or HTTP remote is used.
"""

import sys
from pathlib import Path

import pytest
import yaml

from projects import copy_project, dvc, run as sh

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_push_clone_pull_then_nothing_to_recompute_and_the_model_as_an_artifact(tiny_run, tmp_path):
    repo = copy_project(tiny_run, tmp_path)  # the tiny pipeline, run and committed once per session
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "storage", str(remote), cwd=repo)
    # a profile that changes what only the last stage reads, so its repro re-runs `explain` alone
    (repo / "profiles" / "tiny-pairs.yaml").write_text(yaml.safe_dump({"explain": {"pair_selection": "formula"}}))
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", "remote and profile"], repo)

    # What the reproduce-paper workflow runs: profile, pull (nothing yet), repro, check, push
    done = sh(["bash", "scripts/ci/reproduce.sh", "profiles/tiny-pairs.yaml", "verdict.md"], repo, check=False)
    own = sh([str(BIN / "midlevel-emotion"), "check"], repo, check=False)
    assert done.returncode == own.returncode, done.stderr[-3000:]  # the script exits with the verdict
    assert "Running stage 'explain'" in done.stdout and "Running stage 'train_a2e'" not in done.stdout
    assert (repo / "verdict.md").read_text().startswith("### Embedded synthetic corpus")
    assert yaml.safe_load((repo / "params.yaml").read_text())["explain"]["pair_selection"] == "formula"
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
    repro = dvc("repro", cwd=clone)
    assert "Running stage" not in repro.stdout  # a repro after pull recomputes nothing
    song = sorted((clone / "data/raw/soundtracks/audio").glob("*.mp3"))[0]
    explained = sh([str(BIN / "midlevel-emotion"), "explain", str(song), "--json"], clone)
    assert '"emotions"' in explained.stdout

    # Another project takes the Joint model without this pipeline
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dvc("artifacts", "get", str(repo), "joint-model", cwd=elsewhere)
    info = sh([str(BIN / "midlevel-emotion"), "info", "joint_seed_0.pt"], elsewhere)
    assert "joint" in info.stdout.lower()
