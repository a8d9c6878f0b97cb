"""How fast does the training grid run, and where does the time go?

    python benchmarks/train.py [--quick] [--json benchmarks/results/train.json]

Prints five Markdown tables from one run and writes them as JSON:

0. **Where the time goes**: torch.profiler's operators of fp32 training steps, by self time.
1. **Precision**: one training step of the A2E network (batch 8) on the same batches in fp32,
   bf16 and, on a GPU, fp16 (autocast; :mod:`midlevel_emotion.learning.precision`), at the embedded default's
   input (3 s = 94 frames) and the paper's (10 s = 313 frames); fastest of the repetitions,
   the modes alternated, and the ratio to fp32.
2. **Input pipeline**: one epoch's training pass as the loop runs it (cropping from the
   memory-mapped store, standardising, sending, stepping) against the same steps on the same
   batches already in memory; the validation scoring of an epoch is timed separately.
3. **Runs at once**: the grid's real code (:func:`midlevel_emotion.experiments.grid.run_grid`) training
   N runs one after another with all cores against N at once in worker processes
   (``grid.jobs: N``), in torch's own mode and in the reproducible mode; each setting in a
   fresh process.
4. **The paper's grid**: measured step and window times at the paper's input on this machine,
   times the paper profile's work at the real data sizes (360 Soundtracks clips, ~5000
   mid-level clips, 10 runs, 100 epochs, early stopping's typical end, and 199, the maximum).
   An extrapolation from measured parts, not a run of the whole grid.

Inputs are random spectrograms in a real store (the timing does not depend on the values).
On a GPU machine every part runs on the GPU (``torch.cuda`` present), so the same command
gives the GPU table. The defaults take about 10 minutes on 2 CPU cores; ``--quick`` about 3.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# Fixtures


def random_store(directory: Path, n_clips: int, frames: int, seed: int = 0) -> Path:
    """A spectrogram store (:mod:`midlevel_emotion.signal.store`'s layout) of random clips."""
    import numpy as np

    from midlevel_emotion.core.constants import N_BINS
    from midlevel_emotion.signal.store_writer import write_store_from_arrays

    rng = np.random.default_rng(seed)
    write_store_from_arrays({f"{i + 1:04d}": rng.standard_normal((frames, N_BINS), dtype=np.float32)
                             for i in range(n_clips)}, directory)
    return directory


def config_for(crop_seconds: float, **changes):
    """The A2E training config of params.yaml, at another crop length (and other changes)."""
    from midlevel_emotion.core.params import load_params
    from midlevel_emotion.learning.training import TrainConfig

    params = load_params(ROOT / "params.yaml")
    return dataclasses.replace(TrainConfig.from_params(params, "a2e"), crop_seconds=crop_seconds, **changes)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fastest(function, repeats: int, device) -> float:
    """Fastest of ``repeats`` timings of ``function()`` (the machine may be shared)."""
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        function()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


# ---------------------------------------------------------------------------------------
# 1. Precision


def bench_precision(device, steps: int, rounds: int) -> list[dict]:
    import numpy as np
    import torch

    from midlevel_emotion.learning import precision as amp
    from midlevel_emotion.learning.models import build_model
    from midlevel_emotion.learning.training import make_optimizer, train_step

    rows = []
    # fp16 on a CPU is refused (precision.check: torch emulates it, 310x as long as fp32)
    precisions = [p for p in amp.DTYPES if p != "fp16" or device.type == "cuda"]
    for label, crop_seconds in (("embedded (3 s, 94 frames)", 3.0), ("paper (10 s, 313 frames)", 10.0)):
        base = config_for(crop_seconds)
        rng = np.random.default_rng(0)
        batches = [(torch.from_numpy(rng.standard_normal((8, 1, base.crop_frames, 149), dtype=np.float32)).to(device),
                    torch.rand(8, 8, generator=torch.Generator().manual_seed(k)).to(device)) for k in range(steps)]
        best: dict[str, float] = {}
        for _ in range(rounds):
            for precision in precisions:
                torch.manual_seed(0)
                model = build_model("a2e", last_kernel_size=base.last_kernel_size, dropout=base.dropout).to(device)
                model.train()
                optimizer = make_optimizer(model, base.learning_rate)
                config = dataclasses.replace(base, precision=precision)
                scaler = amp.grad_scaler(precision, device)
                train_step("a2e", model, optimizer, scaler, *batches[0], config)  # warm-up (kernel choice)

                def run(batches=batches, model=model, optimizer=optimizer, scaler=scaler, config=config):
                    for x, y in batches:
                        train_step("a2e", model, optimizer, scaler, x, y, config)

                per_step = _fastest(run, 1, device) / len(batches)
                best[precision] = min(best.get(precision, math.inf), per_step)
        for precision, seconds in best.items():
            rows.append({"input": label, "precision": precision, "native": amp.native(precision, device),
                         "step_s": round(seconds, 4), "vs_fp32": round(seconds / best["fp32"], 3)})
    return rows


# ---------------------------------------------------------------------------------------
# 0. Where a training step's time goes (torch.profiler)


def bench_profile(device, steps: int) -> list[dict]:
    """Operators of ``steps`` fp32 training steps at the embedded default's input, by self time."""
    import numpy as np
    import torch
    from torch.profiler import ProfilerActivity, profile

    from midlevel_emotion.learning import precision as amp
    from midlevel_emotion.learning.models import build_model
    from midlevel_emotion.learning.training import make_optimizer, train_step

    config = config_for(3.0)
    torch.manual_seed(0)
    model = build_model("a2e", last_kernel_size=config.last_kernel_size, dropout=config.dropout).to(device).train()
    optimizer = make_optimizer(model, config.learning_rate)
    scaler = amp.grad_scaler("fp32", device)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((8, 1, config.crop_frames, 149),
                                                                  dtype=np.float32)).to(device)
    y = torch.rand(8, 8).to(device)
    train_step("a2e", model, optimizer, scaler, x, y, config)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            train_step("a2e", model, optimizer, scaler, x, y, config)
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0]
    total = sum(getattr(e, key) for e in events)
    top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:8]
    rows = [{"operator": e.key, "share": f"{getattr(e, key) / total:.1%}",
             "ms_per_step": round(getattr(e, key) / 1000 / steps, 1)} for e in top]
    rest = total - sum(getattr(e, key) for e in top)
    rows.append({"operator": "(everything else)", "share": f"{rest / total:.1%}", "ms_per_step": round(rest / 1000 / steps, 1)})
    return rows


