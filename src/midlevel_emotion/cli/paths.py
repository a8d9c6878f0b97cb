"""The files a ``midlevel-emotion`` command reads and writes, checked before any work is done.

Inputs: audio files, and folders expanded to the audio files in them. Outputs: refused where
writing would destroy an input (an audio suffix, an input or the checkpoint itself, a
directory) or where the chart format is unknown. Every refusal is a usage error (exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..core.errors import CLIError
from .args import PLOT_SUFFIXES

AUDIO_SUFFIXES: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg")  # what libsndfile decodes here
# Never an output name: the inputs' suffixes and those of other audio the user may keep nearby.
PROTECTED_SUFFIXES: tuple[str, ...] = AUDIO_SUFFIXES + (
    ".aac", ".aif", ".aifc", ".aiff", ".alac", ".ape", ".au", ".caf", ".m4a", ".m4b", ".mid", ".midi",
    ".mp2", ".mp4", ".oga", ".opus", ".snd", ".w64", ".wma", ".wv")


def check_outputs(outputs: dict[str, str | None], protected: Sequence[Path]) -> None:
    """Refuse an output path that would destroy an input: before any work is done.

    ``outputs`` maps an option (``--csv``) to its path (None: not given; ``-``: stdout).
    Refused: a name with an audio suffix (``--csv song.mp3`` is a typo for an input, and
    writing there would destroy audio), an existing directory, and any file that is one of
    ``protected`` (the inputs and the checkpoint), also through a symlink or a hard link.
    """
    for option, raw in outputs.items():
        if raw is None or raw == "-":
            continue
        path = Path(raw)
        if path.suffix.lower() in PROTECTED_SUFFIXES:
            raise CLIError(f"{path}: refusing to write {option} output to a file with an audio suffix "
                           f"({path.suffix}); it may be someone's audio. Choose another name")
        if path.is_dir():
            raise CLIError(f"{path}: is a directory; {option} needs a file name")
        for other in protected:
            if _same_file(path, other):
                raise CLIError(f"{path}: refusing to write {option} output over the input {other}; "
                               "choose another name")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def check_plot_path(path: Path) -> None:
    """A chart format matplotlib writes here (:data:`.args.PLOT_SUFFIXES`), else a usage error."""
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise CLIError(f"{path}: unsupported plot format {path.suffix or '(none)'!r}; "
                       f"use one of {', '.join(PLOT_SUFFIXES)}")


def check_input_file(path: Path) -> None:
    """Missing, a directory or unreadable: a usage error before any work is done."""
    if not path.exists():
        raise CLIError(f"{path}: file not found")
    if path.is_dir():
        raise CLIError(f"{path}: is a directory (to explain every audio file in it, add --csv OUT.csv)")
    if not os.access(path, os.R_OK):
        raise CLIError(f"{path}: permission denied")


def expand_inputs(inputs: Sequence[str], recursive: bool) -> list[Path]:
    """Directories -> their audio files (sorted); files kept in argument order; no duplicates."""
    files: list[Path] = []
    seen: set[Path] = set()
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise CLIError(f"{path}: no {'/'.join(AUDIO_SUFFIXES)} files in this directory"
                               + ("" if recursive else " (add --recursive to look in subdirectories)"))
        elif path.exists():
            found = [path]
        else:
            raise CLIError(f"{path}: file not found")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files
