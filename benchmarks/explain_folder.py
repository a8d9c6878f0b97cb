"""Explaining a folder: each file on its own against windows of several files per forward pass.

    python benchmarks/explain_folder.py [--clips 20] [--seconds 15] [--repeats 3] [--runs 3]

Writes ``--clips`` song-like 44.1 kHz stereo mp3 clips (``explain_song.make_song``, one seed
each) into a temporary directory and saves two untrained Joint checkpoints, one with the
paper's 10 s window (2 windows per 15 s clip) and one with the embedded default's 3 s window
(9 windows), each with an evaluation hop of half its window (the paper profile's 5 s for 10 s),
which the CLI's windows follow by default; the weights do not change the timing.
With the model loaded, in this one process, it times:

* per file: ``song.explain(f, model)`` for every file, what the CLI did before
  (each call sets the network up again and runs only that file's windows);
* set-up shared, one file per pass: ``explain_many`` with ``batch_size`` equal to a clip's
  window count, so each forward pass still holds one file's windows (separates the two gains);
* batched across files: ``explain_many`` with its default of 16 windows per pass (the CLI's
  path), and with 32;
* an ensemble (``--runs`` checkpoints, the CLI's default of every Joint run): ``explain_many``
  with all runs, each file decoded once and each batch through every run's network, against
  explaining the folder once per run (decoding every file again each time);
* decoding alone (decode, resample; what a worker pool could take over): one after the other
  in this process against ``parallel.map_tasks`` with a fresh pool of 2 workers, start-up
  included, as a CLI run would pay it.

Modes take turns within each repeat, so a busy machine slows them alike; the table shows
the best repeat (wall clock, and CPU time of all threads), clips/s and the ratio to per file
(above 1: faster). The load average before the run is printed: other processes on the
machine inflate every row. Prints Markdown for the README.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from explain_song import SR, make_song  # noqa: E402


def save_checkpoint(path: Path, crop_seconds: float, seed: int = 0) -> Path:
    """An untrained Joint checkpoint with the embedded default's params, this window and an
    evaluation hop of half of it (what the CLI's windows follow by default)."""
    from midlevel_emotion.learning.checkpoints import save_checkpoint as save
    from midlevel_emotion.core.constants import SpectrogramSettings
    from midlevel_emotion.learning.models import build_model
    from midlevel_emotion.core.params import load_params
    from midlevel_emotion.learning.training import TrainConfig

    import torch

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    config = TrainConfig.from_params(params.changed({"train.crop_seconds": crop_seconds,
                                                            "train.eval_hop_seconds": crop_seconds / 2}), "joint")
    torch.manual_seed(seed)
    save(path, build_model("joint", width=config.width).eval(), kind="joint", config=config,
         spectrogram={**SpectrogramSettings().as_dict(), "mean": 0.3, "std": 0.4}, corpus="synthetic", seed=seed,
         params_digest="benchmark", test_pearson={})
    return path


def best_of(modes: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """Best wall-clock and CPU seconds (this process, all threads) per mode; the modes take turns
    within each repeat."""
    best = {name: (float("inf"), float("inf")) for name in modes}
    for _ in range(repeats):
        for name, run in modes.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=15.0, help="clip length (default 15, as the corpora's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="checkpoints in the ensemble (default 3, as embedded)")
    args = parser.parse_args()

    import torch

    from midlevel_emotion.signal import audio
    from midlevel_emotion.explanation.network import load_model
    from midlevel_emotion.explanation.song import explain
    from midlevel_emotion.explanation.batch import Timings, explain_many
    from midlevel_emotion.core.parallel import map_tasks

    load_before = os.getloadavg()[0]
    rows: list[tuple[str, str, tuple[float, float], float]] = []  # window, mode, (wall, CPU), per-file wall
    shares: list[str] = []
    with tempfile.TemporaryDirectory(prefix="explain_folder_") as tmp:
        work = Path(tmp)
        files = [work / f"clip_{i:03d}.mp3" for i in range(args.clips)]
        for i, path in enumerate(files):
            sf.write(path, make_song(args.seconds, seed=i), SR)
        for window, crop_seconds in (("paper, 10 s", 10.0), ("embedded, 3 s", 3.0)):
            model = load_model(save_checkpoint(work / f"joint_{crop_seconds:g}s.pt", crop_seconds))
            ensemble = [load_model(save_checkpoint(work / f"joint_{crop_seconds:g}s_seed_{s}.pt",
                                                               crop_seconds, seed=s)) for s in range(args.runs)]
            first = explain(files[0], model)  # warm: librosa's kernels, torch's primitives
            per_clip = len(first.times)
            timings = Timings()
            modes: dict[str, Callable[[], object]] = {
                "per file (former CLI)": lambda: [explain(f, model) for f in files],
                f"set-up shared, one file per pass ({per_clip} windows)":
                    lambda: list(explain_many(files, model, batch_size=per_clip)),
                "batched across files, 16 windows per pass (CLI)":
                    lambda: list(explain_many(files, model, timings=timings)),
                "batched across files, 32 windows per pass": lambda: list(explain_many(files, model, batch_size=32)),
                f"ensemble of {args.runs} runs, each file decoded once (CLI default)":
                    lambda: list(explain_many(files, ensemble)),
                f"{args.runs} runs one after another, each decoding every file":
                    lambda: [list(explain_many(files, run)) for run in ensemble],
            }
            best = best_of(modes, args.repeats)
            reference = best["per file (former CLI)"][0]
            rows += [(f"{window} ({per_clip} windows per clip)", name, seconds, reference)
                     for name, seconds in best.items()]
            total = timings.decode_seconds + timings.model_seconds
            shares.append(f"{window}: in the CLI's mode over {args.repeats} runs, decode {timings.decode_seconds:.1f} s"
                          f" and model {timings.model_seconds:.1f} s ({100 * timings.decode_seconds / total:.0f} % / "
                          f"{100 * timings.model_seconds / total:.0f} %)")

        decode = best_of({
            "sequential": lambda: [audio.load(f) for f in files],
            "map_tasks": lambda: map_tasks(audio.load, files, jobs=2, progress=False),
        }, args.repeats)
    load_after = os.getloadavg()[0]

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.clips} clips of {args.seconds:g} s, mp3 44.1 kHz stereo; hop half the window; "
          f"best of {args.repeats}")
    print(f"machine: {cores} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"load average {load_before:.2f} before, {load_after:.2f} after (this run's own threads included)")
    if load_before > 0.5:
        print("note: other processes were running; wall-clock times are inflated")
    print()
    print("| window | mode | s per clip | CPU s per clip | clips/s | vs per file |")
    print("|---|---|---:|---:|---:|---:|")
    for window, name, (seconds, cpu), reference in rows:
        print(f"| {window} | {name} | {seconds / args.clips:.3f} | {cpu / args.clips:.3f} | "
              f"{args.clips / seconds:.1f} | {reference / seconds:.2f}× |")
    print()
    for line in shares:
        print(line)
    print()
    print("| decoding + resampling only | s per clip | clips/s | vs sequential |")
    print("|---|---:|---:|---:|")
    for name, (seconds, _) in decode.items():
        label = "one after the other" if name == "sequential" else "`map_tasks`, fresh pool of 2 workers"
        print(f"| {label} | {seconds / args.clips:.3f} | {args.clips / seconds:.1f} | "
              f"{decode['sequential'][0] / seconds:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
