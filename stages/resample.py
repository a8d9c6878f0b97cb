"""DVC stage `resample`: decode, downmix, resample to 22050 Hz, peak-normalise.

    python stages/resample.py --raw data/raw --out data/resampled --params params.yaml

Every file that failed, decoded short of its stated length, or made the decoder print
messages is listed in `<out>/report.json` and gets one line on stderr.
"""

import argparse
import math
import sys

from _common import run

from midlevel_emotion.signal.resample_stage import resample_corpus
from midlevel_emotion.core.errors import TooManyFailuresError
from midlevel_emotion.core.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    settings = params.spectrogram_settings()
    # the spectrogram stage needs at least one hop (sample_rate / fps samples) of every clip
    min_samples = math.ceil(settings.hop_length)
    try:
        report = resample_corpus(args.raw, args.out, sample_rate=settings.sample_rate, min_samples=min_samples,
                                 jobs=params.resample.jobs,
                                 max_failed_fraction=params.resample.max_failed_fraction)
    except TooManyFailuresError as err:
        print_details(err.report)
        raise
    print_details(report)
    print(f"resample: {report['n_files'] - report['n_failed']} of {report['n_files']} files ok "
          f"-> {args.out} (details in {args.out}/report.json)")


def print_details(report: dict) -> None:
    """One line on stderr per file the report lists: decoder messages, truncated, failed."""
    datasets = [r for r in report["datasets"].values() if r != "absent"]
    for entry in (e for r in datasets for e in r["decoder_messages"]):
        print(f"note: {entry['path']}: {entry['summary']}", file=sys.stderr)
    for entry in (e for r in datasets for e in r["truncated"]):
        print(f"warning: {entry['path']}: decoded {entry['decoded_seconds']:.1f} s of a file whose header "
              f"says {entry['stated_seconds']:.1f} s; kept as decoded", file=sys.stderr)
    for entry in (e for r in datasets for e in r["failed"]):
        print(f"warning: skipped {entry['path']}: {entry['reason']}", file=sys.stderr)


if __name__ == "__main__":
    run(main, "resample")
