"""Reading ``params.yaml``: the only home of hyperparameters, checked against
:data:`midlevel_emotion.core.config.SCHEMA` as it is read."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .config import problems
from .constants import SpectrogramSettings
from .errors import ParamsError


def load_params(path: Path | str = "params.yaml") -> dict[str, Any]:
    """Load the whole params file as a nested dict, every key checked.

    Raises
    ------
    ParamsError
        One line naming the file: not found, not YAML, or every key that is missing, unknown
        or holds a value its rule (:data:`midlevel_emotion.core.config.SCHEMA`) refuses, and
        spectrogram settings that do not fit together (``fmax`` above Nyquist, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        with path.open() as handle:
            params = yaml.safe_load(handle) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    found = problems(flatten(params))
    if found:
        raise ParamsError(f"{path}: {'; '.join(found)}")
    params["_path"] = str(path)
    spectrogram_settings(params)  # the settings' own checks: fmin < fmax < Nyquist, ...
    return params


def section(params: dict[str, Any], dotted_key: str) -> Any:
    """Return ``params['a']['b']`` for ``dotted_key='a.b'``, with a clear error when absent."""
    value: Any = params
    for part in dotted_key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ParamsError(f"{params.get('_path', 'params.yaml')}: missing key '{dotted_key}'")
        value = value[part]
    return value


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"max_epochs": 199}}`` -> ``{"train.max_epochs": 199}``.

    The dotted keys of :func:`section`, of ``dvc exp run -S`` and of the headline metrics;
    lists and empty mappings are values.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def spectrogram_settings(params: dict[str, Any]) -> SpectrogramSettings:
    """The spectrogram settings params.yaml defines (``resample.sample_rate`` + ``spectrogram.*``)."""
    values = {"sample_rate": section(params, "resample.sample_rate")}
    for name in ("frame_size", "fps", "bands_per_octave", "fmin", "fmax"):
        values[name] = section(params, f"spectrogram.{name}")
    try:
        return SpectrogramSettings(**values)
    except ValueError as exc:
        raise ParamsError(f"{params.get('_path', 'params.yaml')}: spectrogram settings: {exc}") from None
