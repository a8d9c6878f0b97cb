"""Names and preprocessing settings every part of the project shares.

This module imports neither torch nor the audio stack, so the command-line tool can read
it before deciding whether to load a model. Values follow the paper (Section 5) and the
SPEC; params.yaml may override the spectrogram settings, and a checkpoint records the ones
its model was trained with.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

# Canonical order used everywhere (arrays, checkpoints, tables): the paper's Table 3 order.
MIDLEVEL_FEATURES: tuple[str, ...] = (
    "melodiousness",
    "articulation",
    "rhythm_stability",
    "rhythm_complexity",
    "dissonance",
    "tonal_stability",
    "minorness",
)

# Canonical emotion order: the column order of the Soundtracks ratings file.
EMOTIONS: tuple[str, ...] = (
    "valence",
    "energy",
    "tension",
    "anger",
    "fear",
    "happy",
    "sad",
    "tender",
)

DATASETS: tuple[str, ...] = ("midlevel", "soundtracks")


def run_name(kind: str, seed: int) -> str:
    """A run of a network trained on every seed, e.g. ``joint_seed_0``: its checkpoint's stem and
    its training-curve folder."""
    return f"{kind}_seed_{seed}"


def checkpoint_file(models_dir: Path | str, kind: str, seed: int) -> Path:
    """Where a training stage saves that run's model: ``<models_dir>/<kind>_seed_<seed>.pt``
    (``models_dir`` is the stage's folder, e.g. ``models/joint``)."""
    return Path(models_dir) / f"{run_name(kind, seed)}.pt"


#: Below this test Pearson r a mid-level feature's effects are marked unreliable: the model
#: hears the feature too poorly for its effects to explain anything. 0.3 is Cohen's "medium"
#: correlation (9 % of the variance); every feature of the paper's Table 3 clears it (the
#: lowest, rhythm stability, at 0.34-0.46), while on the embedded run rhythm stability and
#: minorness fall below it. Changed with ``--min-feature-r``.
MIN_FEATURE_R = 0.3

#: The Joint model of the pipeline's first run (``runs.seeds[0] = 0``), relative to the
#: repository root: the checkpoint ``midlevel-emotion`` explains with when ``models/joint/``
#: holds no other runs.
DEFAULT_CHECKPOINT = checkpoint_file("models/joint", "joint", 0)

# Paper / SPEC preprocessing defaults (Section 5).
SAMPLE_RATE: int = 22050  # Hz
FRAME_SIZE: int = 2048  # samples
FPS: float = 31.25  # frames per second: hop 705.6 samples; the authors' madmom code used 31.3
BANDS_PER_OCTAVE: int = 24
FMIN: float = 20.0  # Hz
FMAX: float = 16000.0  # Hz
N_BINS: int = 149  # logarithmic filterbank bands the defaults give at 22050 Hz


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_filterbank(sample_rate: Any, frame_size: Any, bands_per_octave: Any, fmin: Any, fmax: Any) -> None:
    """Raise ``ValueError`` naming the first filterbank setting that is out of range."""
    if not _is_int(sample_rate) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer [Hz], got {sample_rate!r}")
    if not _is_int(frame_size) or frame_size < 8 or frame_size % 2:
        raise ValueError(f"frame_size must be an even integer >= 8 [samples], got {frame_size!r}")
    if not _is_int(bands_per_octave) or bands_per_octave < 1:
        raise ValueError(f"bands_per_octave must be a positive integer, got {bands_per_octave!r}")
    if not (0 < fmin < fmax):
        raise ValueError(f"need 0 < fmin < fmax [Hz], got fmin={fmin!r}, fmax={fmax!r}")
    if fmin >= sample_rate / 2:
        raise ValueError(f"fmin={fmin} Hz is not below the Nyquist frequency {sample_rate / 2} Hz")


@dataclass(frozen=True)
class SpectrogramSettings:
    """The six numbers that define the log-filtered spectrogram (validated on creation).

    Attributes
    ----------
    sample_rate : int
        Rate of the signal [Hz].
    frame_size : int
        FFT frame length [samples], even.
    fps : float
        Frames per second; the hop is ``sample_rate / fps`` samples.
    bands_per_octave : int
        Filterbank resolution.
    fmin, fmax : float
        Filterbank range [Hz].
    """

    sample_rate: int = SAMPLE_RATE
    frame_size: int = FRAME_SIZE
    fps: float = FPS
    bands_per_octave: int = BANDS_PER_OCTAVE
    fmin: float = FMIN
    fmax: float = FMAX

    def __post_init__(self) -> None:
        check_filterbank(self.sample_rate, self.frame_size, self.bands_per_octave, self.fmin, self.fmax)
        fps = self.fps
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a positive finite number, got {fps!r}")
        if self.sample_rate / float(fps) < 1:
            raise ValueError(f"fps={fps} exceeds sample_rate={self.sample_rate}: hop would be < 1 sample")

    @property
    def hop_length(self) -> float:
        """Hop between frames [samples] (fractional: madmom places frames at ``round(i * hop)``)."""
        return self.sample_rate / float(self.fps)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SpectrogramSettings":
        """The settings from a params section, a ``stats.json`` or a checkpoint (extra keys ignored).

        Raises ``KeyError`` naming the first missing setting.
        """
        missing = [f.name for f in fields(cls) if f.name not in values]
        if missing:
            raise KeyError(f"missing spectrogram setting {missing[0]!r}")
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (what ``stats.json`` and checkpoints record), plus ``hop_length``."""
        values = asdict(self)
        return {
            "sample_rate": int(values["sample_rate"]),
            "frame_size": int(values["frame_size"]),
            "fps": float(values["fps"]),
            "hop_length": self.hop_length,
            "bands_per_octave": int(values["bands_per_octave"]),
            "fmin": float(values["fmin"]),
            "fmax": float(values["fmax"]),
        }

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`midlevel_emotion.signal.features.log_filtered_spectrogram`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def window_frames(seconds: float, fps: float) -> int:
    """Frames a model window of ``seconds`` spans: 10 s at 31.25 fps = 312.5 -> 313 (the paper's input)."""
    return int(math.ceil(seconds * fps))


def hop_frames(seconds: float, fps: float) -> int:
    """Frames between evaluation windows ``seconds`` apart (at least 1)."""
    return max(1, int(round(seconds * fps)))
