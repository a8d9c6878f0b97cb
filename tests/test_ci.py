"""The CI workflows: linted by real linters, and the scripts they call run here.

`.github/workflows/*.yml` only wire up `scripts/ci/*.sh`; these tests run those scripts in
throwaway repositories, as the workflows would on a runner.
"""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from projects import environment
from test_evaluation import designed_values, write_fixture

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


env = environment  # this venv first on PATH, DVC quiet, a git identity


def run(cmd, cwd, check=True, **extra) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env={**env(), **extra}, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def lint(*paths: Path) -> list[subprocess.CompletedProcess]:
    return [run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                ROOT, check=False),
            run([str(BIN / "zizmor"), "--offline", "--no-progress", *map(str, paths)], ROOT, check=False)]


def test_the_workflows_pass_the_linters():
    assert {p.name for p in WORKFLOWS} == {"pull-request.yml", "reproduce-paper.yml"}
    for result in lint(*WORKFLOWS):
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_linters_catch_a_broken_workflow(tmp_path):
    text = (ROOT / ".github/workflows/pull-request.yml").read_text()
    invalid, injected = tmp_path / "invalid.yml", tmp_path / "injected.yml"
    invalid.write_text(text + "      - name: a step with neither run nor uses\n")
    # a script injection through an attacker-controlled value (a valid workflow otherwise)
    injected.write_text(text.replace('run: bash scripts/test.sh -q',
                                     'run: echo "${{ github.event.pull_request.title }}"'))
    assert lint(invalid)[0].returncode != 0
    schema, zizmor = lint(injected)
    assert schema.returncode == 0 and zizmor.returncode != 0
    assert "template-injection" in zizmor.stdout + zizmor.stderr


def test_workflows_only_call_scripts_that_exist():
    for workflow in WORKFLOWS:
        steps = [s for job in yaml.safe_load(workflow.read_text())["jobs"].values() for s in job["steps"]]
        for step in steps:
            for word in step.get("run", "").split():
                if word.startswith("scripts/"):
                    assert (ROOT / word).is_file(), f"{workflow.name} calls {word}, which does not exist"



def test_the_pull_request_workflow_runs_only_what_changed():
    """Tests and pipeline are parallel jobs; the DVC cache is keyed on every code dependency."""
    jobs = yaml.safe_load((ROOT / ".github/workflows/pull-request.yml").read_text())["jobs"]
    assert {"tests", "pipeline"} <= set(jobs)
    for job, other in (("tests", "pipeline"), ("pipeline", "tests")):
        needs = jobs[job].get("needs", [])
        assert other not in ([needs] if isinstance(needs, str) else needs), f"{job} waits for {other}"
    test_runs = [s["run"] for s in jobs["tests"]["steps"] if "scripts/test.sh" in s.get("run", "")]
    assert test_runs and all("--durations" in run for run in test_runs)  # the slowest tests

    caches = [s for s in jobs["pipeline"]["steps"] if s.get("uses", "").startswith("actions/cache")]
    assert caches and caches[0]["with"]["path"] == ".dvc/cache"
    key = caches[0]["with"]["key"]
    patterns = re.findall(r"'([^']+)'", re.search(r"hashFiles\(([^)]*)\)", key).group(1))
    assert {"dvc.yaml", "params.yaml"} <= set(patterns)
    assert key.startswith(caches[0]["with"]["restore-keys"])  # any older cache is a fallback
    assert caches[0]["uses"].split("@")[1].split()[0] == caches[-1]["uses"].split("@")[1].split()[0]

    def covered(dep: str) -> bool:
        # hashFiles' `**` spans folders, as fnmatch's `*` does; a folder is covered when its files are
        candidates = [dep, dep.rstrip("/") + "/file"] if (ROOT / dep).is_dir() else [dep]
        return any(fnmatch.fnmatch(path, pattern) for path in candidates for pattern in patterns)

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = {dep for stage in stages.values() for dep in stage.get("deps", [])
            if isinstance(dep, str) and "${" not in dep and dep.startswith(("stages/", "src/"))}
    assert deps  # the stages do depend on code
    uncovered = sorted(dep for dep in deps if not covered(dep))
    assert not uncovered, f"the DVC cache key ignores {uncovered}"


def project_copy(tmp_path: Path) -> Path:
    """The project's scripts and params in a new git + DVC repository."""
    repo = tmp_path / "repo"
    for name in ("scripts", "profiles", "reference"):
        shutil.copytree(ROOT / name, repo / name)
    shutil.copy2(ROOT / "params.yaml", repo / "params.yaml")
    run(["git", "init", "-q", "-b", "main"], repo)
    run([sys.executable, "-m", "dvc", "init", "-q"], repo)
    return repo


def committed_results(repo: Path, values: dict) -> None:
    """Results and the committed embedded headline, as `dvc repro` leaves them, declared in dvc.yaml."""
    write_fixture(repo, values=values)
    (repo / "metrics" / "headline.json").write_text((ROOT / "metrics" / "headline.json").read_text())
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": {
        "cmd": "true", "metrics": [{"metrics/headline.json": {"cache": False}}]}}}))


@pytest.mark.parametrize("change,status", [("drift", 0), ("regression", 1)])
def test_the_pull_request_script_reports_regressions_and_not_drift(tmp_path, change, status):
    repo = project_copy(tmp_path)
    committed_results(repo, designed_values())
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "base"], repo)
    run(["git", "checkout", "-qb", "change"], repo)
    values = designed_values()
    if change == "regression":
        values["a2e"] = values["a2e"] - 0.1
    else:
        values = {k: v + 0.002 * (-1) ** sum(v.shape) for k, v in values.items()}
    committed_results(repo, values)
    summary = tmp_path / "summary.md"
    result = run(["bash", "scripts/ci/compare.sh", "main", "verdict.md"], repo, check=False,
                 GITHUB_STEP_SUMMARY=str(summary))
    assert result.returncode == status, result.stdout + result.stderr
    verdict = (repo / "verdict.md").read_text()
    assert "### Headline metrics (`dvc metrics diff main`)" in verdict
    assert "### working tree against main: " + ("PASS" if status == 0 else "FAIL") in verdict
    assert ("`a2e.r_avg`" in verdict) and (("**worse**" in verdict) == (status == 1))
    assert summary.read_text() == verdict  # the job summary shows the same


def test_the_venv_refuses_a_python_older_than_the_floor_in_one_line(tmp_path):
    """scripts/venv.sh makes .venv with $PYTHON only if it is 3.11 or newer (pyproject's floor)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "venv.sh", tmp_path / "scripts" / "venv.sh")
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\n[ "$1" = "--version" ] && echo "Python 3.10.13" && exit 0\nexit 1\n')
    old.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "MIDLEVEL_EMOTION_ENV"}
    done = subprocess.run(["bash", "-c", "source scripts/venv.sh"], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "PYTHON": str(old)})
    assert done.returncode == 1 and not (tmp_path / ".venv").exists()
    assert done.stderr.strip() == ("scripts/venv.sh: Python 3.10.13 is not supported: midlevel-emotion needs "
                                   "Python 3.11 or newer (set PYTHON=/path/to/python3.11)")
