"""Profiles: named sets of changes to params.yaml (``profiles/<name>.yaml``).

A profile holds only the keys whose values differ from params.yaml, nested like it, so a
profile cannot drift from the defaults it does not mention. Applying one edits params.yaml
in place with a round-trip YAML writer, so its comments survive and ``dvc params diff``
shows exactly what the profile changed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from .errors import ParamsError
from .fileio import write_text
from .config import flatten

PROFILE_DIR = Path("profiles")


def profile_path(name_or_path: str | Path, profile_dir: Path = PROFILE_DIR) -> Path:
    """``paper`` -> ``profiles/paper.yaml``; a path to a ``.yaml`` file is used as is."""
    text = str(name_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml")) else Path(profile_dir) / f"{text}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(profile_dir).glob("*.yaml"))
        raise ParamsError(f"{path}: no such profile (known: {', '.join(known) or 'none'})")
    return path


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return data


def load_profile(profile: Path, params_path: Path = Path("params.yaml")) -> dict[str, Any]:
    """The profile's changes as ``{dotted key: value}``, checked against params.yaml.

    Raises
    ------
    ParamsError
        Naming the profile and the first key params.yaml does not have, or a key whose
        value is a section in one file and a single value in the other.
    """
    changes = flatten(_load_yaml(profile))
    defaults = flatten(_load_yaml(params_path))
    sections = {key.rsplit(".", i)[0] for key in defaults for i in range(1, key.count(".") + 1)}
    for key in changes:
        if key not in defaults:
            what = "a section, not a value," if key in sections else "not a key"
            raise ParamsError(f"{profile}: '{key}' is {what} in {params_path}")
    return changes


def apply_profile(profile: Path, params_path: Path = Path("params.yaml")) -> dict[str, tuple[Any, Any]]:
    """Write the profile's values into params.yaml (comments kept); returns ``{key: (old, new)}``."""
    changes = load_profile(profile, params_path)
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096
    round_trip.indent(mapping=2, sequence=4, offset=2)  # params.yaml's own layout
    round_trip.representer.add_representer(
        type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "null"))
    document = round_trip.load(params_path.read_text(encoding="utf-8"))
    changed = {}
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = document
        for part in parents:
            node = node[part]
        if node[leaf] != value:
            changed[key] = (node[leaf], value)
            if isinstance(value, list):  # keep short lists on one line, like params.yaml
                value = CommentedSeq(value)
                value.fa.set_flow_style()
            node[leaf] = value
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    write_text(params_path, buffer.getvalue())
    return changed


def set_arguments(profile: Path, params_path: Path = Path("params.yaml")) -> list[str]:
    """The profile as ``dvc exp run`` arguments: ``["-S", "train.max_epochs=199", ...]``."""
    arguments: list[str] = []
    for key, value in load_profile(profile, params_path).items():
        arguments += ["-S", f"{key}={json.dumps(value)}"]
    return arguments