# ---------------------------------------------------------------------------------------
# 2. Input pipeline


def bench_pipeline(device, store_dir: Path, n_train: int, n_validation: int, rounds: int) -> dict:

    import numpy as np
    import torch

    from midlevel_emotion.learning import precision as amp
    from midlevel_emotion.learning.models import build_model
    from midlevel_emotion.signal.store import SpectrogramStore
    from midlevel_emotion.learning.inference import predict
    from midlevel_emotion.learning.clips import ClipSet
    from midlevel_emotion.learning.training import inference_model, make_optimizer, train_step, training_batches

    config = config_for(3.0)
    store = SpectrogramStore.open(store_dir)
    ids = store.clip_ids[:n_train + n_validation]
    targets = np.random.default_rng(0).uniform(size=(len(ids), 8)).astype(np.float32)
    train_set = ClipSet(ids[:n_train], [store.clip(i) for i in ids[:n_train]], targets[:n_train])
    validation = [store.clip(i) for i in ids[n_train:]]

    def batches(seed: int):
        rng = np.random.default_rng(seed)
        order = rng.permutation(n_train)
        return training_batches(train_set, order, rng, crop_frames=config.crop_frames, batch_size=config.batch_size,
                                mean=store.mean, std=store.std, device=device)

    def fresh():
        torch.manual_seed(0)
        model = build_model("a2e", last_kernel_size=config.last_kernel_size, dropout=config.dropout).to(device)
        model.train()
        return model, make_optimizer(model, config.learning_rate), amp.grad_scaler("fp32", device)

    times = {"epoch": math.inf, "compute": math.inf, "validation": math.inf}
    for _ in range(rounds):
        model, optimizer, scaler = fresh()
        train_step("a2e", model, optimizer, scaler, *next(iter(batches(1))), config)  # warm-up
        losses = []

        def epoch():
            for x, y in batches(0):  # crop, standardise and send, as the training loop does
                losses.append(train_step("a2e", model, optimizer, scaler, x, y, config))
            torch.stack(losses).cpu()  # the loop's one sync per epoch

        times["epoch"] = min(times["epoch"], _fastest(epoch, 1, device))
        model, optimizer, scaler = fresh()
        train_step("a2e", model, optimizer, scaler, *next(iter(batches(1))), config)
        ready = list(batches(0))  # the same batches, already on the device

        def compute():
            kept = [train_step("a2e", model, optimizer, scaler, x, y, config) for x, y in ready]
            torch.stack(kept).cpu()

        times["compute"] = min(times["compute"], _fastest(compute, 1, device))

        def validation_scoring():  # what an epoch adds: precise BN on a copy, then every window
            scored = inference_model(model, train_set, config, mean=store.mean, std=store.std, device=device)
            predict(scored, validation, mean=store.mean, std=store.std, crop_frames=config.crop_frames,
                    hop_frames=config.hop_frames, device=device)

        times["validation"] = min(times["validation"], _fastest(validation_scoring, 1, device))
    steps = math.ceil(n_train / config.batch_size)
    return {"train_clips": n_train, "validation_clips": n_validation, "steps": steps,
            "epoch_s": round(times["epoch"], 3), "compute_s": round(times["compute"], 3),
            "epoch_over_compute": round(times["epoch"] / times["compute"], 3),
            "validation_s": round(times["validation"], 3),
            "validation_share_of_epoch": round(times["validation"] / (times["epoch"] + times["validation"]), 3)}


