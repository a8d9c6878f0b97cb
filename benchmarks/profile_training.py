"""Where a training stage's time goes: one run of the embedded default under cProfile, by phase.

    python benchmarks/profile_training.py [--kind a2e|joint] [--raw data/raw] [--spectrograms data/spectrograms]

Needs the data stages' outputs (``bash scripts/repro.sh spectrogram``). Trains seed 0 of the
``train_<kind>`` stage with params.yaml's values (the reproducible mode as it says; one run,
in this process) into a temporary folder, through the stage's own function
(``protocol.train_emotion_runs``), and prints each phase's share of the run's wall time:
the optimisation steps, the windowed predictions (validation every epoch, the bias recentring
and the test clips), the precise-BN re-estimations, the output-layer start, loading the
batches, and saving the checkpoint. Phases nest (precise BN runs inside the validation's
set-up), so the shares do not add up to 100 %.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "stages"))

from _common import configure_cpu_from_params  # noqa: E402  (numpy's pins on import)

PHASES = {
    "train_step": "optimisation steps (forward, backward, Adam)",
    "predict": "windowed predictions: validation each epoch, bias recentring, test clips",
    "recalibrate_batchnorm": "precise-BN re-estimation",
    "init_output_layers": "output-layer start (train_mean)",
    "training_batches": "cropping, standardising and sending batches",
    "save_checkpoint": "saving the checkpoint",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("a2e", "joint"), default="a2e")
    parser.add_argument("--raw", default=str(ROOT / "data" / "raw"))
    parser.add_argument("--spectrograms", default=str(ROOT / "data" / "spectrograms"))
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = parser.parse_args(argv)
    sys.argv[1:] = ["--params", args.params]
    configure_cpu_from_params()  # train.reproducible, before numpy and torch load

    from midlevel_emotion.core.params import load_params
    from midlevel_emotion.experiments.protocol import Context, train_emotion_runs

    params = load_params(args.params).changed({"runs.seeds": [0],
                                               "grid.jobs": 1})  # in this process, where the profiler sees it
    ctx = Context.load(Path(args.raw), Path(args.spectrograms), params, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.runcall(train_emotion_runs, ctx, args.kind, out / "models", out / "results", out / "metrics.json",
                        out / "plots")
        total = time.perf_counter() - started
    stats = pstats.Stats(profile).stats  # (file, line, function) -> (calls, ..., cumulative time, ...)
    print(f"One {args.kind} run (seed 0), {total:.1f} s in all\n")
    print("| phase | seconds | share |\n|---|---:|---:|")
    for function, label in PHASES.items():
        seconds = sum(entry[3] for key, entry in stats.items() if key[2] == function)
        print(f"| {label} (`{function}`) | {seconds:.2f} | {seconds / total:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
