"""DVC stage `download`: the raw datasets in their published layout.

    python stages/download.py --out data/raw --params params.yaml

`data.source` in params.yaml picks where they come from: `synthetic` (the embedded default,
generated offline), `download` (the published archives) or `local` (directories you have).
"""

import argparse
import sys

from midlevel_emotion.corpus import CorpusError
from midlevel_emotion.download import prepare_raw
from midlevel_emotion.params import ParamsError, load_params, section


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    source = section(params, "data.source")
    try:
        present = prepare_raw(source, args.out, params)
    except (CorpusError, ParamsError, OSError, RuntimeError, ValueError) as err:
        print(f"error: download ({source}): {err}", file=sys.stderr)
        return 1
    found = ", ".join(name for name, ok in present.items() if ok)
    print(f"download: {source} corpus in {args.out} ({found})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
