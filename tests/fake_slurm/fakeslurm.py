"""A fake one-node Slurm for the tests: sbatch, srun, sacct, squeue, scancel, scontrol.

Why: the training grid goes to Slurm through submitit's Slurm executor, and CI has no
Slurm. With this folder first on PATH (the ``fake_slurm`` fixture in tests/conftest.py
does it), submitit's real Slurm code path runs end to end on the local machine, the way
a cluster of one node would run it:

- ``sbatch`` reads the #SBATCH lines (the command line wins over them), logs the script
  as received, prints the job id ("Submitted batch job N", or "N" with --parsable) and
  starts a detached runner, the node's slurmstepd, which runs the script with a batch
  job's SLURM_* environment (one run per task of an --array, at most %N at a time);
  its stdout/stderr go to --output/--error (%j %A %a %x %N %u %% and friends expanded).
- ``srun`` (inside such a job) starts the job's tasks with SLURM_PROCID, SLURM_LOCALID,
  SLURM_NODEID, SLURM_STEP_ID, ... and its own --output/--error (%t is the task rank);
  it forwards the signals it gets to the tasks and exits with the tasks' worst code.
- ``sacct`` reports PENDING/RUNNING/COMPLETED/FAILED/CANCELLED by UID/TIMEOUT rows (with
  "N.batch" step rows unless -X) for --format/-o fields, --parsable2, --noheader.
- ``squeue`` lists the jobs that are pending or running.
- ``scancel`` cancels (SIGTERM to every process of the job, SIGKILL after
  $FAKE_SLURM_KILL_WAIT s), or with --signal sends a signal to the job steps (srun
  forwards it to the tasks), to the batch shell (--batch) or to both (--full).
- ``scontrol requeue`` ends a running job the same way and queues it again
  (SLURM_RESTART_COUNT goes up): submitit's preemption / checkpoint path.
- --time is enforced (TIMEOUT), and so is --signal=[B:]SIG@SECONDS before it.

What it does not do: schedule (a job starts as soon as its log folder exists: a real
scheduler takes seconds, in which a submitter such as submitit, which can name the folder only
once sbatch has printed the id, creates it; after $FAKE_SLURM_FOLDER_WAIT s the task starts
anyway and fails to open its log, as on a node), run on more than
one node (--nodes > 1 is refused, as a cluster without such nodes would), or check and
enforce resources: --partition, --cpus-per-task, --mem, --gpus-per-node... are logged,
shown by sacct/squeue and exported as SLURM_* variables, nothing more. Options that
change when a job runs (--dependency, --begin, --hold, --wait, ...) are refused
rather than ignored.

State, in $FAKE_SLURM_DIR (default: $TMPDIR/fake-slurm-UID):
    submitted/<job id>.sh   each script exactly as sbatch received it
    jobs/<job id>.json      what sbatch parsed (options, environment, ...)
    state.json              the job records (read and written under state.lock)
    runner-<job id>.log     what the detached runner itself printed (its errors)
Settings: FAKE_SLURM_KILL_WAIT (seconds from SIGTERM to SIGKILL, default 2),
FAKE_SLURM_FOLDER_WAIT (seconds a task waits for its log folder, default 30),
FAKE_SLURM_NODENAME (the node's name, default: this host's name).

Standard library only, so that any python3 on PATH runs it (not only the project's venv).
"""

import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

FINISHED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
NO_ARRAY = "4294967294"  # what Slurm puts for %a outside of arrays


class UsageError(Exception):
    pass


# --- state ---------------------------------------------------------------------------