# ---------------------------------------------------------------------------------------
# 3. Runs at once (each setting in a fresh process: the kernel choice is made at torch's first op)


def concurrency_worker(spec: dict) -> dict:
    from midlevel_emotion.core.determinism import configure_cpu

    configure_cpu(spec["reproducible"])  # before torch loads
    import numpy as np

    from midlevel_emotion.experiments.grid import GridSettings, run_grid
    from midlevel_emotion.experiments.run import RunTask
    from midlevel_emotion.signal.store import SpectrogramStore

    store = SpectrogramStore.open(spec["store"])
    config = config_for(3.0, max_epochs=spec["epochs"], patience=spec["epochs"])
    n_train, n_val, n_test = spec["clips"]
    ids = store.clip_ids[:n_train + n_val + n_test]
    targets = np.random.default_rng(0).uniform(size=(len(ids), 8))
    part = {"train": slice(0, n_train), "validation": slice(n_train, n_train + n_val),
            "test": slice(n_train + n_val, None)}
    tasks = [RunTask(kind="a2e", name=f"a2e_seed_{seed}", model="a2e", seed=seed, store=Path(spec["store"]),
                     split={k: tuple(ids[s]) for k, s in part.items()}, targets={k: targets[s] for k, s in part.items()},
                     names=("valence", "energy", "tension", "anger", "fear", "happy", "sad", "tender"),
                     song_ids=None, config=config, checkpoint=Path(spec["out"]) / f"seed_{seed}.pt",
                     checkpoint_meta={"spectrogram": {"mean": 0.0, "std": 1.0}, "corpus": "benchmark",
                                      "params_digest": "benchmark"})
             for seed in range(spec["runs"])]
    settings = GridSettings("local", spec["jobs"], spec["reproducible"], None)
    start = time.perf_counter()
    run_grid(tasks, settings, desc="runs", progress=False)
    return {"seconds": time.perf_counter() - start}


