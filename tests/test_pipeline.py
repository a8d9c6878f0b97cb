"""End to end: the real DVC pipeline in a throwaway git repository, on a tiny synthetic corpus.

This is the user's workflow: clone, `dvc repro`, commit, change a param, re-run, and compare
with `dvc metrics diff` / `dvc params diff`; a queued bf16 experiment; a DVC remote, a fresh
clone that pulls, the model as an artifact. The Soundtracks-only profile is in
test_soundtracks_only.py (its own corpus; a file of its own runs beside this one under xdist).
"""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from midlevel_emotion.core.config import flatten
from projects import BIN, TINY, copy_project, dvc, environment, make_project, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """The tiny pipeline (projects.TINY), run once for this file's tests and committed.

    The tests that start from a finished run copy it (``projects.copy_project``) and go on from
    there, instead of each running the whole pipeline again (pytest-xdist's ``--dist loadfile``
    keeps this file on one worker, so it runs once per test session).
    """
    repo = make_project(tmp_path_factory.mktemp("tiny_run"), TINY)
    dvc("repro", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny run"], repo)
    return repo


def run_env(cmd: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    """``run`` with extra environment variables (e.g. another thread count)."""
    return run(cmd, cwd, extra=extra)


def plots_show(repo: Path) -> dict:
    """``dvc plots show --json``: every plot, and no file DVC cannot read as plot data."""
    shown = json.loads(dvc("plots", "show", "--json", cwd=repo).stdout)
    assert not shown.get("errors"), shown.get("errors")
    return shown["data"]


def test_repro_commit_change_param_and_diff(tiny_run, tmp_path):
    repo = copy_project(tiny_run, tmp_path)  # make_project + dvc repro + git commit, done once per session
    assert run(["git", "status", "--porcelain"], repo).stdout == ""  # the run is committed, outputs and lock
    evaluate = json.loads((repo / "metrics/evaluate.json").read_text())
    assert evaluate["n_runs"] == 2
    assert set(evaluate["table2"]) >= {"mid2e", "a2e", "a2mid2e", "joint", "coe_a2mid2e", "coe_joint"}
    assert "a2mid_plus" in evaluate["table3"] and "joint" in evaluate["explanation_truth"]
    for png in ("effects", "correlation_heatmap", "joint_weights", "song_pair_effects"):
        assert (repo / f"plots/{png}.png").stat().st_size > 10_000
    report = (repo / "reports/evaluation.md").read_text()
    assert "synthetic" in report.lower() and "A2E" in report
    assert dvc("status", cwd=repo).stdout.strip().endswith("up to date.")
    plots = plots_show(repo)
    curves = [name for name in plots if name.startswith("plots/training/")]
    # DVCLive's curves: <stage log>/plots/metrics/<model>/<curve>.tsv, one step per epoch
    assert {f"plots/training/{log}/plots/metrics/{model}/{curve}.tsv"
            for log, model in (("a2e", "a2e_seed_0"), ("joint", "joint_seed_1"), ("a2mid", "a2mid_plus"))
            for curve in ("train_loss", "val_loss", "val_mean_r")} <= set(curves)
    values = plots["plots/training/a2e/plots/metrics/a2e_seed_0/val_mean_r.tsv"][0]["content"]["data"]["values"]
    assert [int(v["step"]) for v in values] == [1, 2] and "val_mean_r" in values[0]  # max_epochs 2
    shown = json.loads(dvc("metrics", "show", "--json", cwd=repo).stdout)  # {revision: {"data": {path: ...}}}
    metric_files = {name for revision in shown.values() for name in revision["data"]}
    assert metric_files == {"metrics/headline.json"}  # the headline is the default view (README)

    # A re-run with another thread count and kernel set (another machine, as far as torch can
    # tell) changes nothing in the reproducible mode, and the verdict says so.
    run_env(["dvc", "repro", "-f", "-s", "train_a2e"], repo, OMP_NUM_THREADS="1", ATEN_CPU_CAPABILITY="default")
    dvc("repro", cwd=repo)
    same = run_env([str(BIN / "midlevel-emotion"), "check", "--against", "HEAD"], repo)
    assert "| `a2e.r_avg` |" in same.stdout and "identical" in same.stdout and "**worse**" not in same.stdout
    assert dvc("metrics", "diff", "--json", "--targets", "metrics/a2e.json", cwd=repo).stdout.strip() in ("{}", "")
    # A param of one stage (the Joint model's loss weight) re-runs that stage and what reads it
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train_joint"]["midlevel_loss_weight"] = 0.5
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    status = dvc("status", cwd=repo).stdout
    assert status.startswith("train_joint:")  # only the stage that reads it (then what reads its outputs)
    assert not any(name in status for name in ("download", "train_a2mid", "fit_mid2e", "train_a2e"))
    dvc("repro", cwd=repo)

    params_diff = json.loads(dvc("params", "diff", "--json", cwd=repo).stdout)
    assert list(params_diff["params.yaml"]) == ["train_joint.midlevel_loss_weight"]
    assert params_diff["params.yaml"]["train_joint.midlevel_loss_weight"]["old"] == 1.0
    assert params_diff["params.yaml"]["train_joint.midlevel_loss_weight"]["new"] == 0.5
    metrics_diff = json.loads(dvc("metrics", "diff", "--json", cwd=repo).stdout)
    assert list(metrics_diff) == ["metrics/headline.json"]  # the headline only, by default
    headline = metrics_diff["metrics/headline.json"]
    assert "joint.r_avg.mean" in headline and len(headline) <= 40
    assert headline["joint.r_avg.mean"]["old"] != headline["joint.r_avg.mean"]["new"]
    assert "a2e.r_avg.mean" not in headline  # A2E did not change
    detail = json.loads(dvc("metrics", "diff", "--json", "--targets", "metrics/joint.json", "metrics/evaluate.json",
                            cwd=repo).stdout)  # every per-run number is still one command away
    key = "joint.seed_0.emotions.valence"
    assert key in detail["metrics/joint.json"]
    assert detail["metrics/joint.json"][key]["old"] != detail["metrics/joint.json"][key]["new"]
    assert "table2.coe_joint.average.mean" in detail["metrics/evaluate.json"]
    # the noise-aware verdict against the committed run: it runs, and names the changed Joint model
    verdict = run([str(BIN / "midlevel-emotion"), "check", "--against", "HEAD",
                   "--out", "verdict.md"], repo, check=False)
    assert verdict.returncode in (0, 1) and "`joint.r_avg`" in (repo / "verdict.md").read_text()


def _leaves(tree: dict) -> dict[str, float]:
    """The numbers of a metrics file, by dotted key."""
    return {key: value for key, value in flatten(tree).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def test_a_queued_bf16_experiment_agrees_with_fp32_on_every_headline_metric(tiny_run, tmp_path):
    """The README's sweep workflow (dvc exp run --queue, dvc queue start, dvc exp show) on bf16,
    against the committed fp32 run (the reproducible mode's kernels)."""
    repo = copy_project(tiny_run, tmp_path)
    # grid.jobs=1: the runs train in the stage's process (no worker start-up; numbers unchanged)
    dvc("exp", "run", "--queue", "-S", "train.precision=bf16", "-S", "train.reproducible=false", "-S", "grid.jobs=1",
        "-n", "bf16", cwd=repo)
    # The worker DVC starts lives on after `queue start` returns, holding the pipes it inherited:
    # captured, they would keep this call waiting until the worker exits, idle, a minute later.
    with open(tmp_path / "queue_start.log", "w") as log:
        started = subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", "1"], cwd=repo,
                                 env=environment(), stdout=log, stderr=subprocess.STDOUT)
    assert started.returncode == 0, (tmp_path / "queue_start.log").read_text()[-3000:]
    deadline = time.monotonic() + 1200
    while True:
        status = dvc("queue", "status", cwd=repo).stdout
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert "Success" in status, status + dvc("queue", "logs", "bf16", cwd=repo).stdout[-3000:]
    dvc("queue", "stop", cwd=repo, check=False)  # the idle worker ends now, not a minute later
    shown = json.loads(dvc("exp", "show", "--json", cwd=repo).stdout)
    (bf16,) = [found for found in _named(shown, "bf16")]
    assert bf16["data"]["params"]["params.yaml"]["data"]["train"]["precision"] == "bf16"
    headline_bf16 = _leaves(bf16["data"]["metrics"]["metrics/headline.json"]["data"])
    headline_fp32 = _leaves(json.loads((repo / "metrics/headline.json").read_text()))
    assert set(headline_bf16) == set(headline_fp32) and len(headline_fp32) >= 30
    assert headline_bf16["n_runs"] == headline_fp32["n_runs"] == 2
    for key, fp32 in headline_fp32.items():
        if ".p_" in key:  # the p-values of 2 runs swing with any change; they must stay p-values
            assert 0 <= headline_bf16[key] <= 1, (key, headline_bf16[key])
        else:
            assert _bf16_agrees(key, fp32, headline_bf16[key]), (key, fp32, headline_bf16[key])


def _bf16_agrees(key: str, fp32: float, bf16: float) -> bool:
    """Whether a bf16 headline metric is close enough to fp32's at this test's tiny scale.

    Two epochs of 1 s crops on 16 clips: a training run this short amplifies any change of
    arithmetic, as it amplifies a change of seed (runs here moved r by up to 0.13, and the
    Joint model's MSE ratio, about 8 at this scale, from 8.26 to 9.54). An MSE ratio is
    compared as a factor (within 1.5x either way), since its size varies from 0.07 to 10
    between models; everything else (Pearson r means and stds, CoE, planted-truth
    correlations, sign agreement) within 0.25. The bands catch a broken bf16 path (NaN, r
    collapsing, errors exploding), not a 0.01 drift; docs/performance.md "Training the grid fast" gives
    the agreement at the embedded default's scale.
    """
    if key.endswith("mse_ratio"):
        return fp32 > 0 and bf16 > 0 and abs(math.log(bf16 / fp32)) <= math.log(1.5)
    return abs(bf16 - fp32) <= 0.25


def _named(tree, name: str):
    """Every experiment entry called ``name`` in ``dvc exp show --json`` output."""
    if isinstance(tree, dict):
        if tree.get("name") == name and "data" in tree:
            yield tree
        for value in tree.values():
            yield from _named(value, name)
    elif isinstance(tree, list):
        for value in tree:
            yield from _named(value, name)


# ---------------------------------------------------------------------------------------
# Data and models versioned for real: a DVC remote, a fresh clone that pulls instead of
# recomputing, the Joint checkpoint as a DVC artifact, and the reproduce script CI runs. The
# tiny run is pushed to a local-directory remote, the same way an S3, SSH or HTTP remote is used.


def test_push_clone_pull_then_nothing_to_recompute_and_the_model_as_an_artifact(tiny_run, tmp_path):
    repo = copy_project(tiny_run, tmp_path)  # the tiny pipeline, run and committed once per session
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "storage", str(remote), cwd=repo)
    # a profile that changes what only the last stage reads, so its repro re-runs `explain` alone
    (repo / "profiles" / "tiny-pairs.yaml").write_text(yaml.safe_dump({"explain": {"pair_selection": "formula"}}))
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "remote and profile"], repo)

    # What the reproduce-paper workflow runs: profile, pull (nothing yet), repro, check, push
    done = run(["bash", "scripts/ci/reproduce.sh", "profiles/tiny-pairs.yaml", "verdict.md"], repo, check=False)
    own = run([str(BIN / "midlevel-emotion"), "check"], repo, check=False)
    assert done.returncode == own.returncode, done.stderr[-3000:]  # the script exits with the verdict
    assert "Running stage 'explain'" in done.stdout and "Running stage 'train_a2e'" not in done.stdout
    assert (repo / "verdict.md").read_text().startswith("### Embedded synthetic corpus")
    assert yaml.safe_load((repo / "params.yaml").read_text())["explain"]["pair_selection"] == "formula"
    assert any(remote.rglob("*")), "dvc push stored nothing"
    assert "in sync" in dvc("status", "--cloud", cwd=repo).stdout  # "Cache and remote 'storage' are in sync."
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "tiny run"], repo)
    run(["git", "tag", "-a", "joint-model@v0.0.1", "-m", "Registering artifact joint-model version v0.0.1"], repo)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "models" / "joint").exists()
    dvc("pull", cwd=clone)
    assert "Data and pipelines are up to date." in dvc("status", cwd=clone).stdout
    repro = dvc("repro", cwd=clone)
    assert "Running stage" not in repro.stdout  # a repro after pull recomputes nothing
    song = sorted((clone / "data/raw/soundtracks/audio").glob("*.mp3"))[0]
    explained = run([str(BIN / "midlevel-emotion"), "explain", str(song), "--json"], clone)
    assert '"emotions"' in explained.stdout

    # Another project takes the Joint model without this pipeline
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dvc("artifacts", "get", str(repo), "joint-model", cwd=elsewhere)
    info = run([str(BIN / "midlevel-emotion"), "info", "joint_seed_0.pt"], elsewhere)
    assert "joint" in info.stdout.lower()