def state_dir() -> Path:
    default = Path(os.environ.get("TMPDIR", "/tmp")) / f"fake-slurm-{os.getuid()}"
    path = Path(os.environ.get("FAKE_SLURM_DIR") or default).absolute()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def locked_state():
    """The job records, under an exclusive lock; written back if the block succeeds."""
    folder = state_dir()
    with open(folder / "state.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / "state.json"
        before = path.read_text() if path.exists() else ""
        state = json.loads(before) if before else {"next_id": 1000, "jobs": {}}
        yield state
        after = json.dumps(state, indent=1)
        if after != before:
            tmp = folder / "state.json.tmp"
            tmp.write_text(after)
            os.replace(tmp, path)


def node_name() -> str:
    return os.environ.get("FAKE_SLURM_NODENAME") or socket.gethostname().split(".")[0]


def user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def select(jobs: dict, ids) -> list:
    """Keys of the records that job ids ("N", "N_i", or an array task's own id) name."""
    keys = []
    for jid in ids:
        keys += [k for k, r in jobs.items() if jid in (k, r["job_id"], r["array_job_id"])]
    return sorted(set(keys), key=lambda k: (int(jobs[k]["job_id"]), k))


# --- parsing -------------------------------------------------------------------------


def parse_options(argv, short: dict, flags: set, repeat=frozenset()):
    """getopt-like: (options by long name, the arguments left from the first operand on).

    ``short`` maps short letters to long names; long names in ``flags`` take no value;
    every other option takes one (--name=value, --name value, -xvalue or -x value).
    Options in ``repeat`` collect their values in a list.
    """
    opts: dict = {}

    def put(name, value):
        if name in repeat:
            opts.setdefault(name, []).append(value)
        else:
            opts[name] = value

    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return opts, argv[i + 1 :]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if not eq:
                if name in flags:
                    value = True
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    raise UsageError(f"option '--{name}' requires an argument")
            put(name, value)
        elif arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                name = short.get(arg[j])
                if name is None:
                    raise UsageError(f"invalid option -- '{arg[j]}'")
                if name in flags:
                    put(name, True)
                    j += 1
                    continue
                value = arg[j + 1 :]
                if not value:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"option requires an argument -- '{arg[j]}'")
                    value = argv[i]
                put(name, value)
                break
        else:
            return opts, argv[i:]
        i += 1
    return opts, []


def directives(script: str) -> list:
    """The options of the #SBATCH lines, which end at the first command of the script."""
    args = []
    for line in script.splitlines()[1:]:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        if re.match(r"#SBATCH\s", stripped):
            words = shlex.split(stripped[len("#SBATCH") :])
            for k, word in enumerate(words):
                if word.startswith("#"):
                    words = words[:k]
                    break
            args += words
    return args


def parse_time(value) -> "float | None":
    """Seconds of a Slurm time limit (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S); None: none."""
    text = str(value).strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "-1", "0"):
        return None
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if match is None:
        raise UsageError("Invalid --time specification")
    days, a, b, c = match.groups()
    if days is not None:
        return int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    if c is not None:
        return int(a) * 3600 + int(b) * 60 + int(c)
    if b is not None:
        return int(a) * 60 + int(b)
    return int(a) * 60


def parse_signal(value) -> "tuple[int, float, bool]":
    """--signal=[{R|B}:]SIG[@SECONDS] as (signal number, seconds before the limit, batch only)."""
    text = str(value)
    batch = False
    if re.match(r"[RB]+:", text):
        prefix, text = text.split(":", 1)
        batch = "B" in prefix
    name, _, delay = text.partition("@")
    return signal_number(name), float(delay or 60), batch


def signal_number(name) -> int:
    text = str(name).upper()
    if text.isdigit():
        return int(text)
    sig = getattr(signal, text if text.startswith("SIG") else "SIG" + text, None)
    if not isinstance(sig, signal.Signals):
        raise UsageError(f"Invalid signal: {name}")
    return int(sig)


def parse_array(value) -> "tuple[list, int | None]":
    """--array=0-9%2, 1,3,5-7, 0-10:2 as (task ids, at most that many at a time)."""
    text, _, limit = str(value).partition("%")
    ids = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if match is None:
            raise UsageError("Invalid job array specification")
        low, high, step = match.groups()
        ids += list(range(int(low), int(high or low) + 1, int(step or 1)))
    return sorted(set(ids)), int(limit) if limit else None


def expand(pattern: str, values: dict) -> str:
    """Slurm's filename pattern: %j, %4a (zero padded), %% ... from ``values``."""

    def sub(match):
        pad, letter = match.groups()
        if letter == "%":
            return "%"
        if letter not in values:
            return match.group(0)
        text = str(values[letter])
        return text.zfill(int(pad)) if pad else text

    return re.sub(r"%(\d*)([%A-Za-z])", sub, pattern)


# --- sbatch --------------------------------------------------------------------------

SBATCH_SHORT = {
    "A": "account", "a": "array", "C": "constraint", "c": "cpus-per-task", "D": "chdir",
    "d": "dependency", "e": "error", "G": "gpus", "H": "hold", "J": "job-name", "N": "nodes",
    "n": "ntasks", "o": "output", "p": "partition", "q": "qos", "Q": "quiet", "t": "time",
    "v": "verbose", "W": "wait", "w": "nodelist", "x": "exclude",
}
SBATCH_FLAGS = {
    "contiguous", "exclusive", "hold", "ignore-pbs", "no-requeue", "overcommit",
    "oversubscribe", "parsable", "quiet", "requeue", "spread-job", "test-only",
    "use-min-nodes", "verbose", "wait",
}
SBATCH_UNSUPPORTED = {"begin", "deadline", "dependency", "hold", "test-only", "wait", "clusters"}


