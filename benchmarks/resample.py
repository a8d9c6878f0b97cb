"""Speed and numerics of the resample step: librosa (soxr_hq) against the former scipy path.

    python benchmarks/resample.py [--clips 20] [--seconds 15] [--repeats 3]

Writes ``--clips`` synthetic music-like clips as 44.1 kHz stereo mp3 files (like the published
audio) into a temporary directory, then times in this one run:

* per clip, warm: the former path (``soundfile`` decode, channel mean,
  ``scipy.signal.resample_poly`` with the exact rational ratio, peak normalisation; kept in
  ``_former_resample.py``) against :func:`midlevel_emotion.signal.audio.load` (``soundfile`` decode,
  ``librosa.to_mono``, ``librosa.resample(res_type="soxr_hq")``, peak normalisation), and the
  two resamplers alone on the decoded signals;
* what a fresh worker process pays before its first clip (imports, librosa's compiled
  kernels), and one fresh process decoding every clip (the stage with ``jobs: 1``);
* from those, the stage's wall time on the embedded corpus (440 clips) and the real one
  (5 360 clips): one pool for the stage, each worker pays the start once.

Per-clip timings are the best of ``--repeats`` passes (the machine may be shared); ratios are
librosa / scipy, so above 1 means librosa is slower. It also prints how far the two paths'
outputs lie apart. Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per path, as in a resample worker

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import _former_resample as former  # noqa: E402

from midlevel_emotion.signal import audio  # noqa: E402

ORIG_RATE = 44100
# (name, clips, workers) the estimates are made for: the embedded default on a 2-core laptop,
# the real datasets (5 000 mid-level clips + 360 Soundtracks) on 8 cores
CORPORA = (("embedded corpus, 2 workers", 440, 2), ("real corpus, 8 workers", 5360, 8))
# One fresh process decoding the clips named on its command line. Both first import the
# package modules a resample worker loads either way (data.layout names the audio folders), so
# the difference is the resampler's own.
WORKER_IMPORTS = "import sys, midlevel_emotion.data.layout, midlevel_emotion.core.fileio, midlevel_emotion.core.parallel\n"
PROCESS = {
    "scipy": WORKER_IMPORTS + "sys.path.insert(0, {bench!r}); import _former_resample as f\n"
                              "for p in sys.argv[1:]: f.load(p)",
    "librosa": WORKER_IMPORTS + "from midlevel_emotion.signal import audio\nfor p in sys.argv[1:]: audio.load(p)",
}


def make_clips(directory: Path, n_clips: int, seconds: float) -> list[Path]:
    """Chords with vibrato, a beat and some noise, as stereo mp3 files."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * ORIG_RATE)) / ORIG_RATE
    paths = []
    for i in range(n_clips):
        roots = 110 * 2 ** (rng.integers(0, 24, size=3) / 12)
        tone = sum(np.sin(2 * np.pi * f * (1 + 0.002 * np.sin(2 * np.pi * 5 * t)) * t * k) / k
                   for f in roots for k in (1, 2, 3))
        beat = (np.sin(2 * np.pi * 2 * t) > 0.95) * rng.normal(0, 1, len(t))
        left = tone + 0.5 * beat + 0.05 * rng.normal(0, 1, len(t))
        stereo = np.stack([left, np.roll(left, 200 + i)], axis=1)
        path = directory / f"{i:03d}.mp3"
        sf.write(path, (0.2 * stereo / np.abs(stereo).max()).astype(np.float32), ORIG_RATE, format="MP3")
        paths.append(path)
    return paths


def best_of_paired(runs: tuple[Callable[[], None], Callable[[], None]], repeats: int) -> tuple[float, float]:
    """Best wall time of each of two runs, taken in turns so that both meet the same machine load."""
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, run in enumerate(runs):
            start = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], best[1]


def per_item(functions: tuple[Callable, Callable], items: list, repeats: int) -> tuple[float, float]:
    """Best seconds per item of each function over ``items``."""
    runs = tuple((lambda f=f: [f(item) for item in items]) for f in functions)
    return tuple(t / len(items) for t in best_of_paired(runs, repeats))


def process_seconds(clips: list[Path], repeats: int) -> tuple[float, float]:
    """Each path's fresh-process wall time on ``clips``, minus a bare interpreter's start."""
    def command(code: str) -> Callable[[], None]:
        return lambda: subprocess.run([sys.executable, "-c", code, *map(str, clips)], check=True,
                                      env=os.environ.copy())

    codes = [PROCESS[path].format(bench=str(Path(__file__).parent)) for path in ("scipy", "librosa")]
    bare = min(best_of_paired((command("pass"), command("pass")), repeats))
    return tuple(t - bare for t in best_of_paired((command(codes[0]), command(codes[1])), repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp), args.clips, args.seconds)
        decoded = [sf.read(str(p), dtype="float32", always_2d=True)[0].mean(axis=1) for p in clips]
        former.load(clips[0]), audio.load(clips[0])  # first calls (imports, librosa's lazy modules)
        per_clip = per_item((former.load, audio.load), clips, args.repeats)
        first = process_seconds(clips[:1], args.repeats)
        rows = [
            ("decode + resample, per clip", *per_clip),
            ("resample only, per clip",
             *per_item((lambda x: former.resample(x, ORIG_RATE, audio.SAMPLE_RATE),
                        lambda x: audio.resample(x, ORIG_RATE, audio.SAMPLE_RATE)), decoded, args.repeats)),
            ("fresh worker: start + first clip", *first),
            (f"fresh process, all {args.clips} clips (measured)", *process_seconds(clips, args.repeats)),
        ]
        for name, n_clips, workers in CORPORA:  # each worker: its start, then its share of clips
            share = math.ceil(n_clips / workers) - 1
            rows.append((f"stage estimate: {name}", *(s + share * c for s, c in zip(first, per_clip))))
        old, new = [former.load(p) for p in clips], [audio.load(p) for p in clips]
    lengths_equal = all(len(a) == len(b) for a, b in zip(old, new))
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(old, new))
    rms_diff = float(np.sqrt(np.mean(np.concatenate([(a - b) ** 2 for a, b in zip(old, new)]))))
    print(f"{args.clips} clips of {args.seconds:g} s, 44.1 kHz stereo mp3 -> {audio.SAMPLE_RATE} Hz mono; "
          f"best of {args.repeats}\n")
    print("| step | scipy resample_poly (s) | librosa soxr_hq (s) | librosa / scipy |")
    print("|---|---:|---:|---:|")
    for name, scipy_s, librosa_s in rows:
        print(f"| {name} | {scipy_s:.4f} | {librosa_s:.4f} | {librosa_s / scipy_s:.2f} |")
    print(f"\noutputs (peak 1): same lengths: {lengths_equal}; largest sample difference {max_diff:.2e}, "
          f"RMS difference {rms_diff:.2e}")


if __name__ == "__main__":
    main()
