"""Argument parsing shared by the training stage scripts (paths in, params file)."""

import argparse
import sys
from pathlib import Path

from midlevel_emotion.determinism import configure_cpu
from midlevel_emotion.params import ParamsError, load_params, section


def parse(description: str, *outputs: str) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--spectrograms", default="data/spectrograms")
    parser.add_argument("--params", default="params.yaml")
    for name in outputs:
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    return args, load_params(args.params)


def configure_cpu_from_params() -> None:
    """Apply ``train.reproducible`` (``midlevel_emotion.determinism``) from the ``--params`` file.

    Stage scripts call this before importing anything that imports numpy or torch: the kernels
    and threads it pins are read when those libraries load.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--params", default="params.yaml")
    path = parser.parse_known_args()[0].params
    try:
        reproducible = section(load_params(path), "train.reproducible")
    except ParamsError as err:
        sys.exit(f"{Path(sys.argv[0]).stem}: error: {err}")
    if not isinstance(reproducible, bool):
        sys.exit(f"{Path(sys.argv[0]).stem}: error: {path}: train.reproducible must be true or false, "
                 f"got {reproducible!r}")
    configure_cpu(reproducible)
