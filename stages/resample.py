"""DVC stage `resample`: decode, downmix, resample to 22050 Hz, peak-normalise.

    python stages/resample.py --raw data/raw --out data/resampled --params params.yaml
"""

import argparse
import sys

from midlevel_emotion.audio import TooManyFailuresError, resample_corpus
from midlevel_emotion.params import load_params, section


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = section(load_params(args.params), "resample")
    try:
        report = resample_corpus(args.raw, args.out, sample_rate=params["sample_rate"],
                                 jobs=params["jobs"], max_failed_fraction=params["max_failed_fraction"])
    except (TooManyFailuresError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for failure in (f for r in report["datasets"].values() if r != "absent" for f in r["failed"]):
        print(f"warning: skipped {failure['path']}: {failure['reason']}", file=sys.stderr)
    print(f"resample: {report['n_files'] - report['n_failed']} of {report['n_files']} files ok "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
