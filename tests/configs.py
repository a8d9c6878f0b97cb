"""Training configs for tests: params.yaml's training params with a few fields changed."""

from dataclasses import replace
from pathlib import Path

from midlevel_emotion.params import load_params
from midlevel_emotion.training import TrainConfig

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def train_config(**changes) -> TrainConfig:
    """The embedded default's config for a Joint model (so it has a loss weight), with ``changes``."""
    return replace(TrainConfig.from_params(load_params(PARAMS), "joint"), **changes)
