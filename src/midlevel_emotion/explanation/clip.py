"""One piece of audio as an explainable network hears it: decoded, resampled, turned into the
training spectrogram, standardised and cut into windows by the one rule of
:mod:`midlevel_emotion.learning.inference`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.constants import SpectrogramSettings
from ..core.errors import AudioError
from ..learning.inference import checkpoint_hop_frames, crop, window_starts
from ..signal import audio
from ..signal.features import log_filtered_spectrogram

SIGNAL_SOURCE = "<signal>"


@dataclass
class Clip:
    """One piece of audio as the network's input: the standardised spectrogram and its windows.

    Attributes
    ----------
    source : str
        The file's path, or ``"<signal>"``.
    duration_seconds : float
        Length of the decoded audio.
    normalised : np.ndarray
        (frames, bins) float32 log-filtered spectrogram, standardised as in training.
    starts : np.ndarray
        Start frame of every window.
    crop_frames, hop_frames : int
        Window length and hop in frames.
    fps : float
        Spectrogram frames per second.
    """

    source: str
    duration_seconds: float
    normalised: np.ndarray
    starts: np.ndarray
    crop_frames: int
    hop_frames: int
    fps: float

    @property
    def n_windows(self) -> int:
        """How many windows the model hears."""
        return len(self.starts)

    def windows(self, first: int, stop: int) -> np.ndarray:
        """Windows ``first .. stop - 1`` as (n, crop_frames, bins) float32, loop-padded as in training."""
        return np.stack([crop(self.normalised, self.crop_frames, int(s)) for s in self.starts[first:stop]])


def _prepare_signal(source: str | Path | np.ndarray, sample_rate: int | None,
                    target_rate: int) -> tuple[str, np.ndarray]:
    """The name and the mono, resampled, peak-normalised signal of a file or an array.

    An array goes through :func:`midlevel_emotion.signal.audio.normalise`, the same checks,
    resampling and normalisation a decoded file gets (no samples, non-finite samples,
    silence), with its errors naming ``<signal>``.
    """
    if not isinstance(source, np.ndarray):
        if sample_rate is not None:
            raise ValueError("sample_rate is only for signals given as arrays; files are decoded at their own rate")
        return str(source), audio.load(source, sample_rate=target_rate)
    if sample_rate is None:
        raise ValueError("explain() needs sample_rate for a signal given as an array")
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer() or int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    if source.ndim != 1:
        raise ValueError(f"a signal must be 1-D (mono), got shape {source.shape}; downmix it first")
    if not np.issubdtype(source.dtype, np.number) or np.issubdtype(source.dtype, np.complexfloating):
        raise ValueError(f"a signal must be real numbers, got dtype {source.dtype}")
    return SIGNAL_SOURCE, audio.normalise(source, int(sample_rate), target_rate, source=SIGNAL_SOURCE)


def prepare_clip(source: str | Path | np.ndarray, meta: dict, *, sample_rate: int | None = None,
                 hop_seconds: float | None = None) -> Clip:
    """Decode and resample one piece of audio and cut its spectrogram into windows (no model runs).

    Parameters
    ----------
    source, sample_rate, hop_seconds
        As in :func:`explain`.
    meta : dict
        The checkpoint's metadata (spectrogram settings, window length).

    Returns
    -------
    Clip

    Raises
    ------
    AudioError
        As in :func:`explain`.
    ValueError
        A bad ``sample_rate``, signal or ``hop_seconds``.
    """
    spec_params = meta["spectrogram"]
    fps = float(spec_params["fps"])
    target_rate = int(spec_params["sample_rate"])
    name, signal = _prepare_signal(source, sample_rate, target_rate)
    duration = len(signal) / target_rate
    hop_length = target_rate / fps
    if len(signal) < hop_length:
        raise AudioError(name, f"too short ({duration * 1000:.0f} ms, less than one spectrogram frame)")
    spectrogram = log_filtered_spectrogram(signal, **SpectrogramSettings.from_mapping(spec_params).kwargs())

    crop_frames = int(meta["input"]["crop_frames"])
    hop_frames = checkpoint_hop_frames(meta, hop_seconds)
    starts = window_starts(len(spectrogram), crop_frames, hop_frames)
    mean, std = float(spec_params["mean"]), float(spec_params["std"])
    normalised = ((spectrogram - mean) / std).astype(np.float32)  # exactly as training standardises
    return Clip(name, float(duration), normalised, starts, crop_frames, hop_frames, fps)


__all__ = ["SIGNAL_SOURCE", "Clip", "prepare_clip"]
