"""Checkpoints: a versioned file holding a model and everything needed to use it elsewhere.

:func:`save_checkpoint` writes it (atomically), :func:`load_checkpoint` validates every field
before building the network, so a damaged or foreign file is one line naming what is wrong.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.config import Params
from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..core.errors import CheckpointError
from ..core.fileio import write_bytes
from .models import MODEL_KINDS, build_model
from .training import TrainConfig

CHECKPOINT_FORMAT = "midlevel-emotion-checkpoint"
CHECKPOINT_VERSION = 2
#: Versions :func:`load_checkpoint` reads. 2 added ``architecture.width``; a version-1 file is a
#: Figure 2 network (width 1.0) and loads as such.
READABLE_VERSIONS = (1, 2)


def params_hash(params: Params) -> str:
    """Short hash of the whole params file a model was trained with (recorded in its checkpoint).

    Every section counts, so the hash names one params.yaml content rather than the subset a
    model depends on (which also spans the data and spectrogram sections): it hashes
    ``params.raw``, the mapping as YAML loaded it (where the file was read from does not count).
    Key order and YAML formatting do not change the hash.
    """
    blob = json.dumps(dict(params.raw), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def save_checkpoint(path: Path, model: torch.nn.Module, *, kind: str, config: TrainConfig,
                    spectrogram: dict[str, Any], corpus: str, seed: int, params_digest: str,
                    test_pearson: dict[str, float] | None = None, extra: dict | None = None) -> None:
    """Save a model with everything needed to use it outside the pipeline.

    The file is a ``torch.save`` dict:

    - ``format``/``version``: ``"midlevel-emotion-checkpoint"``, :data:`CHECKPOINT_VERSION`;
    - ``kind``: a2e | a2mid | a2mid2e | joint; ``architecture``: last_kernel_size, dropout, width
      (a file without width is a Figure 2 network, width 1.0);
    - ``midlevel_features``, ``emotions``: output names in order;
    - ``spectrogram``: sample_rate, frame_size, fps, bands_per_octave, fmin, fmax, mean, std;
    - ``input``: crop_seconds, crop_frames (the window the model hears), eval_hop_seconds;
    - ``corpus``: ``synthetic`` or the real source; ``trained_at`` (UTC ISO date: the
      ``SOURCE_DATE_EPOCH`` of the environment, which the pipeline's stages set to the date
      of the last commit of the code and params, else the time of saving; :func:`source_date`), ``seed``,
      ``params_hash``; ``test_pearson``: target -> r on the held-out test split;
    - ``state_dict``: the weights (on CPU).

    The same weights and metadata give the same bytes (the file is serialised in memory, so the
    zip's folder name does not come from the temporary file's random name), so a retrain that
    changes nothing leaves ``dvc.lock`` and the downstream stages alone.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "kind": kind,
        "architecture": {"last_kernel_size": config.last_kernel_size, "dropout": config.dropout,
                         "width": config.width},
        "midlevel_features": list(MIDLEVEL_FEATURES),
        "emotions": list(EMOTIONS),
        "spectrogram": dict(spectrogram),
        "input": {"crop_seconds": config.crop_seconds, "crop_frames": config.crop_frames,
                  "eval_hop_seconds": config.eval_hop_seconds},
        "train_config": asdict(config),
        "corpus": corpus,
        "trained_at": source_date(),
        "seed": seed,
        "params_hash": params_digest,
        "test_pearson": test_pearson or {},
        "extra": extra or {},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)  # in memory: torch names the zip's folder after a file's name
    write_bytes(path, buffer.getvalue())