def sbatch(argv) -> int:
    cli, rest = parse_options(argv, SBATCH_SHORT, SBATCH_FLAGS)
    if "wrap" in cli:
        script, script_args = f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{cli['wrap']}\n", rest
    elif rest:
        script, script_args = Path(rest[0]).read_text(), rest[1:]
    else:
        script, script_args = sys.stdin.read(), []
    if not script.startswith("#!"):
        raise UsageError(
            "This does not look like a batch script.  The first line must start with #! "
            "followed by the path to an interpreter."
        )
    opts, _ = parse_options(directives(script), SBATCH_SHORT, SBATCH_FLAGS)
    opts.update(cli)  # the command line wins over the script
    unsupported = sorted(SBATCH_UNSUPPORTED & set(opts))
    if unsupported:
        raise UsageError(f"--{unsupported[0]} is not supported by the fake Slurm (tests/fake_slurm)")
    if int(str(opts.get("nodes", 1)).split("-")[0]) > 1:
        raise UsageError(
            "Batch job submission failed: Requested node configuration is not available "
            "(the fake Slurm has one node)"
        )
    array, array_limit = parse_array(opts["array"]) if "array" in opts else (None, None)
    time_limit = parse_time(opts["time"]) if "time" in opts else None
    warn = parse_signal(opts["signal"]) if "signal" in opts else None
    per_node = opts.get("ntasks-per-node")
    ntasks = int(opts.get("ntasks") or per_node or 1)
    export = str(opts.get("export", "ALL"))
    if export.split(",")[0] != "ALL":
        raise UsageError("only --export=ALL[,NAME=VALUE...] is supported by the fake Slurm")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SLURMD_"))}
    env.update(item.split("=", 1) for item in export.split(",")[1:] if "=" in item)
    env["FAKE_SLURM_DIR"] = str(state_dir())
    workdir = Path(opts.get("chdir") or ".").absolute()
    default_out = "slurm-%A_%a.out" if array is not None else "slurm-%j.out"
    name = opts.get("job-name") or ("wrap" if "wrap" in cli else Path(rest[0]).name if rest else "sbatch")

    with locked_state() as state:
        job_id = state["next_id"]
        keys = [f"{job_id}_{a}" for a in array] if array is not None else [str(job_id)]
        state["next_id"] += len(keys)
        folder = state_dir()
        (folder / "submitted").mkdir(exist_ok=True)
        (folder / "jobs").mkdir(exist_ok=True)
        (folder / "submitted" / f"{job_id}.sh").write_text(script)
        copy = folder / "jobs" / f"{job_id}.sh"
        copy.write_text(script)
        copy.chmod(0o755)
        spec = {
            "job_id": job_id, "keys": keys, "argv": list(argv), "options": opts,
            "script": str(copy), "script_args": script_args, "workdir": str(workdir),
            "submit_dir": os.getcwd(), "env": env, "name": name, "ntasks": ntasks,
            "partition": opts.get("partition", "fake"), "time_limit": time_limit, "signal": warn,
            "array": array, "array_limit": array_limit, "output": opts.get("output", default_out),
            "error": opts.get("error"), "open_mode": opts.get("open-mode", "truncate"),
        }
        (folder / "jobs" / f"{job_id}.json").write_text(json.dumps(spec, indent=1))
        for k, key in enumerate(keys):
            state["jobs"][key] = {
                "job_id": str(job_id + k), "array_job_id": str(job_id) if array is not None else None,
                "array_task_id": array[k] if array is not None else None, "name": name,
                "partition": spec["partition"], "state": "PENDING", "exit_code": "0:0",
                "submit": time.time(), "start": None, "end": None, "node": None, "pid": None,
                "steps": [], "next_step": 0, "restarts": 0, "requeue": False,
                "cpus": ntasks * int(opts.get("cpus-per-task", 1)), "time_limit": time_limit,
            }
    with open(folder / f"runner-{job_id}.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, str(Path(__file__).absolute()), "--run", str(job_id)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
            env=dict(os.environ, FAKE_SLURM_DIR=str(folder)), start_new_session=True,
        )
    print(job_id if opts.get("parsable") else f"Submitted batch job {job_id}")
    return 0


# --- the runner (the node's slurmstepd) ----------------------------------------------


