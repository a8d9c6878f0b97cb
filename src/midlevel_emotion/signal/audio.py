"""Audio decoding: mono, 22050 Hz, peak-normalised signals, and what the decoder says.

Decoding goes through libsndfile (the ``soundfile`` wheels bundle a libsndfile that reads
mp3, wav, flac and ogg), as ``librosa.load`` does first; resampling through
``librosa.resample`` with soxr's high-quality filter (``soxr_hq``, librosa's default).
The file is opened here rather than by ``librosa.load`` because libsndfile's own reason for a
bad file and the length the file's header states are both needed (``librosa.load`` falls back
to audioread and hides the first, and never sees the second).
The ``resample`` stage that runs this over a corpus is :mod:`midlevel_emotion.signal.resample_stage`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import librosa
import numpy as np
import soundfile as sf

from ..core.constants import SAMPLE_RATE
from ..core.errors import AudioError

RESAMPLE_TYPE = "soxr_hq"  # librosa's default: soxr, high quality
# Peaks below this (about -120 dBFS) are treated as digital silence: normalising them
# would only amplify dither or encoder noise.
SILENCE_PEAK = 1e-6
# A file is called truncated when it decodes to less than its header states by both margins:
# mp3 encoder delay and padding account for a few hundredths of a second, never this much.
TRUNCATED_FRACTION = 0.95
TRUNCATED_SECONDS = 0.25
# What libmpg123 and libsndfile print on their own: "Note: ...", "Warning: ...",
# "[src/libmpg123/parse.c:...] error: ...".
_DECODER_CHATTER = re.compile(r"^(Note|Warning|Error):|^\[[^\]]*\] ")


@dataclass(frozen=True)
class Decoded:
    """One decoded file: the signal and what its header promised.

    Attributes
    ----------
    signal : np.ndarray
        Mono float32 at ``sample_rate``, peak amplitude 1.
    sample_rate : int
        Hz.
    stated_seconds : float
        The length libsndfile reads from the file's header (an mp3's Xing/LAME frame count).
    """

    signal: np.ndarray
    sample_rate: int
    stated_seconds: float

    @property
    def seconds(self) -> float:
        """Decoded length in seconds."""
        return len(self.signal) / self.sample_rate

    @property
    def truncated(self) -> bool:
        """Whether the file decoded to clearly less than its header states (a damaged file)."""
        return is_truncated(self.seconds, self.stated_seconds)


def is_truncated(decoded_seconds: float, stated_seconds: float) -> bool:
    """Whether ``decoded_seconds`` falls short of ``stated_seconds`` by more than encoder padding."""
    missing = stated_seconds - decoded_seconds
    return missing > TRUNCATED_SECONDS and decoded_seconds < TRUNCATED_FRACTION * stated_seconds


def truncation_note(path: Path | str, decoded_seconds: float) -> str | None:
    """The warning for a file that decoded to a fraction of the length its header states.

    For the CLI, which has the decoded length: ``"<path>: decoded 0.6 s of a file whose header
    says 15.0 s"``, or None when the file is whole (or its header cannot be read).
    """
    try:
        with native_stderr():  # the decoder repeats its own warnings while reading the header
            info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    stated = info.frames / info.samplerate if info.samplerate > 0 else 0.0
    if not is_truncated(decoded_seconds, stated):
        return None
    return f"{path}: decoded {decoded_seconds:.1f} s of a file whose header says {stated:.1f} s"


def resample(signal: np.ndarray, orig_sample_rate: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D signal with soxr's high-quality anti-aliasing filter (``librosa.resample``).

    Parameters
    ----------
    signal : np.ndarray
        1-D signal.
    orig_sample_rate, sample_rate : int
        Source and target rates in Hz.

    Returns
    -------
    np.ndarray
        float32 signal at ``sample_rate``.
    """
    if orig_sample_rate <= 0 or sample_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sample_rate} -> {sample_rate}")
    signal = np.asarray(signal, dtype=np.float32)
    if orig_sample_rate == sample_rate:
        return signal
    return librosa.resample(signal, orig_sr=orig_sample_rate, target_sr=sample_rate,
                            res_type=RESAMPLE_TYPE).astype(np.float32, copy=False)


