"""The checkpoints a ``midlevel-emotion`` command runs: which ones, loaded, and the warning
their training corpus calls for.

A checkpoint that cannot be used (missing, damaged, incompatible or unlike the others) is a
usage error (exit 2). The file format itself is :mod:`midlevel_emotion.learning.checkpoints`;
the runs of an ensemble are found and loaded by :mod:`midlevel_emotion.explanation.ensemble`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import CLIError, one_line
from .args import EXIT_USAGE


def checkpoint_path(args: argparse.Namespace) -> Path:
    """``info``'s checkpoint: the one given, else the default one."""
    if args.checkpoint is not None:
        return Path(args.checkpoint)
    from ..explanation.network import DEFAULT_CHECKPOINT

    return Path(DEFAULT_CHECKPOINT)


def checkpoint_paths(args: argparse.Namespace) -> list[Path]:
    """``explain``'s and ``compare``'s checkpoints: those given (folders expanded), else every run."""
    from ..core.errors import CheckpointError
    from ..explanation import ensemble

    try:
        return ensemble.checkpoint_paths(args.checkpoint or [])
    except CheckpointError as err:
        raise CLIError(str(err), EXIT_USAGE) from err


def load_models(paths: Sequence[Path]) -> list[tuple[Any, dict]]:
    """Every run's model and metadata; CheckpointError -> exit 2 (missing, incompatible or unlike the others)."""
    from ..core.errors import CheckpointError
    from ..explanation import ensemble

    try:
        return ensemble.load_models(paths)
    except CheckpointError as err:
        message = str(err)
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            message += " (train one with `dvc repro`, or pass --checkpoint PATH)"
        raise CLIError(message, EXIT_USAGE) from err


def corpus_warning(meta: dict, explanation: Any = None) -> str | None:
    """The synthetic-corpus warning (the Explanation's own text when there is one)."""
    if explanation is not None and getattr(explanation, "warning", None):
        return one_line(explanation.warning)
    if str(meta.get("corpus", "")).lower() == "synthetic":
        from ..explanation.song import SYNTHETIC_WARNING

        return one_line(SYNTHETIC_WARNING)
    return None
