"""submitit's Slurm executor, end to end on the fake Slurm of tests/fake_slurm/."""

import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError


@pytest.fixture(autouse=True, scope="module")
def _pickle_this_module_by_value():
    # The jobs cannot import this test module (tests/ is on no path of theirs), so the
    # functions below travel to them by value, as a notebook's would.
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


def _executor(tmp_path, **parameters):
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(**{"timeout_min": 60, **parameters})
    return executor


def _sacct_state(job, timeout_s=5.0):
    """The job's final state as sacct reports it (the runner records it just after the
    result file appears, so wait for it)."""
    end = time.time() + timeout_s
    while True:
        state = job.get_info(mode="force").get("State", "UNKNOWN")
        if state not in ("PENDING", "RUNNING", "UNKNOWN") or time.time() > end:
            return state
        time.sleep(0.05)


def _add(a, b):
    return a + b


def _inside():
    env = submitit.JobEnvironment()
    keys = ("SLURM_JOB_PARTITION", "SLURM_CPUS_PER_TASK", "SLURM_GPUS_PER_NODE", "SLURM_MEM_PER_NODE")
    return {
        "cluster": env.cluster, "job_id": env.job_id, "global_rank": env.global_rank,
        "local_rank": env.local_rank, "node": env.node, "num_tasks": env.num_tasks,
        "num_nodes": env.num_nodes, "hostnames": env.hostnames,
        "array_task_id": env.array_task_id, **{k: os.environ.get(k) for k in keys},
    }


def _square_where(x):
    return x * x, submitit.JobEnvironment().job_id


def _fail(message):
    raise ValueError(message)


class _Preemptible(submitit.helpers.Checkpointable):
    """Waits to be preempted on its first run; returns how often Slurm restarted it."""

    def __call__(self, started: str):
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if restarts == 0:
            Path(started).touch()
            time.sleep(60)
        return restarts


def _wait_for(path: Path, timeout_s=20.0):
    end = time.time() + timeout_s
    while not path.exists():
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.05)


def test_submit_runs_the_function_in_a_slurm_job(fake_slurm, tmp_path):
    executor = _executor(tmp_path)
    job = executor.submit(_add, 2, 3)
    assert isinstance(job, submitit.SlurmJob)
    assert job.result() == 5
    assert _sacct_state(job) == "COMPLETED"
    inside = executor.submit(_inside).result()
    assert inside["cluster"] == "slurm"  # submitit's SlurmJobEnvironment read the SLURM_* variables
    assert inside["job_id"] != job.job_id
    assert (inside["global_rank"], inside["local_rank"], inside["node"]) == (0, 0, 0)
    assert (inside["num_tasks"], inside["num_nodes"], inside["array_task_id"]) == (1, 1, None)
    assert inside["hostnames"] and inside["hostnames"][0]
    assert sorted(p.name for p in fake_slurm.iterdir()) == [f"{job.job_id}.sh", f"{int(job.job_id) + 1}.sh"]


@pytest.mark.parametrize("how", ["map_array", "batch"])
def test_a_job_array_returns_results_in_order(fake_slurm, tmp_path, how):
    executor = _executor(tmp_path, slurm_array_parallelism=2)
    xs = [3, 1, 4, 1, 5]
    if how == "map_array":
        jobs = executor.map_array(_square_where, xs)
    else:
        with executor.batch():
            jobs = [executor.submit(_square_where, x) for x in xs]
    array_id = jobs[0].job_id.split("_")[0]
    assert [job.job_id for job in jobs] == [f"{array_id}_{i}" for i in range(len(xs))]
    assert [job.result() for job in jobs] == [(x * x, job.job_id) for x, job in zip(xs, jobs)]
    assert [_sacct_state(job) for job in jobs] == ["COMPLETED"] * len(xs)
    script = (fake_slurm / f"{array_id}.sh").read_text()
    assert "#SBATCH --array=0-4%2" in script.splitlines()


def test_a_failing_function_raises_failed_job_error_with_its_message(fake_slurm, tmp_path):
    job = _executor(tmp_path).submit(_fail, "the grid cell 7/3 diverged")
    with pytest.raises(FailedJobError, match="the grid cell 7/3 diverged") as raised:
        job.result()
    assert "ValueError" in str(raised.value)
    assert _sacct_state(job) == "FAILED"


