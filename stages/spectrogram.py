"""DVC stage `spectrogram`: log-filtered spectrograms, one memory-mappable store per dataset.

    python stages/spectrogram.py --resampled data/resampled --out data/spectrograms --params params.yaml
"""

import argparse

from _common import run

from midlevel_emotion.core.params import load_params
from midlevel_emotion.signal.spectrogram_stage import build_spectrogram_stores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resampled", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    stats = build_spectrogram_stores(
        args.resampled,
        args.out,
        params.spectrogram_settings(),
        jobs=params.spectrogram.jobs,
    )
    summary = "; ".join(
        f"{name} {s['n_clips']} clips, {s['n_frames']} frames x {s['n_bins']} bins "
        f"(mean {s['mean']:.4f}, std {s['std']:.4f})"
        for name, s in stats.items()
    )
    print(f"spectrogram: {summary} -> {args.out}")
    return 0


if __name__ == "__main__":
    run(main, "spectrogram")