def batch_env(spec: dict, rec: dict) -> dict:
    opts, node, ntasks = spec["options"], rec["node"], spec["ntasks"]
    env = dict(spec["env"])
    env.update(
        SLURM_JOB_ID=rec["job_id"], SLURM_JOBID=rec["job_id"], SLURM_JOB_NAME=spec["name"],
        SLURM_JOB_PARTITION=spec["partition"], SLURM_JOB_NODELIST=node, SLURM_NODELIST=node,
        SLURM_JOB_NUM_NODES="1", SLURM_NNODES="1", SLURMD_NODENAME=node, SLURM_NODEID="0",
        SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NTASKS=str(ntasks), SLURM_NPROCS=str(ntasks),
        SLURM_TASKS_PER_NODE=str(ntasks), SLURM_CPUS_ON_NODE=str(rec["cpus"]),
        SLURM_JOB_CPUS_PER_NODE=str(rec["cpus"]), SLURM_SUBMIT_DIR=spec["submit_dir"],
        SLURM_SUBMIT_HOST=socket.gethostname(), SLURM_CLUSTER_NAME="fake",
        SLURM_JOB_USER=user_name(), SLURM_JOB_UID=str(os.getuid()), ENVIRONMENT="BATCH",
        SLURM_OPEN_MODE="a" if spec["open_mode"] == "append" else "t",
    )
    optional = {
        "SLURM_CPUS_PER_TASK": opts.get("cpus-per-task"),
        "SLURM_NTASKS_PER_NODE": opts.get("ntasks-per-node"),
        "SLURM_GPUS_PER_NODE": opts.get("gpus-per-node"),
        "SLURM_GPUS": opts.get("gpus"),
        "SLURM_MEM_PER_NODE": megabytes(opts["mem"]) if "mem" in opts else None,
        "SLURM_JOB_ACCOUNT": opts.get("account"),
        "SLURM_JOB_QOS": opts.get("qos"),
        "SLURM_RESTART_COUNT": str(rec["restarts"]) if rec["restarts"] else None,
    }
    env.update({k: str(v) for k, v in optional.items() if v is not None})
    if spec["array"] is not None:
        ids = spec["array"]
        env.update(
            SLURM_ARRAY_JOB_ID=rec["array_job_id"], SLURM_ARRAY_TASK_ID=str(rec["array_task_id"]),
            SLURM_ARRAY_TASK_COUNT=str(len(ids)), SLURM_ARRAY_TASK_MIN=str(min(ids)),
            SLURM_ARRAY_TASK_MAX=str(max(ids)),
        )
    return env


def megabytes(mem) -> str:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)B?", str(mem).upper())
    if match is None:
        return str(mem)
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[match.group(2)]
    return str(int(float(match.group(1)) * scale))


def pattern_values(spec: dict, rec: dict, **more) -> dict:
    array = spec["array"] is not None
    values = {
        "j": rec["job_id"], "A": rec["array_job_id"] if array else rec["job_id"],
        "a": rec["array_task_id"] if array else NO_ARRAY, "x": spec["name"],
        "u": user_name(), "N": rec["node"] or node_name(), "n": 0, "t": 0, "s": "batch",
    }
    values["J"] = f"{values['j']}.{values['s']}"
    values.update(more)
    return values


def signal_group(pgid, sig) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


class Task:
    def __init__(self, key, proc, start):
        self.key, self.proc, self.start = key, proc, start
        self.warned = False
        self.kill_at = None


def start_task(spec: dict, key: str):
    with locked_state() as state:
        rec = state["jobs"][key]
        if rec["state"] != "PENDING":  # cancelled while pending
            return None
        rec.update(state="RUNNING", start=time.time(), end=None, node=node_name(), steps=[])
        rec = dict(rec)
    workdir = Path(spec["workdir"])
    values = pattern_values(spec, rec)
    mode = "a" if spec["open_mode"] == "append" or rec["restarts"] else "w"
    try:
        out = open(workdir / expand(spec["output"], values), mode)
        err = open(workdir / expand(spec["error"], values), mode) if spec["error"] else subprocess.STDOUT
        proc = subprocess.Popen(
            [spec["script"], *spec["script_args"]], cwd=workdir, env=batch_env(spec, rec),
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )
    except OSError as error:  # what a node does when it cannot open the log or run the script
        print(f"job {key}: {error}", flush=True)
        with locked_state() as state:
            state["jobs"][key].update(state="FAILED", exit_code="1:0", end=time.time())
        return None
    with locked_state() as state:
        state["jobs"][key]["pid"] = proc.pid
    return Task(key, proc, rec["start"])