def normalise(samples: np.ndarray, orig_sample_rate: int, sample_rate: int = SAMPLE_RATE, *,
              source: Path | str = "signal") -> np.ndarray:
    """Downmix, check, resample and peak-normalise decoded samples.

    Parameters
    ----------
    samples : np.ndarray
        ``(frames,)`` or ``(frames, channels)``, as ``soundfile`` returns them.
    orig_sample_rate, sample_rate : int
        Their rate and the target rate in Hz.
    source : Path or str
        What error messages name.

    Raises
    ------
    AudioError
        No samples, non-finite samples, or silence.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.shape[0] == 0:
        raise AudioError(source, "decoded to zero samples")
    if not np.isfinite(samples).all():
        raise AudioError(source, "contains non-finite samples")
    # Downmix before resampling: half the filtering work, same result (both are linear).
    mono = librosa.to_mono(samples.T) if samples.ndim == 2 else samples
    signal = resample(mono, orig_sample_rate, sample_rate)
    peak = float(np.max(np.abs(signal)))
    if peak < SILENCE_PEAK:
        raise AudioError(source, f"silent (peak amplitude {peak:.1e})")
    return (signal / peak).astype(np.float32)


def decode(path: Path | str, sample_rate: int = SAMPLE_RATE) -> Decoded:
    """Decode an audio file like :func:`load`, keeping the length its header states."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as handle:
            stated_seconds = handle.frames / handle.samplerate
            samples = handle.read(dtype="float32", always_2d=True)
            orig_sample_rate = handle.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        # libsndfile says "Error opening '<path>': <reason>"; keep only the reason
        reason = re.sub(r"^Error opening .*?: ", "", str(err).split("\n")[0]).strip()
        if "does not exist" in reason:  # libsndfile's words for a file it cannot identify
            reason = "not a recognised audio format, or corrupt data"
        raise AudioError(path, f"cannot decode audio ({reason or type(err).__name__})") from None
    signal = normalise(samples, orig_sample_rate, sample_rate, source=path)
    return Decoded(signal, sample_rate, stated_seconds)


def load(path: Path | str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file to a mono, resampled, peak-normalised float32 signal.

    Parameters
    ----------
    path : Path or str
        An mp3, wav, flac or ogg file.
    sample_rate : int
        Target rate in Hz (22050, as in the paper).

    Returns
    -------
    np.ndarray
        1-D float32 signal with peak absolute amplitude 1.

    Raises
    ------
    AudioError
        When the file is missing, empty, undecodable, has no samples, contains non-finite
        samples, or is silent. The message names the file and the reason.
    """
    return decode(path, sample_rate).signal


def is_decoder_chatter(line: str) -> bool:
    """Whether a line on stderr is the mp3 decoder talking to itself (``Note: ...`` and kin)."""
    return bool(_DECODER_CHATTER.match(line))


@contextlib.contextmanager
def native_stderr(echo: Callable[[str], bool] | None = None) -> Iterator[list[str]]:
    """Capture what native code (libsndfile's mp3 decoder) writes to file descriptor 2.

    Parameters
    ----------
    echo : callable, optional
        After the block, the captured lines for which ``echo(line)`` is true are written to
        ``sys.stderr`` (e.g. ``lambda line: not is_decoder_chatter(line)``).

    Yields
    ------
    list of str
        Filled with the captured non-blank lines when the block ends, also when it raises.
    """
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2 (embedded interpreter): nothing to capture
        yield lines
        return
    _flush_std()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield lines
        finally:
            _flush_std()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines.extend(line for line in captured.read().decode(errors="replace").splitlines() if line.strip())
            shown = [line for line in lines if echo is not None and echo(line)]
            if shown:
                sys.stderr.write("\n".join(shown) + "\n")


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
