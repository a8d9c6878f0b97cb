"""The clips a run learns from and is scored on: their spectrograms and targets, checked once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClipSet:
    """Spectrograms of some clips and their targets.

    ``spectrograms[i]`` is a (frames, 149) array (usually a memory-mapped view) and
    ``targets[i]`` its target vector: 7 mid-level values, 8 emotions, or both concatenated
    (mid-level first) for the Joint model.
    """

    ids: list[str]
    spectrograms: list[np.ndarray]
    targets: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.spectrograms) == len(self.targets)):
            raise ValueError("ids, spectrograms and targets differ in length")
        if not np.isfinite(self.targets).all():
            raise ValueError("targets contain NaN or infinite values")


__all__ = ["ClipSet"]