def bench_concurrency(store_dir: Path, runs: int, epochs: int, clips: tuple[int, int, int]) -> list[dict]:
    from midlevel_emotion.core.parallel import resolve_jobs

    rows = []
    cores = resolve_jobs(0)
    for reproducible in (False, True):
        seconds = {}
        for jobs in (1, runs):
            with tempfile.TemporaryDirectory() as out:
                spec = {"reproducible": reproducible, "jobs": jobs, "store": str(store_dir), "out": out,
                        "runs": runs, "epochs": epochs, "clips": list(clips)}
                done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                                      text=True, check=True)
                seconds[jobs] = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        threads = 2 if reproducible else max(1, cores // runs)
        rows.append({"mode": "reproducible" if reproducible else "torch defaults", "runs": runs,
                     "one_after_another_s": round(seconds[1], 2), "at_once_s": round(seconds[runs], 2),
                     "threads_per_run_at_once": threads, "cores": cores,
                     "throughput_ratio": round(seconds[1] / seconds[runs], 3)})
    return rows


# ---------------------------------------------------------------------------------------
# 4. The paper's grid at the real sizes, from measured parts


#: The paper profile's models at the real data sizes (README "Expected run time"): training
#: clips per run, validation clips scored per epoch, and how many such runs.
PAPER_GRID = (
    ("A2Mid+", 4600, 350, 1),
    ("A2Mid behind A2Mid2E", 4300, 330, 1),
    ("A2Mid (Soundtracks)", 245, 43, 1),
    ("A2E", 245, 43, 10),
    ("Joint", 245, 43, 10),
)
WINDOWS_PER_CLIP = 2  # 15 s clips, 10 s windows at a 5 s hop


def bench_grid(device, precision_rows: list[dict], repeats: int) -> dict:
    import numpy as np
    import torch

    from midlevel_emotion.learning.models import build_model

    config = config_for(10.0)
    model = build_model("a2e", last_kernel_size=config.last_kernel_size, dropout=config.dropout).to(device).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((32, 1, config.crop_frames, 149),
                                                                  dtype=np.float32)).to(device)
    with torch.no_grad():
        model(x)
        window_s = _fastest(lambda: model(x), repeats, device) / len(x)
    steps = {r["precision"]: r["step_s"] for r in precision_rows if r["input"].startswith("paper")}
    rows, totals = [], {}
    for precision in ("fp32", "bf16"):
        for name, n_train, n_val, n_runs in PAPER_GRID:
            epoch_s = math.ceil(n_train / 8) * steps[precision] + n_val * WINDOWS_PER_CLIP * window_s
            totals.setdefault(precision, 0.0)
            totals[precision] += epoch_s * n_runs
            if precision == "fp32":
                rows.append({"model": name, "runs": n_runs, "train_clips": n_train, "epoch_s_fp32": round(epoch_s, 1)})
    return {"window_s": round(window_s, 5), "step_s": steps, "models": rows,
            "grid_hours": {p: {"100_epochs": round(t * 100 / 3600, 1), "199_epochs": round(t * 199 / 3600, 1)}
                           for p, t in totals.items()}}


# ---------------------------------------------------------------------------------------


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from midlevel_emotion.core.parallel import resolve_jobs

    return {"cpu": cpu, "cores": resolve_jobs(0), "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    return "\n".join(["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] +
                     ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, clips and rounds (about 3 minutes)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "train.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(concurrency_worker(json.loads(args.worker))))
        return 0
    from midlevel_emotion.core.determinism import configure_cpu

    configure_cpu(False)  # torch's own kernels: bf16 needs them (the reproducible mode refuses it)
    import torch

    from midlevel_emotion.core.parallel import resolve_jobs
    from midlevel_emotion.learning.training import default_device

    device = default_device()
    quick = args.quick
    result = {"machine": machine()}
    print(f"machine: {result['machine']}\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = random_store(Path(tmp) / "store", n_clips=160, frames=469)  # 15 s clips, like the corpus

        result["profile"] = bench_profile(device, steps=3 if quick else 6)
        print("## 0. Where an fp32 training step's time goes (torch.profiler, embedded input)\n\n"
              + table(result["profile"]) + "\n", flush=True)

        result["precision"] = bench_precision(device, steps=4 if quick else 8, rounds=1 if quick else 2)
        print("## 1. One training step (A2E, batch 8), same batches\n\n" + table(result["precision"]) + "\n", flush=True)

        result["pipeline"] = bench_pipeline(device, store, n_train=64 if quick else 128, n_validation=32,
                                            rounds=2 if quick else 3)
        print("## 2. An epoch's training pass against its compute alone (embedded default, fp32)\n\n"
              + table([result["pipeline"]]) + "\n", flush=True)

        runs = max(2, resolve_jobs(0)) if device.type == "cpu" else 4
        result["concurrency"] = bench_concurrency(store, runs=runs, epochs=1 if quick else 2,
                                                  clips=(48, 16, 16) if quick else (96, 32, 32))
        print(f"## 3. {runs} runs one after another against {runs} at once (grid.jobs)\n\n"
              + table(result["concurrency"]) + "\n", flush=True)

    result["grid"] = bench_grid(device, result["precision"], repeats=2 if quick else 4)
    print("## 4. The paper's grid at the real sizes, from measured steps and windows\n\n"
          + table(result["grid"]["models"]) + "\n\n"
          + table([{"precision": p, **h} for p, h in result["grid"]["grid_hours"].items()]) + "\n")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    from midlevel_emotion.core.fileio import write_json

    write_json(out, result)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
