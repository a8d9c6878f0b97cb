"""Params and training configs for tests: params.yaml's, with a few values changed."""

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from midlevel_emotion.core.config import Params
from midlevel_emotion.core.params import load_params
from midlevel_emotion.learning.training import TrainConfig

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def params_with(changes: dict[str, Any] | None = None) -> Params:
    """params.yaml read as the stages read it, with ``{"runs.seeds": [0]}`` changes (checked too)."""
    return load_params(PARAMS).changed(changes or {})


def train_config(**changes) -> TrainConfig:
    """The embedded default's config for a Joint model (so it has a loss weight), with ``changes``."""
    return replace(TrainConfig.from_params(load_params(PARAMS), "joint"), **changes)


def write_params(path: Path, changes: dict[str, Any] | None = None) -> Path:
    """params.yaml with ``{"train.max_epochs": value}`` changes written to ``path`` (stages read
    whole files: every key is required)."""
    params = yaml.safe_load(PARAMS.read_text())
    for dotted, value in (changes or {}).items():
        *parents, last = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(params))
    return path