def supervise(task: Task, rec: dict, spec: dict, kill_wait: float) -> bool:
    """One look at a running task: signals, time limit, cancel and requeue; True once over."""
    now, pgid = time.time(), task.proc.pid
    batch_done = task.proc.poll() is not None
    if task.kill_at is not None and now < task.kill_at and signal_group(pgid, 0):
        return False  # ending: SIGTERM sent, SIGKILL at kill_at
    if not batch_done and task.kill_at is None:
        limit = spec["time_limit"]
        if rec["state"] == "RUNNING" and limit is not None and now >= task.start + limit:
            rec["state"] = "TIMEOUT"
        if rec["state"] != "RUNNING" or rec["requeue"]:  # cancelled, timed out, requeued
            signal_group(pgid, signal.SIGCONT)
            signal_group(pgid, signal.SIGTERM)
            task.kill_at = now + kill_wait
            return False
        if spec["signal"] and not task.warned and limit is not None:
            sig, before, batch_only = spec["signal"]
            if now >= task.start + limit - before:
                task.warned = True
                for pid in [pgid] if batch_only else rec["steps"]:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
        return False
    if not batch_done:
        task.proc.kill()
        task.proc.wait()
    signal_group(pgid, signal.SIGKILL)  # what the batch script left behind ends with it
    code = task.proc.returncode
    if rec["requeue"]:
        rec.update(state="PENDING", requeue=False, start=None, pid=None, steps=[])
        rec["restarts"] += 1
        return True
    if rec["state"] == "RUNNING":
        rec["state"] = "COMPLETED" if code == 0 else "FAILED"
    rec["exit_code"] = f"{code}:0" if code >= 0 else f"0:{-code}"
    rec["end"] = now
    return True


def run(job_id: str) -> int:
    spec = json.loads((state_dir() / "jobs" / f"{job_id}.json").read_text())
    try:
        supervise_all(spec)
    finally:  # a bug here must not leave jobs RUNNING forever (a test would wait on them)
        with locked_state() as state:
            for key in spec["keys"]:
                if state["jobs"][key]["state"] in ("PENDING", "RUNNING"):
                    state["jobs"][key].update(state="FAILED", exit_code="1:0", end=time.time())
    return 0


def logs_ready(spec: dict, key: str) -> bool:
    """Whether a pending task may start: its log folders exist, or it has waited long enough
    (the scheduling delay of a real cluster, in which the submitter creates them)."""
    with locked_state() as state:
        rec = dict(state["jobs"][key])
    if rec["state"] != "PENDING" or time.time() - rec["submit"] >= float(os.environ.get("FAKE_SLURM_FOLDER_WAIT", "30")):
        return True  # cancelled while pending (start_task drops it), or waited long enough
    values = pattern_values(spec, rec)
    logs = [spec["output"], *([spec["error"]] if spec["error"] else [])]
    return all((Path(spec["workdir"]) / expand(log, values)).parent.is_dir() for log in logs)


def supervise_all(spec: dict) -> None:
    kill_wait = float(os.environ.get("FAKE_SLURM_KILL_WAIT", "2"))
    queue, running = list(spec["keys"]), {}
    limit = spec["array_limit"] or len(queue)
    while queue or running:
        while queue and len(running) < limit and logs_ready(spec, queue[0]):
            key = queue.pop(0)
            task = start_task(spec, key)
            if task is not None:
                running[key] = task
        with locked_state() as state:
            for key, task in list(running.items()):
                rec = state["jobs"][key]
                if supervise(task, rec, spec, kill_wait):
                    del running[key]
                    if rec["state"] == "PENDING":  # requeued
                        queue.insert(0, key)
        time.sleep(0.05)


# --- srun ----------------------------------------------------------------------------

SRUN_SHORT = {
    "c": "cpus-per-task", "e": "error", "G": "gpus", "J": "job-name", "K": "kill-on-bad-exit",
    "k": "no-kill", "l": "label", "N": "nodes", "n": "ntasks", "o": "output", "O": "overcommit",
    "p": "partition", "Q": "quiet", "t": "time", "u": "unbuffered", "v": "verbose",
}
SRUN_FLAGS = {
    "exclusive", "kill-on-bad-exit", "label", "no-kill", "overcommit", "overlap", "quiet",
    "unbuffered", "verbose",
}


