"""How long does ``midlevel-emotion explain`` take on a whole song?

Target (from the issue): a 3-minute song explained in under 5 s on 2 CPU cores, model
loading included. This script

1. generates a 3-minute stereo 44.1 kHz song (chords, a bass line and a beat) as mp3 and wav,
2. uses the pipeline's Joint checkpoint (``models/joint/joint_seed_0.pt``) when it exists, or
   else saves an untrained Joint network with the paper's 10 s window (same size and compute;
   the weights do not change the timing),
3. times the whole CLI process (``midlevel-emotion explain SONG``: interpreter start, imports,
   model loading, decoding, spectrogram, all windows, output) and the in-process calls,
4. prints a table (best and median of ``--repeats`` runs).

Usage::

    python benchmarks/explain_song.py [--seconds 180] [--repeats 3] [--checkpoint PATH] [--hop S]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100
TARGET_SECONDS = 5.0


def make_song(seconds: float, seed: int = 0) -> np.ndarray:
    """A song-like stereo signal: a four-chord loop, a bass line and a kick/hat beat at 120 bpm."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    chords = [(261.63, 329.63, 392.00), (220.00, 261.63, 329.63), (174.61, 220.00, 261.63), (196.00, 246.94, 293.66)]
    bar = 2.0  # seconds per chord (one bar at 120 bpm)
    index = (t // bar).astype(int) % len(chords)
    song = np.zeros(n)
    for k, chord in enumerate(chords):
        mask = index == k
        tone = sum(np.sin(2 * np.pi * f * t[mask]) + 0.3 * np.sin(4 * np.pi * f * t[mask]) for f in chord)
        song[mask] += 0.15 * tone + 0.25 * np.sin(2 * np.pi * chord[0] / 2 * t[mask])
    beat = 0.5  # seconds
    phase = t % beat
    song += 0.6 * np.sin(2 * np.pi * 60 * phase) * np.exp(-phase * 30)  # kick
    hat = (t + beat / 2) % beat
    song += 0.05 * rng.standard_normal(n) * np.exp(-hat * 80)  # hi-hat
    song /= np.max(np.abs(song)) * 1.1
    left, right = song, np.roll(song, 200) * 0.9
    return np.stack([left, right], axis=1).astype(np.float32)


def bench_checkpoint(requested: str | None, workdir: Path) -> tuple[Path, str]:
    from midlevel_emotion.explanation.network import DEFAULT_CHECKPOINT

    if requested:
        return Path(requested), "given"
    if Path(DEFAULT_CHECKPOINT).is_file():
        return Path(DEFAULT_CHECKPOINT), "pipeline's"
    from midlevel_emotion.core.constants import SpectrogramSettings
    from midlevel_emotion.learning.models import build_model
    from midlevel_emotion.core.params import load_params
    from midlevel_emotion.learning.checkpoints import save_checkpoint
    from midlevel_emotion.learning.training import TrainConfig

    path = workdir / "joint_untrained.pt"
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml").changed({
        "train.crop_seconds": 10.0,  # the paper's window (params.yaml's is shorter)
        "train.eval_hop_seconds": 5.0,  # and the paper profile's hop, which the CLI's windows follow
        "train.width": 1.0})  # and the paper's trunk, which build_model gives by default
    save_checkpoint(path, build_model("joint").eval(), kind="joint", config=TrainConfig.from_params(params, "joint"),
                    spectrogram={**SpectrogramSettings().as_dict(), "mean": 0.3, "std": 0.4}, corpus="synthetic",
                    seed=0, params_digest="benchmark", test_pearson={})
    return path, "untrained, paper config"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_process(argv: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds (user + system) of a whole process, per repeat."""
    walls, cpus = [], []
    for _ in range(repeats):
        cpu, start = _children_cpu(), time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - cpu)
        if done.returncode != 0:
            raise SystemExit(f"command failed ({done.returncode}): {' '.join(argv)}\n{done.stderr}")
    return walls, cpus


def time_call(fn, repeats: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(repeats):
        cpu, start = _self_cpu(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(_self_cpu() - cpu)
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180.0, help="song length (default 180 = 3 minutes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", default=None, help="default: the pipeline's Joint checkpoint if present")
    parser.add_argument("--hop", type=float, default=None, help="window hop in seconds (default: checkpoint's)")
    args = parser.parse_args()

    exe = Path(sys.executable).parent / "midlevel-emotion"
    if not exe.exists():
        exe = Path(shutil.which("midlevel-emotion") or "midlevel-emotion")

    with tempfile.TemporaryDirectory(prefix="explain_song_") as tmp:
        workdir = Path(tmp)
        checkpoint, origin = bench_checkpoint(args.checkpoint, workdir)
        song = make_song(args.seconds)
        files = {fmt: workdir / f"song.{fmt}" for fmt in ("mp3", "wav")}
        for path in files.values():
            sf.write(path, song, SR)

        from midlevel_emotion.explanation.network import load_model
        from midlevel_emotion.explanation.song import explain

        hop = [] if args.hop is None else ["--hop", str(args.hop)]
        load_before = os.getloadavg()[0]
        rows: list[tuple[str, tuple[list[float], list[float]], bool]] = []
        for fmt, path in files.items():
            rows.append((f"CLI process, {fmt}, table output", time_process(
                [str(exe), "explain", str(path), "--checkpoint", str(checkpoint), *hop], args.repeats), True))
        rows.append(("CLI process, mp3, --json", time_process(
            [str(exe), "explain", str(files["mp3"]), "--checkpoint", str(checkpoint), "--json", *hop],
            args.repeats), True))
        rows.append(("CLI process, --version (start-up only)", time_process([str(exe), "--version"], args.repeats),
                     False))
        rows.append(("CLI process, import torch + package", time_process(
            [sys.executable, "-c", "import midlevel_emotion.explanation.song"], args.repeats), False))
        rows.append(("in-process load_model", time_call(lambda: load_model(checkpoint), args.repeats), False))
        model = load_model(checkpoint)
        exp = explain(files["mp3"], model, hop_seconds=args.hop)
        for fmt, path in files.items():
            rows.append((f"in-process explain({fmt}), model loaded", time_call(
                lambda p=path: explain(p, model, hop_seconds=args.hop), args.repeats), False))

    import torch

    print(f"song: {args.seconds:.0f} s stereo {SR} Hz; checkpoint: {checkpoint} ({origin}); "
          f"window {exp.window_seconds:.2f} s, hop {exp.hop_seconds:.2f} s, {len(exp.times)} windows")
    load_after = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cores} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"{args.repeats} repeats; load average {load_before:.2f} before, {load_after:.2f} after")
    if max(load_before, load_after) > 0.5:
        print("note: other processes were running; wall-clock times are inflated (CPU times are not, much)")
    print()
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measurement'.ljust(width)}  {'best [s]':>8}  {'median [s]':>10}  {'CPU [s]':>8}  "
          f"target < {TARGET_SECONDS:.0f} s")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 10}  {'-' * 8}  {'-' * 14}")
    failed = False
    for name, (walls, cpus), judged in rows:
        verdict = ""
        if judged:
            ok = min(walls) < TARGET_SECONDS
            failed |= not ok
            verdict = "ok" if ok else "TOO SLOW"
        print(f"{name.ljust(width)}  {min(walls):8.2f}  {statistics.median(walls):10.2f}  "
              f"{statistics.median(cpus):8.2f}  {verdict}")
    print()
    print("best = fastest repeat (least disturbed by other processes; judged against the target); "
          "CPU = user + system seconds of all threads (median)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
