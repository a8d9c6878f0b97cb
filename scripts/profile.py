"""Apply a profile (profiles/<name>.yaml: the keys that differ from params.yaml).

    python scripts/profile.py paper                 # edit params.yaml in place (comments kept)
    python scripts/profile.py paper --exp-run-args  # print `dvc exp run` -S arguments instead

`git checkout params.yaml` returns to the embedded default.
"""

import argparse
import shlex
import sys
from pathlib import Path

from midlevel_emotion.core.errors import ParamsError
from midlevel_emotion.core.profiles import apply_profile, profile_path, set_arguments


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", help="a name in profiles/ (paper, soundtracks-only) or a .yaml path")
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--exp-run-args", action="store_true",
                        help="print the -S arguments for `dvc exp run` and change nothing")
    args = parser.parse_args()
    try:
        path = profile_path(args.profile)
        if args.exp_run_args:
            print(shlex.join(set_arguments(path, args.params)))
            return 0
        changed = apply_profile(path, args.params)
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, (old, new) in changed.items():
        print(f"{key}: {old!r} -> {new!r}")
    print(f"{args.params}: {len(changed)} value(s) changed by {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