def srun(argv) -> int:
    key = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        key = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    with locked_state() as state:
        rec = state["jobs"].get(key or "")
        if rec is None or rec["state"] != "RUNNING":
            raise UsageError("the fake srun runs only inside a running job of the fake sbatch")
        step = rec["next_step"]
        rec["next_step"] += 1
        rec["steps"].append(os.getpid())
        rec = dict(rec)
    opts, command = parse_options(argv, SRUN_SHORT, SRUN_FLAGS)
    if not command:
        raise UsageError("No command given to execute.")
    if int(str(opts.get("nodes", 1)).split("-")[0]) > 1:
        raise UsageError("Unable to create step: the fake Slurm has one node")
    ntasks = int(opts.get("ntasks") or os.environ.get("SLURM_NTASKS") or 1)
    spec = json.loads((state_dir() / "jobs" / f"{key.split('_')[0]}.json").read_text())
    mode = "a" if os.environ.get("SLURM_OPEN_MODE") == "a" else "w"
    procs: list = []

    def forward(sig, _frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCONT,
                signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    try:
        for rank in range(ntasks):
            env = dict(
                os.environ, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NODEID="0",
                SLURM_STEP_ID=str(step), SLURM_STEPID=str(step), SLURM_NTASKS=str(ntasks),
                SLURM_NPROCS=str(ntasks), SLURM_STEP_NUM_TASKS=str(ntasks), SLURM_STEP_NUM_NODES="1",
                SLURM_STEP_NODELIST=rec["node"], SLURM_STEP_TASKS_PER_NODE=str(ntasks),
            )
            if "cpus-per-task" in opts:
                env["SLURM_CPUS_PER_TASK"] = str(opts["cpus-per-task"])
            values = pattern_values(spec, rec, t=rank, s=step)
            values["J"] = f"{values['j']}.{step}"
            out = open(expand(opts["output"], values), mode) if "output" in opts else None
            err = open(expand(opts["error"], values), mode) if "error" in opts else None
            if out is not None and err is None:
                err = subprocess.STDOUT
            try:
                procs.append(subprocess.Popen(command, env=env, stdout=out, stderr=err))
            except OSError as error:
                print(f"srun: error: execve(): {command[0]}: {error.strerror}", file=sys.stderr)
                forward(signal.SIGKILL, None)
                return 2
        codes = [proc.wait() for proc in procs]
    finally:
        with locked_state() as state:
            steps = state["jobs"][key]["steps"]
            if os.getpid() in steps:
                steps.remove(os.getpid())
    return max(code if code >= 0 else 128 - code for code in codes)


# --- sacct, squeue -------------------------------------------------------------------


def elapsed(rec: dict) -> str:
    if rec["start"] is None:
        return "00:00:00"
    seconds = int((rec["end"] or time.time()) - rec["start"])
    days, seconds = divmod(seconds, 86400)
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{days}-{text}" if days else text


def stamp(when) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when)) if when else "Unknown"


def limit_text(seconds) -> str:
    if seconds is None:
        return "UNLIMITED"
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{days}-{text}" if days else text


def shown_state(rec: dict) -> str:
    return f"CANCELLED by {os.getuid()}" if rec["state"] == "CANCELLED" else rec["state"]


def job_label(key: str) -> str:
    return key  # "N" or "N_i", as sacct and squeue show them


SACCT_FIELDS = {
    "jobid": lambda key, r: job_label(key),
    "jobidraw": lambda key, r: r["job_id"],
    "jobname": lambda key, r: r["name"],
    "partition": lambda key, r: r["partition"],
    "account": lambda key, r: "",
    "user": lambda key, r: user_name(),
    "state": lambda key, r: shown_state(r),
    "exitcode": lambda key, r: r["exit_code"],
    "nodelist": lambda key, r: r["node"] or "None assigned",
    "nnodes": lambda key, r: "1",
    "alloccpus": lambda key, r: str(r["cpus"]) if r["start"] else "0",
    "elapsed": lambda key, r: elapsed(r),
    "submit": lambda key, r: stamp(r["submit"]),
    "start": lambda key, r: stamp(r["start"]),
    "end": lambda key, r: stamp(r["end"]),
    "timelimit": lambda key, r: limit_text(r["time_limit"]),
}
SACCT_WIDTH = {"jobid": 12, "exitcode": 8, "nodelist": 15, "submit": 19, "start": 19, "end": 19}


