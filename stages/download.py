"""DVC stage `download`: the raw datasets in their published layout.

    python stages/download.py --out data/raw --params params.yaml

`data.source` in params.yaml picks where they come from: `synthetic` (the embedded default,
generated offline), `download` (the published archives) or `local` (directories you have).
"""

import argparse

from _common import run

from midlevel_emotion.data.download_stage import prepare_raw
from midlevel_emotion.core.params import load_params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    source = params.data.source
    present = prepare_raw(source, args.out, params)
    found = ", ".join(name for name, ok in present.items() if ok)
    print(f"download: {source} corpus in {args.out} ({found})")
    return 0


if __name__ == "__main__":
    run(main, "download")
