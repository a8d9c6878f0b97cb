"""Where machine-to-machine differences come from, and what the reproducible mode costs.

    python benchmarks/reproducibility.py [--clips 8] [--steps 6] [--rounds 2]

Part 1 trains the same seeded Joint model (``fingerprint.probe``: one epoch of
``training.train`` on random clips, so a batch of 8 and a smaller last batch) in a fresh
subprocess per setting, because the kernel choice is fixed at torch's first operation. Each
setting changes one knob an other machine would change: the ISA of ATen's kernels
(``ATEN_CPU_CAPABILITY``), of oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``), of MKL's gemm
(``MKL_ENABLE_INSTRUCTIONS``, ``MKL_CBWR``), of numpy's OpenBLAS (``OPENBLAS_CORETYPE``),
oneDNN on or off, and the thread count. "AVX2 machine" sets all ISA knobs to AVX2 and one
thread: what an AVX2-only CPU picks. The table gives each run's sha256 of the final state dict
and the largest absolute weight difference from the reference run.

Part 2 times training steps of the embedded default's model (Joint, 3 s crops = 94 frames x
149 bins, batch 8) in normal mode (torch's defaults; also as an AVX2-only CPU would run it) and
in the reproducible mode, alternating
the modes over ``--rounds`` rounds (the machine may be shared) and keeping each mode's fastest
step: wall time and process CPU time per step, and the wall-time ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from midlevel_emotion.core.determinism import configure_cpu

AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "OPENBLAS_CORETYPE": "Haswell"}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# (label, reproducible mode, threads given to configure_cpu, environment, oneDNN on)
SETTINGS: list[tuple[str, bool, int | None, dict[str, str], bool]] = [
    ("torch defaults (reference)", False, None, {}, True),
    ("torch defaults, again", False, None, {}, True),
    ("1 thread", False, 1, {}, True),
    ("ATEN_CPU_CAPABILITY=avx2", False, None, {"ATEN_CPU_CAPABILITY": "avx2"}, True),
    ("ATEN_CPU_CAPABILITY=default", False, None, {"ATEN_CPU_CAPABILITY": "default"}, True),
    ("ONEDNN_MAX_CPU_ISA=AVX512_CORE", False, None, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, True),
    ("ONEDNN_MAX_CPU_ISA=AVX2", False, None, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, True),
    ("MKL_ENABLE_INSTRUCTIONS=AVX2", False, None, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, True),
    ("MKL_CBWR=COMPATIBLE", False, None, {"MKL_CBWR": "COMPATIBLE"}, True),
    ("OPENBLAS_CORETYPE=Haswell", False, None, {"OPENBLAS_CORETYPE": "Haswell"}, True),
    ("oneDNN off (torch.backends.mkldnn)", False, None, {}, False),
    ("AVX2 machine, 1 thread", False, 1, AVX2_MACHINE, True),
    ("reproducible mode (reference)", True, None, {}, True),
    ("reproducible, env asks 1 thread", True, None, ONE_THREAD, True),
    ("reproducible, AVX2 machine, env asks 1 thread", True, None, {**AVX2_MACHINE, **ONE_THREAD}, True),
    ("reproducible kernels, 1 thread", True, 1, {}, True),
]
_KNOBS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "OPENBLAS_CORETYPE",
          "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_DYNAMIC", "MKL_DYNAMIC")


def _worker(spec: dict) -> dict:
    """Runs in the subprocess: pin (or not) first, then import torch and train or time."""
    configure_cpu(spec["reproducible"], spec["threads"])
    import torch

    torch.backends.mkldnn.enabled = spec.get("mkldnn", True)
    if spec["task"] == "probe":
        from midlevel_emotion.experiments.fingerprint import probe

        result = probe(clips=spec["clips"])
        torch.save(result.pop("state"), spec["save"])
        return result
    return _time_steps(spec["steps"])


def _time_steps(steps: int) -> dict:
    """Fastest step's wall and CPU seconds: one Adam step of the Joint model on 8 x 94 x 149 inputs.

    The fastest, not the median: on a shared machine a 2-thread step whose second thread waits
    for a busy core can take several times longer, and that says nothing about the kernels.
    """
    import numpy as np
    import torch

    from midlevel_emotion.learning.models import build_model
    from midlevel_emotion.learning.training import make_optimizer

    torch.manual_seed(0)
    model = build_model("joint")
    optimizer = make_optimizer(model, 5e-4)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((8, 1, 94, 149)).astype(np.float32))
    target = torch.zeros(8, 15)
    wall, cpu = [], []
    for _ in range(steps + 1):  # the first step builds the kernels: not counted
        w0, c0 = time.perf_counter(), time.process_time()
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(torch.cat(model(x), dim=1), target).backward()
        optimizer.step()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    fastest = 1 + int(np.argmin(wall[1:]))
    return {"wall_s": wall[fastest], "cpu_s": cpu[fastest],
            "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _run(spec: dict, env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in _KNOBS}  # only this setting's knobs
    completed = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env={**clean, **env},
                               capture_output=True, text=True, check=False)
    if completed.returncode:
        raise RuntimeError(f"worker {spec} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def knob_table(clips: int) -> list[str]:
    """Part 1: one probe run per setting; Markdown rows."""
    import torch

    rows = ["| setting | kernels (ATen) | threads | sha256 | max abs diff vs reference | identical |",
            "| --- | --- | --- | --- | --- | --- |"]
    print("\n".join(rows), flush=True)
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, reproducible, threads, env, mkldnn) in enumerate(SETTINGS):
            save = str(Path(tmp) / f"{i}.pt")
            result = _run({"task": "probe", "reproducible": reproducible, "threads": threads, "mkldnn": mkldnn,
                           "clips": clips, "save": save}, env)
            state = torch.load(save)
            if "(reference)" in label:
                reference = (state, result["sha256"])
            diff = max(float((state[k].double() - reference[0][k].double()).abs().max()) for k in state)
            same = "yes" if result["sha256"] == reference[1] else "no"
            rows.append(f"| {label} | {result['cpu_capability']} | {result['threads']} | "
                        f"`{result['sha256'][:12]}` | {diff:.2g} | {same} |")
            print(rows[-1], flush=True)
    return rows


def cost_table(steps: int, rounds: int) -> list[str]:
    """Part 2: time per training step, normal against reproducible mode; Markdown rows."""
    modes = {"normal (torch defaults)": (False, None, {}), "reproducible mode": (True, None, {}),
             "reproducible kernels, 1 thread": (True, 1, {}),
             "normal on an AVX2 machine (simulated)": (False, None, AVX2_MACHINE)}
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for name, (reproducible, threads, env) in modes.items():
            timing = _run({"task": "time", "reproducible": reproducible, "threads": threads, "steps": steps}, env)
            if name not in best or timing["wall_s"] < best[name]["wall_s"]:
                best[name] = timing
    normal = best["normal (torch defaults)"]
    rows = ["| mode | kernels (ATen) | threads | wall s/step | CPU s/step | wall ratio |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, t in best.items():
        rows.append(f"| {name} | {t['cpu_capability']} | {t['threads']} | {t['wall_s']:.3f} | {t['cpu_s']:.3f} | "
                    f"{t['wall_s'] / normal['wall_s']:.2f} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16,
                        help="random clips of the probe (3/4 train: batches of 8 and 4)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (fastest step kept)")
    parser.add_argument("--skip-knobs", action="store_true", help="only time the modes")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.1f}, "
          f"Python {platform.python_version()}\n")
    if not args.skip_knobs:
        knob_table(args.clips)  # prints its rows as they come
        print()
    print("\n".join(cost_table(args.steps, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