def sacct(argv) -> int:
    short = {"j": "jobs", "o": "format", "P": "parsable2", "p": "parsable", "n": "noheader",
             "X": "allocations", "a": "allusers", "u": "user", "S": "starttime", "E": "endtime",
             "s": "state", "b": "brief", "D": "duplicates", "L": "allclusters"}
    flags = {"parsable2", "parsable", "noheader", "allocations", "allusers", "brief",
             "duplicates", "allclusters"}
    opts, rest = parse_options(argv, short, flags, repeat={"jobs"})
    if rest:
        raise UsageError(f"unrecognized argument {rest[0]}")
    if opts.get("brief"):
        fields = ["JobID", "State", "ExitCode"]
    else:
        fields = str(opts.get("format", "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"))
        fields = [f for f in fields.split(",") if f]
    names, widths = [], []
    for field in fields:
        name, _, width = field.partition("%")
        if name.lower() not in SACCT_FIELDS:
            raise UsageError(f"Invalid field requested: \"{name}\" (the fake sacct knows: "
                             f"{', '.join(SACCT_FIELDS)})")
        names.append(name)
        widths.append(int(width) if width else SACCT_WIDTH.get(name.lower(), 10))
    with locked_state() as state:
        jobs = state["jobs"]
    ids = [i for group in opts.get("jobs", []) for i in group.split(",") if i]
    keys = select(jobs, ids) if ids else select(jobs, list(jobs))
    if "state" in opts:
        wanted = {s.upper() for s in str(opts["state"]).split(",")}
        keys = [k for k in keys if jobs[k]["state"] in wanted or shown_state(jobs[k]) in wanted]
    rows = []
    for key in keys:
        rec = jobs[key]
        rows.append([SACCT_FIELDS[n.lower()](key, rec) for n in names])
        if rec["start"] is not None and not opts.get("allocations"):
            row = [SACCT_FIELDS[n.lower()](key, rec) for n in names]
            for k, name in enumerate(names):
                if name.lower() == "jobid":
                    row[k] = f"{key}.batch"
                elif name.lower() == "jobname":
                    row[k] = "batch"
                elif name.lower() == "state" and rec["state"] == "CANCELLED":
                    row[k] = "CANCELLED"
            rows.append(row)
    parsable = opts.get("parsable2") or opts.get("parsable")
    end = "|" if opts.get("parsable") and not opts.get("parsable2") else ""
    lines = [] if opts.get("noheader") else [names]
    if parsable:
        lines += rows
        print("\n".join("|".join(line) + end for line in lines))
    else:

        def cell(text, width):
            return text.rjust(width) if len(text) <= width else text[: width - 1] + "+"

        out = [" ".join(cell(t, w) for t, w in zip(line, widths)) for line in lines]
        if not opts.get("noheader"):
            out.insert(1, " ".join("-" * w for w in widths))
        out += [" ".join(cell(t, w) for t, w in zip(row, widths)) for row in rows]
        print("\n".join(out))
    return 0


SQUEUE_COLUMNS = {  # letter: (header, value)
    "i": ("JOBID", lambda key, r: job_label(key)),
    "A": ("ARRAY_JOB_ID", lambda key, r: r["array_job_id"] or r["job_id"]),
    "a": ("ARRAY_TASK_ID", lambda key, r: str(r["array_task_id"]) if r["array_job_id"] else "N/A"),
    "j": ("NAME", lambda key, r: r["name"]),
    "P": ("PARTITION", lambda key, r: r["partition"]),
    "u": ("USER", lambda key, r: user_name()),
    "t": ("ST", lambda key, r: {"PENDING": "PD", "RUNNING": "R"}.get(r["state"], "CG")),
    "T": ("STATE", lambda key, r: r["state"] if r["state"] in ("PENDING", "RUNNING") else "COMPLETING"),
    "M": ("TIME", lambda key, r: elapsed(r) if r["start"] else "0:00"),
    "l": ("TIME_LIMIT", lambda key, r: limit_text(r["time_limit"])),
    "D": ("NODES", lambda key, r: "1"),
    "C": ("CPUS", lambda key, r: str(r["cpus"])),
    "N": ("NODELIST", lambda key, r: r["node"] or ""),
    "R": ("NODELIST(REASON)", lambda key, r: r["node"] or "(None)"),
}


