"""Argument parsing shared by the training stage scripts (paths in, params file)."""

import argparse

from midlevel_emotion.params import load_params


def parse(description: str, *outputs: str) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--spectrograms", default="data/spectrograms")
    parser.add_argument("--params", default="params.yaml")
    for name in outputs:
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    return args, load_params(args.params)
