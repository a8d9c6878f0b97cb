"""Reading ``params.yaml``: the only home of hyperparameters, read once into typed objects
(:class:`midlevel_emotion.core.config.Params`), every key checked against
:data:`midlevel_emotion.core.config.SCHEMA` as it is read."""

from __future__ import annotations

from pathlib import Path

import yaml

from .config import Params
from .errors import ParamsError


def load_params(path: Path | str = "params.yaml") -> Params:
    """Load the whole params file as typed sections (``params.train.max_epochs``), every key checked.

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
    return Params.from_mapping(params, str(path))