def squeue(argv) -> int:
    short = {"h": "noheader", "j": "jobs", "o": "format", "t": "states", "u": "user",
             "p": "partition", "a": "all", "l": "long"}
    opts, rest = parse_options(argv, short, {"noheader", "me", "all", "long"}, repeat={"jobs"})
    if rest:
        raise UsageError(f"unrecognized argument {rest[0]}")
    fmt = str(opts.get("format", "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"))
    with locked_state() as state:
        jobs = state["jobs"]
    ids = [i for group in opts.get("jobs", []) for i in group.split(",") if i]
    keys = select(jobs, ids) if ids else select(jobs, list(jobs))
    keys = [k for k in keys if jobs[k]["state"] in ("PENDING", "RUNNING") or
            (jobs[k]["state"] in FINISHED and jobs[k]["end"] is None)]
    if "states" in opts:
        wanted = {s.upper() for s in str(opts["states"]).split(",")}
        keys = [k for k in keys if jobs[k]["state"] in wanted or SQUEUE_COLUMNS["t"][1](k, jobs[k]) in wanted]
    if "partition" in opts:
        keys = [k for k in keys if jobs[k]["partition"] in str(opts["partition"]).split(",")]
    spec_re = re.compile(r"%(\.?)(-?)(\d*)([A-Za-z])")

    def line(value_of) -> str:
        def sub(match):
            right, left, width, letter = match.groups()
            text = value_of(letter)
            if width:
                text = text[: int(width)]
                text = text.ljust(int(width)) if left or not right else text.rjust(int(width))
            return text

        return spec_re.sub(sub, fmt).rstrip()

    def known(letter):
        if letter not in SQUEUE_COLUMNS:
            raise UsageError(f"the fake squeue does not know the format field %{letter}")
        return SQUEUE_COLUMNS[letter]

    out = [] if opts.get("noheader") else [line(lambda c: known(c)[0])]
    out += [line(lambda c, k=k: known(c)[1](k, jobs[k])) for k in keys]
    if out:
        print("\n".join(out))
    return 0


# --- scancel, scontrol ---------------------------------------------------------------


def scancel(argv) -> int:
    short = {"s": "signal", "b": "batch", "f": "full", "u": "user", "n": "name", "t": "state",
             "Q": "quiet", "v": "verbose", "i": "interactive"}
    flags = {"batch", "full", "me", "quiet", "verbose"}
    opts: dict = {}
    ids: list = []
    rest = list(argv)
    while rest:  # job ids and options come in any order (submitit: scancel ID --signal SIG)
        more, rest = parse_options(rest, short, flags)
        opts.update(more)
        if rest:
            ids.append(rest.pop(0))
    with locked_state() as state:
        jobs = state["jobs"]
        if ids:
            keys = select(jobs, ids)
            unknown = [i for i in ids if not select(jobs, [i])]
        elif opts.get("me") or "user" in opts or "name" in opts or "state" in opts:
            keys, unknown = select(jobs, list(jobs)), []
        else:
            raise UsageError("No job identification provided")
        if "name" in opts:
            keys = [k for k in keys if jobs[k]["name"] == opts["name"]]
        if "state" in opts:
            keys = [k for k in keys if jobs[k]["state"] == str(opts["state"]).upper()]
        keys = [k for k in keys if jobs[k]["state"] not in FINISHED]
        if "signal" in opts:
            sig = signal_number(opts["signal"])
            for key in keys:
                rec = jobs[key]
                if rec["state"] != "RUNNING" or rec["pid"] is None:
                    continue
                targets = [] if opts.get("batch") else list(rec["steps"])
                if opts.get("batch") or opts.get("full"):
                    targets.insert(0, rec["pid"])
                for pid in targets:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
        else:  # the runner sees CANCELLED and ends what runs
            for key in keys:
                jobs[key]["state"] = "CANCELLED"
                if jobs[key]["start"] is None:
                    jobs[key]["end"] = time.time()
    for jid in unknown:
        print(f"scancel: error: Invalid job id {jid}", file=sys.stderr)
    return 1 if unknown else 0


def scontrol(argv) -> int:
    if len(argv) != 2 or argv[0] != "requeue":
        raise UsageError("the fake scontrol knows only: scontrol requeue JOB_ID[,JOB_ID...]")
    # this usually runs inside the job being requeued, which is about to get SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ids = [i for i in argv[1].split(",") if i]
    with locked_state() as state:
        keys = select(state["jobs"], ids)
        for key in keys:
            if state["jobs"][key]["state"] != "RUNNING":
                raise UsageError(f"Requested operation is presently disabled for job {key}")
        for key in keys:
            state["jobs"][key]["requeue"] = True
    if not keys:
        raise UsageError(f"Invalid job id specified: {argv[1]}")
    return 0


COMMANDS = {"sbatch": sbatch, "srun": srun, "sacct": sacct, "squeue": squeue,
            "scancel": scancel, "scontrol": scontrol}


def main(command: str, argv) -> int:
    try:
        return COMMANDS[command](argv)
    except (UsageError, OSError) as error:
        print(f"{command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run"]:
        sys.exit(run(sys.argv[2]))
    sys.exit(main(Path(sys.argv[0]).name, sys.argv[1:]))
