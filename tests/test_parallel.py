"""parallel.map_tasks: the one process pool of the project."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from midlevel_emotion.core.parallel import map_tasks, resolve_jobs


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("task 3 is bad")
    return x


def test_results_come_back_in_task_order_with_and_without_workers():
    tasks = list(range(37))
    expected = [math.sqrt(t) for t in tasks]
    assert map_tasks(math.sqrt, tasks, jobs=1, progress=False) == expected
    assert map_tasks(math.sqrt, tasks, jobs=2, progress=False, max_chunk=3) == expected
    assert map_tasks(math.sqrt, [], jobs=2, progress=False) == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failing_task_raises_its_own_error(jobs):
    with pytest.raises(ValueError, match="task 3 is bad"):
        map_tasks(_fail_on_three, list(range(8)), jobs=jobs, progress=False, max_chunk=1)


def test_jobs_rule():
    assert resolve_jobs(3) == 3 and resolve_jobs(0) >= 1
    with pytest.raises(ValueError, match="jobs must be"):
        resolve_jobs(-1)


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_pool_workers_die_when_the_stage_process_is_killed(tmp_path):
    code = ("import time\nfrom midlevel_emotion.core.parallel import map_tasks\n"
            "map_tasks(time.sleep, [20, 20], jobs=2, progress=False)\n")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while len(_descendants(parent.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)  # the fork server and two workers
        workers = _descendants(parent.pid)
        assert len(workers) >= 3, "the pool did not start"
    finally:
        parent.kill()  # SIGKILL: no clean-up code of the parent runs
        parent.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _is_running(pid)}
        time.sleep(0.1)
    for pid in alive:  # do not leave them behind for the rest of the session
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers {sorted(alive)} outlived their killed parent"


def _is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
