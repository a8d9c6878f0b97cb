"""How long does a newcomer wait? The README's two commands on a fresh clone, stage by stage.

    python benchmarks/first_result.py [--rev HEAD] [--json benchmarks/results/first_result.json]
                                      [--skip-tests] [--skip-repro] [--python /usr/bin/python3]

Clones ``--rev`` of this repository into a temporary folder (a fresh clone: no .venv, no
outputs) and times, each as the whole process a user starts:

1. ``bash scripts/repro.sh`` with no ``.venv``: the venv build (``scripts/venv.sh``), then
   every stage of ``dvc repro`` on the embedded default. The stages' times come from the
   lines DVC prints (``Running stage 'X'``), stamped as they arrive; the venv build is the
   time before the first stage; DVC's own start-up and lock bookkeeping the rest.
2. ``bash scripts/test.sh`` in the same clone (the venv now built), as CI runs it
   (``.ci/run``), with pytest's ``--durations`` so the slowest tests are listed.

It then runs ``midlevel-emotion check`` on the fresh run (the embedded expectations) and
``dvc metrics diff <rev>`` against the committed numbers, and writes everything, with the
CPU model and core count, as JSON. One run: the README quotes its numbers and names the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from midlevel_emotion.core.fileio import write_json

ROOT = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def cpuinfo(field: str) -> str:
    """The first ``field`` line of /proc/cpuinfo (``platform.processor()`` is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def clean_env(python: str) -> dict[str, str]:
    """The environment a newcomer's shell has: no active venv, this project's variables unset."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MIDLEVEL_EMOTION_ENV", "PYTHONPATH")}
    env["PYTHON"] = python
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def timed_lines(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, int, list[tuple[float, str]]]:
    """Run ``cmd``; return its wall time, exit status and every output line stamped on arrival."""
    started = time.perf_counter()
    stamped: list[tuple[float, str]] = []
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc, open(log, "w") as out:
        assert proc.stdout is not None
        for line in proc.stdout:
            stamped.append((time.perf_counter() - started, line.rstrip("\n")))
            out.write(line)
        status = proc.wait()
    return time.perf_counter() - started, status, stamped


def stage_times(stamped: list[tuple[float, str]], total: float) -> tuple[float, dict[str, float]]:
    """Time before the first stage (the venv build and DVC's start), and each stage's time."""
    starts = [(t, m.group(1)) for t, line in stamped for m in [STAGE_LINE.search(line)] if m]
    if not starts:
        return total, {}
    stages = {name: round(end - t, 1) for (t, name), (end, _) in zip(starts, [*starts[1:], (total, "")])}
    return starts[0][0], stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="revision to clone (default: HEAD)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "first_result.json"))
    parser.add_argument("--python", default="/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3",
                        help="the Python the venv is made with (default: the system's, as a newcomer's)")
    parser.add_argument("--skip-repro", action="store_true")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args(argv)

    rev = subprocess.run(["git", "rev-parse", args.rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="first-result-"))
    clone = work / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=clone, check=True)
    env = clean_env(args.python)
    version = subprocess.run([args.python, "--version"], capture_output=True, text=True).stdout.strip()
    report: dict = {"rev": rev, "cpu": cpuinfo("model name") or platform.processor() or "unknown",
                    "cores": os.cpu_count(), "avx512": "avx512f" in cpuinfo("flags").split(), "python": version,
                    "clone": str(clone)}
    status = 0
    if not args.skip_repro:
        total, code, stamped = timed_lines(["bash", "scripts/repro.sh"], clone, env, work / "repro.log")
        before, stages = stage_times(stamped, total)
        report["repro"] = {"seconds": round(total, 1), "exit": code, "venv_and_start_seconds": round(before, 1),
                           "stages_seconds": stages}
        print(f"repro.sh: {total:.0f} s (exit {code}); before the first stage {before:.0f} s; "
              + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()), flush=True)
        status |= code
        if code == 0:
            bin_dir = clone / ".venv" / "bin"
            check = subprocess.run([str(bin_dir / "midlevel-emotion"), "check"], cwd=clone, env=env,
                                   capture_output=True, text=True)
            diff = subprocess.run([str(bin_dir / "dvc"), "metrics", "diff", "--json", rev], cwd=clone, env=env,
                                  capture_output=True, text=True)
            changed = json.loads(diff.stdout or "{}") if diff.returncode == 0 else None
            report["check_exit"] = check.returncode
            report["metrics_diff_rows"] = (None if changed is None
                                           else sum(len(rows) for rows in changed.values()))
            print(f"check: exit {check.returncode}; dvc metrics diff {rev[:7]}: "
                  f"{report['metrics_diff_rows']} changed rows", flush=True)
    if not args.skip_tests:
        total, code, stamped = timed_lines(["bash", "scripts/test.sh", "-q", "--durations=15"], clone,
                                           {**env, "CI": "true"}, work / "tests.log")
        summary = next((line for _, line in reversed(stamped) if " passed" in line or " failed" in line), "")
        report["tests"] = {"seconds": round(total, 1), "exit": code, "summary": summary.strip("= ")}
        print(f"test.sh: {total:.0f} s (exit {code}): {summary.strip('= ')}", flush=True)
        status |= code
    write_json(args.json, report)
    print(f"written {args.json}; logs in {work}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
