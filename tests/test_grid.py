"""The training grid (midlevel_emotion.experiments.grid): where a stage's runs train does not change them.

Each stage runs as DVC runs it, a subprocess of its script, on a tiny synthetic corpus made
once by the first three stages. Runs trained at once in worker processes must be bit for bit
the runs trained one after another (reproducible mode: every run keeps its 2 threads; torch's
own mode: equal to a solo run with the same thread count).
"""

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml

from midlevel_emotion.learning.checkpoints import load_checkpoint
from midlevel_emotion.experiments.fingerprint import state_digest
from midlevel_emotion.experiments.grid import GridSettings, _cause, runs_at_once, threads_per_run
from midlevel_emotion.experiments.run import run_device
from midlevel_emotion.core.config import Params
from midlevel_emotion.core.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "synthetic": {"n_clips": 24, "n_soundtracks": 16, "duration_seconds": 5.0, "jobs": 2},
    "train": {"crop_seconds": 1.0, "eval_hop_seconds": 1.0, "max_epochs": 2, "patience": 2},
    "runs": {"seeds": [0, 1, 2]},
}


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("MIDLEVEL_EMOTION_DEBUG", None)
    return env


def stage(name: str, *args, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(ROOT / "stages" / f"{name}.py"), *map(str, args)], cwd=cwd,
                          env=environment(**env), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-3000:]}"
    return done


def write_params(path: Path, changes: dict) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in changes.items():
        for key, value in values.items():
            if isinstance(value, dict):
                params[section][key].update(value)
            else:
                params[section][key] = value
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """data/raw and data/spectrograms of a tiny synthetic corpus, made by the pipeline's stages."""
    root = tmp_path_factory.mktemp("grid")
    params = write_params(root / "params.yaml", TINY)
    stage("download", "--out", "data/raw", "--params", params, cwd=root)
    stage("resample", "--raw", "data/raw", "--out", "data/resampled", "--params", params, cwd=root)
    stage("spectrogram", "--resampled", "data/resampled", "--out", "data/spectrograms", "--params", params, cwd=root)
    return root


def train_a2e(corpus: Path, out: str, grid: dict, train: dict | None = None, *, check: bool = True,
              **env: str) -> dict:
    """Run the train_a2e stage into ``corpus/out``; return its checkpoints' digests, results and stderr."""
    params = write_params(corpus / f"{out}.yaml", {**TINY, "train": {**TINY["train"], **(train or {})},
                                                   "grid": grid})
    if not check:
        return subprocess.run([sys.executable, str(ROOT / "stages" / "train_a2e.py"), "--params", str(params),
                               "--models", f"{out}/models", "--results", f"{out}/results",
                               "--metrics", f"{out}/metrics.json", "--plots", f"{out}/plots"],
                              cwd=corpus, env=environment(**env), capture_output=True, text=True, timeout=900)
    done = stage("train_a2e", "--raw", "data/raw", "--spectrograms", "data/spectrograms", "--params", params,
                 "--models", f"{out}/models", "--results", f"{out}/results", "--metrics", f"{out}/metrics.json",
                 "--plots", f"{out}/plots", cwd=corpus, **env)
    digests = {path.stem: state_digest(load_checkpoint(path)[0].state_dict())
               for path in sorted((corpus / out / "models").glob("*.pt"))}
    return {"digests": digests, "scores": (corpus / out / "results" / "scores.csv").read_text(),
            "metrics": json.loads((corpus / out / "metrics.json").read_text()), "stderr": done.stderr,
            "curves": sorted(p.relative_to(corpus / out / "plots").as_posix()
                             for p in (corpus / out / "plots").rglob("*.tsv"))}


@pytest.fixture(scope="module")
def alone(corpus) -> dict:
    """The reference: the runs trained one after another in the stage's process."""
    return train_a2e(corpus, "alone", {"jobs": 1})


@pytest.mark.slow
def test_runs_trained_at_once_are_bitwise_the_runs_trained_one_after_another(corpus, alone):
    together = train_a2e(corpus, "together", {"jobs": 2})
    assert sorted(alone["digests"]) == ["a2e_seed_0", "a2e_seed_1", "a2e_seed_2"]
    assert together["digests"] == alone["digests"]
    assert together["scores"] == alone["scores"] and together["metrics"] == alone["metrics"]
    # the curves of runs trained elsewhere are logged too, one folder per run
    assert together["curves"] == alone["curves"] and "plots/metrics/a2e_seed_2/val_mean_r.tsv" in alone["curves"]
    assert len(set(alone["digests"].values())) == 3  # the seeds differ


@pytest.mark.slow
def test_outside_the_reproducible_mode_a_worker_run_is_the_solo_run_with_its_thread_count(corpus):
    # 2 runs at once on this machine's cores: each gets cores // 2 threads; alone, the same
    # thread count must give the same bits (torch's fastest kernels, both times)
    jobs = 2
    threads = threads_per_run(GridSettings("local", jobs, False, None), jobs)
    train = {"reproducible": False}
    alone = train_a2e(corpus, "solo_threads", {"jobs": 1}, train, OMP_NUM_THREADS=str(threads),
                      MKL_NUM_THREADS=str(threads))
    together = train_a2e(corpus, "workers", {"jobs": jobs}, train)
    assert together["digests"] == alone["digests"]