def test_the_parameters_reach_the_sbatch_lines_and_the_job(fake_slurm, tmp_path):
    executor = _executor(
        tmp_path, slurm_partition="gpu-a100", gpus_per_node=2, timeout_min=90, cpus_per_task=8, mem_gb=32,
        name="grid",
    )
    job = executor.submit(_inside)
    inside = job.result()
    lines = (fake_slurm / f"{job.job_id}.sh").read_text().splitlines()
    for line in (
        "#SBATCH --partition=gpu-a100", "#SBATCH --gpus-per-node=2", "#SBATCH --time=90",
        "#SBATCH --cpus-per-task=8", "#SBATCH --mem=32GB", "#SBATCH --job-name=grid",
    ):
        assert line in lines
    assert inside["SLURM_JOB_PARTITION"] == "gpu-a100"
    assert (inside["SLURM_CPUS_PER_TASK"], inside["SLURM_GPUS_PER_NODE"]) == ("8", "2")
    assert inside["SLURM_MEM_PER_NODE"] == str(32 * 1024)
    assert job.get_info()["NodeList"] == inside["hostnames"][0]


def test_a_cancelled_job_is_reported_and_never_returns(fake_slurm, tmp_path):
    job = _executor(tmp_path).submit(time.sleep, 60)
    _wait_for(job.paths.stdout)
    job.cancel()
    assert _sacct_state(job).startswith("CANCELLED")
    with pytest.raises(UncompletedJobError, match="has not produced any output"):
        job.result()


def test_a_preempted_checkpointable_job_is_requeued_and_finishes(fake_slurm, tmp_path):
    started = tmp_path / "started"
    job = _executor(tmp_path).submit(_Preemptible(), str(started))
    _wait_for(started)
    job._interrupt()  # what Slurm does on preemption: SIGTERM, then submitit's USR2
    assert job.result() == 1
    assert "this job is preempted" in job.stderr()
    assert f"Requeued job {job.job_id}" in job.stdout()


def test_every_task_of_a_multi_task_job_gets_its_rank(fake_slurm, tmp_path):
    job = _executor(tmp_path, tasks_per_node=2).submit(_inside)
    results = job.results()
    assert [(r["global_rank"], r["local_rank"], r["num_tasks"]) for r in results] == [(0, 0, 2), (1, 1, 2)]


def test_the_fake_enforces_the_time_limit_and_its_warning_signal(fake_slurm, tmp_path):
    # no submitit here: its time limit is in whole minutes
    script = "trap 'echo warned' USR1; sleep 30 & wait; wait"
    out = tmp_path / "out.txt"
    submitted = subprocess.run(
        ["sbatch", "--parsable", "--time=0:02", "--signal=B:USR1@1", f"--output={out}", "--wrap", script],
        capture_output=True, text=True, check=True,
    )
    job_id = submitted.stdout.strip()
    end = time.time() + 20
    while True:
        sacct = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "State,Elapsed", "-j", job_id], capture_output=True, text=True
        ).stdout.split("|")
        if sacct[0] not in ("PENDING", "RUNNING") or time.time() > end:
            break
        time.sleep(0.1)
    assert sacct[0] == "TIMEOUT"
    assert out.read_text().splitlines()[0] == "warned"


def _final_state(job_id: str, timeout_s: float = 20.0) -> str:
    end = time.time() + timeout_s
    while True:
        state = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "State", "-j", job_id],
                               capture_output=True, text=True).stdout.strip()
        if state not in ("PENDING", "RUNNING", "") or time.time() > end:
            return state
        time.sleep(0.1)


def test_a_job_waits_for_its_log_folder_as_a_scheduled_one_would(fake_slurm, tmp_path, monkeypatch):
    """submitit names a job's log folder after sbatch prints the id; a real scheduler starts the
    job seconds later. The fake holds the task until the folder exists (a CI failure once: the
    task started first and could not open its log), and after FAKE_SLURM_FOLDER_WAIT seconds
    fails it as a node would."""
    def submit(folder: Path) -> str:
        return subprocess.run(["sbatch", "--parsable", f"--output={folder}/out.txt", "--wrap", "echo ran"],
                              capture_output=True, text=True, check=True).stdout.strip()

    late = tmp_path / "late"
    job_id = submit(late)
    time.sleep(0.5)
    assert _final_state(job_id, timeout_s=0) == "PENDING"  # no folder yet: not started
    late.mkdir()
    assert _final_state(job_id) == "COMPLETED" and (late / "out.txt").read_text() == "ran\n"

    monkeypatch.setenv("FAKE_SLURM_FOLDER_WAIT", "0.5")
    never = submit(tmp_path / "never")
    assert _final_state(never) == "FAILED"
