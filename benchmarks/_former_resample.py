"""The resample path before librosa, kept for ``benchmarks/resample.py`` only.

Imports nothing from the package, so a fresh process timing it pays only its own imports.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly


def resample(signal: np.ndarray, orig_sample_rate: int, sample_rate: int) -> np.ndarray:
    """Polyphase filter with the exact rational ratio of the two rates."""
    ratio = Fraction(sample_rate, orig_sample_rate)
    return resample_poly(signal, ratio.numerator, ratio.denominator).astype(np.float32)


def load(path: Path | str, sample_rate: int = 22050) -> np.ndarray:
    """The former ``audio.load`` without its checks: decode, downmix, resample, normalise."""
    data, orig_sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    signal = resample(data.mean(axis=1), orig_sample_rate, sample_rate)
    return (signal / np.max(np.abs(signal))).astype(np.float32)