@pytest.mark.slow
def test_runs_on_slurm_are_bitwise_the_local_runs(corpus, alone, fake_slurm):
    slurm = {"partition": "gpu-a100", "timeout_min": 30, "cpus_per_task": 4, "log_dir": str(corpus / "logs")}
    on_slurm = train_a2e(corpus, "slurm", {"executor": "slurm", "slurm": slurm})
    assert on_slurm["digests"] == alone["digests"]
    assert on_slurm["scores"] == alone["scores"] and on_slurm["metrics"] == alone["metrics"]
    assert on_slurm["curves"] == alone["curves"]
    (script,) = sorted(fake_slurm.glob("*.sh"))  # one job array for the three runs (at most 20 at once)
    lines = script.read_text().splitlines()
    for line in ("#SBATCH --partition=gpu-a100", "#SBATCH --time=30", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --array=0-2%3", "#SBATCH --mem=8GB"):
        assert line in lines, (line, lines)


@pytest.mark.slow
def test_a_failed_slurm_run_fails_the_stage_in_one_line_naming_the_run(corpus, fake_slurm):
    # width 0.001 is in (0, 1], as params.yaml's check asks, and leaves a convolution without
    # channels, found where the network is built: in the job
    done = train_a2e(corpus, "failing", {"executor": "slurm", "slurm": {"log_dir": str(corpus / "logs")}},
                     {"width": 0.001}, check=False)
    assert done.returncode == 1
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("train_a2e: error: a2e_seed_0: Slurm job ") and "no channels" in last, done.stderr
    assert "Traceback" not in done.stderr
    assert not (corpus / "failing" / "metrics.json").exists()  # no results that look complete


def test_slurm_without_a_cluster_is_one_line(corpus):
    done = train_a2e(corpus, "no_cluster", {"executor": "slurm", "slurm": {"log_dir": str(corpus / "logs")}},
                     check=False, PATH=os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                                       if "fake_slurm" not in p))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == ('train_a2e: error: grid.executor is slurm, but Could not detect "srun", '
                                           'are you indeed on a slurm cluster? (set grid.executor: local)')
    assert "Traceback" not in done.stderr and not (corpus / "no_cluster" / "metrics.json").exists()


def test_a_failed_jobs_cause_is_the_exception_it_raised():
    def raised_in_a_job():
        try:
            try:
                {}["dropout"]
            except KeyError as err:
                raise ValueError("dropout must be in [0, 1): 1.5\nsee params.yaml") from err
        except ValueError:
            return traceback.format_exc()

    # submitit's FailedJobError text: a header, the trace, a footer
    message = (f"Job (task=0) failed during processing with trace:\n----------------------\n{raised_in_a_job()}\n"
               "----------------------\nYou can check full logs with 'job.stderr(0)' and 'job.stdout(0)'")
    assert _cause(message) == "ValueError: dropout must be in [0, 1): 1.5"
    assert _cause("Job 12 (task: 0) with path /x/12_0_result.pkl\nhas not produced any output (state: TIMEOUT)") == \
        "Job 12 (task: 0) with path /x/12_0_result.pkl"
    assert _cause("") == "no message"


def test_grid_params_are_checked_at_the_boundary():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings = GridSettings.from_params(Params.from_mapping(params))
    assert settings.executor == "local" and settings.slurm.cpus_per_task == params["grid"]["slurm"]["cpus_per_task"]
    params["grid"]["executor"] = "kubernetes"
    with pytest.raises(ParamsError, match="params.yaml: grid.executor must be one of local, slurm"):
        Params.from_mapping(params)
    params["grid"]["executor"], params["grid"]["jobs"] = "local", -1
    with pytest.raises(ParamsError, match="params.yaml: grid.jobs must be a whole number >= 0, got -1"):
        Params.from_mapping(params)
    del params["grid"]["slurm"]["partition"]
    with pytest.raises(ParamsError, match="missing key 'grid.slurm.partition'"):
        Params.from_mapping(params)
    # settings built in code are checked too
    with pytest.raises(ValueError, match="grid.executor must be one of local, slurm"):
        GridSettings("kubernetes", 0, True, None)
    with pytest.raises(ValueError, match="grid.jobs must be an integer >= 0"):
        GridSettings("local", -1, True, None)
    with pytest.raises(ValueError, match="grid.executor is slurm, but no grid.slurm settings"):
        GridSettings("slurm", 0, True, None)


@pytest.mark.parametrize("jobs, reproducible, cores, n_tasks, expected", [
    (0, True, 2, 10, 1),     # the reproducible mode's 2 threads fill 2 cores: one after another
    (0, True, 16, 10, 8),    # ... and 16 cores hold 8 such runs
    (0, True, 16, 3, 3),     # never more workers than runs
    (0, False, 2, 10, 2),    # torch's own mode on a CPU: one run (of one thread) per core
    (3, True, 2, 10, 3),     # a number is taken as given
    (1, False, 16, 10, 1),
])
def test_jobs_0_runs_as_many_at_once_as_fill_the_machine(monkeypatch, jobs, reproducible, cores, n_tasks, expected):
    import torch

    import midlevel_emotion.core.parallel

    monkeypatch.setattr(midlevel_emotion.core.parallel, "resolve_jobs", lambda n: n or cores)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert runs_at_once(GridSettings("local", jobs, reproducible, None), n_tasks) == expected


def test_with_gpus_runs_go_one_per_gpu_round_robin(monkeypatch):
    # the GPU code path on a CPU-only machine: torch is told there are 3 GPUs
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert runs_at_once(GridSettings("local", 0, False, None), 10) == 3
    assert runs_at_once(GridSettings("local", 0, False, None), 2) == 2
    assert [str(run_device(k)) for k in (0, 1, 2, 5)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:2"]
    assert str(run_device(None)) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert str(run_device(4)) == "cpu"


def test_reproducible_runs_keep_their_threads_however_many_run_at_once():
    settings = GridSettings("local", 8, True, None)
    assert threads_per_run(settings, 8) == threads_per_run(settings, 1) == 2
    assert threads_per_run(GridSettings("local", 2, False, None), 64) == 1