def source_date() -> str:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org) as a UTC ISO date, else now.

    Raises
    ------
    ValueError
        When ``SOURCE_DATE_EPOCH`` is set but not a whole number of seconds.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch:
        when = _dt.datetime.now(_dt.timezone.utc)
    elif epoch.isdigit():
        when = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
    else:
        raise ValueError(f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, got {epoch!r}")
    return when.isoformat(timespec="seconds")


_CHECKPOINT_KEYS = ("kind", "architecture", "midlevel_features", "emotions", "spectrogram", "input", "state_dict")
_ARCHITECTURE_KEYS = ("last_kernel_size", "dropout", "width")  # no width: 1.0 (Figure 2)
_POSITIVE_SPECTROGRAM_KEYS = ("sample_rate", "frame_size", "fps", "bands_per_octave", "fmax")
_POSITIVE_INPUT_KEYS = ("crop_frames", "crop_seconds", "eval_hop_seconds")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def _checkpoint_problem(payload: dict) -> str | None:
    """What makes a loaded checkpoint dict unusable (one phrase), or None.

    Checked before any number is used, so a damaged or hand-edited file gives this one line
    instead of a KeyError, a ZeroDivisionError or a table of NaN.
    """
    missing = [k for k in _CHECKPOINT_KEYS if k not in payload]
    if missing:
        return f"lacks {', '.join(repr(k) for k in missing)}"
    if payload["kind"] not in MODEL_KINDS:
        return f"unknown model kind {payload['kind']!r} (expected one of {', '.join(MODEL_KINDS)})"
    architecture, spectrogram, window = payload["architecture"], payload["spectrogram"], payload["input"]
    for name, value in (("architecture", architecture), ("spectrogram", spectrogram), ("input", window),
                        ("state_dict", payload["state_dict"])):
        if not isinstance(value, dict):
            return f"{name} is a {type(value).__name__}, not a mapping"
    for name in ("midlevel_features", "emotions"):
        if not isinstance(payload[name], (list, tuple)):
            return f"{name} is a {type(payload[name]).__name__}, not a list of names"
    unknown = sorted(repr(k) for k in set(architecture) - set(_ARCHITECTURE_KEYS))
    if unknown:
        return f"unknown architecture key(s) {', '.join(unknown)} (known: {', '.join(_ARCHITECTURE_KEYS)})"
    for key in ("mean", "std"):
        if key not in spectrogram:
            return f"lacks spectrogram.{key} (the standardisation the model was trained with)"
    if not _is_number(spectrogram["mean"]) or not _is_number(spectrogram["std"]) or spectrogram["std"] <= 0:
        return (f"spectrogram mean {spectrogram['mean']!r} and std {spectrogram['std']!r} must be finite "
                "with std > 0")
    checks = [(f"spectrogram.{k}", spectrogram[k]) for k in _POSITIVE_SPECTROGRAM_KEYS if k in spectrogram]
    checks += [(f"input.{k}", window.get(k)) for k in _POSITIVE_INPUT_KEYS]
    for name, value in checks:
        if not _is_number(value) or value <= 0:
            return f"{name} must be a positive number, got {value!r}"
    if not float(window["crop_frames"]).is_integer():
        return f"input.crop_frames must be a whole number, got {window['crop_frames']!r}"
    for name, tensor in payload["state_dict"].items():
        if not isinstance(tensor, torch.Tensor):
            return f"weight {name!r} is a {type(tensor).__name__}, not a tensor"
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return f"weight {name!r} contains NaN or infinite values"
    return None


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``device``.
    meta : dict
        The checkpoint without its weights.

    Raises
    ------
    CheckpointError
        One line naming the file and what is wrong: missing, unreadable, another format or
        version, a missing key, an unknown kind or architecture key, a non-positive sample
        rate, fps or window, a spectrogram std of 0, non-finite weights, or weights that do
        not fit the network.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a midlevel-emotion checkpoint")
    if payload.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} is not supported "
                              f"(this midlevel-emotion reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    problem = _checkpoint_problem(payload)
    if problem is not None:
        raise CheckpointError(f"{path}: damaged or incompatible checkpoint: {problem}")
    if (list(payload["midlevel_features"]) != list(MIDLEVEL_FEATURES) or list(payload["emotions"]) != list(EMOTIONS)):
        raise CheckpointError(f"{path}: feature or emotion order differs from this version's")
    try:
        model = build_model(payload["kind"], **payload["architecture"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: damaged or incompatible checkpoint: architecture "
                              f"{payload['architecture']}: {' '.join(str(err).split())}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the {payload['kind']} network "
                              f"({str(err).splitlines()[0]})") from None
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.to(device).eval(), meta
