"""Log-filtered spectrogram (paper Section 5) and its on-disk store.

The spectrogram reproduces madmom 0.17's processor chain in plain numpy/scipy (the
filterbank bit for bit, the spectrogram to float32 rounding, ~1e-6); madmom is only a
test and benchmark reference, never a run-time dependency::

    frames (2048 samples, 31.25 fps, hop 705.6 samples, centred, zero padded)
    -> symmetric Hann window -> |rfft| without the Nyquist bin
    -> LogarithmicFilterbank(24 bands/octave, 20-16000 Hz, normalised, unique)
    -> log10(1 + S)

which at 22050 Hz gives 149 frequency bins and 313 frames per 10 s.

The on-disk store of a whole dataset is in :mod:`midlevel_emotion.signal.store`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scipy.fft
import scipy.sparse

from ..core.constants import (BANDS_PER_OCTAVE, FMAX, FMIN, FPS, FRAME_SIZE, N_BINS, SAMPLE_RATE, SpectrogramSettings,
                              check_filterbank)

__all__ = [
    "N_BINS",
    "logarithmic_filterbank",
    "frame_signal",
    "n_frames_for",
    "log_filtered_spectrogram",
]

FREF: float = 440.0  # Hz: the filterbank's bands are placed relative to A4, as in madmom


# --------------------------------------------------------------------------------------
# Spectrogram
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def logarithmic_filterbank(
    sample_rate: int = SAMPLE_RATE,
    frame_size: int = FRAME_SIZE,
    bands_per_octave: int = BANDS_PER_OCTAVE,
    fmin: float = FMIN,
    fmax: float = FMAX,
    fref: float = FREF,
    norm_filters: bool = True,
    unique_filters: bool = True,
) -> np.ndarray:
    """Triangular filterbank on a logarithmic frequency axis (madmom 0.17 exact).

    Equivalent to ``madmom.audio.filters.LogarithmicFilterbank(fft_frequencies(
    frame_size // 2, sample_rate), num_bands=bands_per_octave, fmin=fmin, fmax=fmax,
    fref=fref, norm_filters=norm_filters, unique_filters=unique_filters)``.

    Parameters
    ----------
    sample_rate : int
        Sample rate of the signal [Hz].
    frame_size : int
        FFT frame size [samples]; the filterbank covers its ``frame_size // 2``
        non-Nyquist bins.
    bands_per_octave : int
        Number of filter bands per octave.
    fmin, fmax : float
        Lowest and highest filter centre frequency candidates [Hz]; ``fmax`` may
        exceed the Nyquist frequency (such centres collapse onto the last bin).
    fref : float
        Tuning reference frequency [Hz] the logarithmic grid is aligned to.
    norm_filters : bool
        Normalise each filter to unit area (sum).
    unique_filters : bool
        Drop filters whose centre maps onto an FFT bin already used (low
        frequencies, where the FFT resolution is coarser than the log grid).

    Returns
    -------
    numpy.ndarray
        Read-only float32 array of shape ``(frame_size // 2, n_bands)``; cached, so
        callers must not (and cannot) modify it. 149 bands for the defaults.

    Raises
    ------
    ValueError
        On invalid parameters or when fewer than three distinct centre bins remain.
    """
    check_filterbank(sample_rate, frame_size, bands_per_octave, fmin, fmax)
    if not fref > 0:
        raise ValueError(f"fref must be > 0 Hz, got {fref!r}")
    n_fft_bins = frame_size // 2
    # madmom's fft_frequencies: fftfreq over 2 * n_fft_bins points, positive half.
    bin_frequencies = np.fft.fftfreq(n_fft_bins * 2, 1.0 / sample_rate)[:n_fft_bins]

    # log_frequencies: the floor/ceil range can overshoot [fmin, fmax]; trim it.
    left = np.floor(np.log2(float(fmin) / fref) * bands_per_octave)
    right = np.ceil(np.log2(float(fmax) / fref) * bands_per_octave)
    frequencies = fref * 2.0 ** (np.arange(left, right) / float(bands_per_octave))
    frequencies = frequencies[np.searchsorted(frequencies, fmin) :]
    frequencies = frequencies[: np.searchsorted(frequencies, fmax, "right")]

    # frequencies2bins: nearest FFT bin (ties go to the upper bin, as in madmom).
    bins = bin_frequencies.searchsorted(frequencies)
    bins = np.clip(bins, 1, len(bin_frequencies) - 1)
    lower = bin_frequencies[bins - 1]
    upper = bin_frequencies[bins]
    bins = bins - (frequencies - lower < upper - frequencies)
    if unique_filters:
        bins = np.unique(bins)
    if len(bins) < 3:
        raise ValueError(
            f"not enough distinct filter bins ({len(bins)}) for a triangular filterbank "
            f"with fmin={fmin}, fmax={fmax}, frame_size={frame_size}"
        )

    filterbank = np.zeros((n_fft_bins, len(bins) - 2), dtype=np.float32)
    for band, (start, center, stop) in enumerate(zip(bins[:-2], bins[1:-1], bins[2:])):
        start, center, stop = int(start), int(center), int(stop)
        # madmom's fix for too-small filters: a one-bin filter at `start`.
        if stop - start < 2:
            center, stop = start, start + 1
        if not start <= center < stop:
            raise ValueError(
                f"filter {band}: centre bin {center} not in [{start}, {stop}) "
                "(duplicate bins; use unique_filters=True)"
            )
        data = np.zeros(stop - start)
        data[: center - start] = np.linspace(0, 1, center - start, endpoint=False)
        data[center - start :] = np.linspace(1, 0, stop - center, endpoint=False)
        # madmom casts to float32 before normalising; doing the same keeps us bit-close.
        data = data.astype(np.float32)
        if norm_filters:
            data /= np.sum(data)
        stop = min(stop, n_fft_bins)  # madmom truncates filters past the last bin
        column = filterbank[start:stop, band]
        np.maximum(data[: stop - start], column, out=column)
    filterbank.setflags(write=False)
    return filterbank


def frame_signal(
    signal: np.ndarray, frame_size: int = FRAME_SIZE, hop_length: float = SAMPLE_RATE / FPS
) -> np.ndarray:
    """Split a signal into overlapping, centred frames (madmom ``FramedSignal``).

    Semantics of madmom's ``FramedSignal(origin=0, end='normal')``: there are
    ``ceil(len(signal) / hop_length)`` frames; frame ``i`` is centred on sample
    ``int(i * hop_length)``, i.e. starts at that sample minus ``frame_size // 2``, and
    the parts outside the signal are zeros.

    Parameters
    ----------
    signal : numpy.ndarray
        1-D signal.
    frame_size : int
        Frame length [samples].
    hop_length : float
        Distance between frame centres [samples]; may be fractional.

    Returns
    -------
    numpy.ndarray
        New array of shape ``(n_frames, frame_size)`` with the signal's dtype.
    """
    signal = np.asarray(signal)
    if signal.ndim != 1:
        raise ValueError(f"signal must be 1-D, got shape {signal.shape}")
    if frame_size < 1 or not hop_length > 0:
        raise ValueError(f"need frame_size >= 1 and hop_length > 0, got {frame_size}, {hop_length}")
    windows, refs = _frame_windows(signal, frame_size, hop_length)
    return windows[refs]  # fancy indexing copies the frames


def _frame_windows(
    signal: np.ndarray, frame_size: int, hop_length: float
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded sliding-window view of ``signal`` and each frame's row in it."""
    n_frames = int(np.ceil(len(signal) / float(hop_length)))
    # Same float64 product and truncation as madmom's int(index * hop_size).
    refs = (np.arange(n_frames) * float(hop_length)).astype(np.intp)
    pad_left = frame_size // 2
    # The last centre is < len(signal), so frame_size - pad_left zeros suffice on the right.
    padded = np.zeros(pad_left + len(signal) + frame_size - pad_left, dtype=signal.dtype)
    padded[pad_left : pad_left + len(signal)] = signal
    # In padded coordinates frame i starts at refs[i] (= its centre in the signal).
    return np.lib.stride_tricks.sliding_window_view(padded, frame_size), refs


def n_frames_for(n_samples: int, sample_rate: int = SAMPLE_RATE, fps: float = FPS) -> int:
    """Number of spectrogram frames for a signal of ``n_samples`` samples.

    Parameters
    ----------
    n_samples : int
        Signal length [samples].
    sample_rate : int
        Sample rate [Hz].
    fps : float
        Frame rate [frames per second].

    Returns
    -------
    int
        ``ceil(n_samples / hop_length)`` with ``hop_length = sample_rate / fps``.
    """
    return int(np.ceil(n_samples / (sample_rate / float(fps))))


@functools.lru_cache(maxsize=4)
def _hann_window(frame_size: int) -> np.ndarray:
    # np.hanning is madmom's default (symmetric, not the periodic scipy variant).
    window = np.hanning(frame_size).astype(np.float32)
    window.setflags(write=False)
    return window


# Frames per FFT block: small enough that the frames, their spectrum and the magnitudes
# stay in L2 cache and the buffers are reused (fresh multi-MB arrays per clip cost more
# in page faults than the FFT itself), large enough to amortise per-call overhead.
_BLOCK_FRAMES = 64


@functools.lru_cache(maxsize=16)
def _sparse_filterbank_t(
    sample_rate: int, frame_size: int, bands_per_octave: int, fmin: float, fmax: float
) -> scipy.sparse.csr_array:
    # The filterbank is ~99% zeros (each FFT bin feeds at most two triangles), so a
    # sparse product does ~80x fewer multiply-adds than a dense one; it also avoids
    # multi-threaded BLAS, whose spinning threads slow down parallel workers.
    filterbank = logarithmic_filterbank(sample_rate, frame_size, bands_per_octave, fmin, fmax)
    return scipy.sparse.csr_array(filterbank.T)


def log_filtered_spectrogram(signal: np.ndarray, sample_rate: int = SAMPLE_RATE, frame_size: int = FRAME_SIZE,
                             fps: float = FPS, bands_per_octave: int = BANDS_PER_OCTAVE, fmin: float = FMIN,
                             fmax: float = FMAX) -> np.ndarray:
    """Logarithmically filtered log-magnitude spectrogram (paper Section 5).

    Parameters
    ----------
    signal : numpy.ndarray
        1-D float signal (mono, peak-normalised) sampled at ``sample_rate``; float64
        input is converted to float32.
    sample_rate : int
        Sample rate of ``signal`` [Hz]; the filterbank is built for this rate, so it
        must be the signal's true rate (149 bins at 22050 Hz with the defaults).
    frame_size : int
        STFT frame size [samples] (even).
    fps : float
        Frame rate [frames per second]; hop length is ``sample_rate / fps`` samples.
    bands_per_octave : int
        Filterbank resolution [bands per octave].
    fmin, fmax : float
        Filterbank frequency range [Hz].

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(n_frames, n_bands)`` (time x frequency) with
        ``n_frames = ceil(len(signal) / hop_length)``; 313 x 149 for 10 s at 22050 Hz.

    Raises
    ------
    ValueError
        If the signal is not a 1-D float array, contains NaN/inf, is shorter than one
        hop, or a parameter is invalid.
    """
    hop_length = SpectrogramSettings(sample_rate, frame_size, fps, bands_per_octave, fmin, fmax).hop_length
    signal = _check_signal(signal, hop_length)
    filterbank_t = _sparse_filterbank_t(sample_rate, frame_size, bands_per_octave, fmin, fmax)
    window = _hann_window(frame_size)
    n_fft_bins = frame_size // 2

    # frame_signal's frames, but copied block by block into one reused buffer.
    windows, refs = _frame_windows(signal, frame_size, hop_length)
    n_frames = len(refs)

    out = np.empty((n_frames, filterbank_t.shape[0]), dtype=np.float32)
    frames_buffer = np.empty((_BLOCK_FRAMES, frame_size), dtype=np.float32)
    # Magnitudes are written transposed (bins x frames, C order): that is the layout the
    # sparse product wants, so it need not copy them again.
    magnitude_t = np.empty((n_fft_bins, _BLOCK_FRAMES), dtype=np.float32)
    for first in range(0, n_frames, _BLOCK_FRAMES):
        block_refs = refs[first : first + _BLOCK_FRAMES]
        size = len(block_refs)
        frames = frames_buffer[:size]
        np.multiply(windows[block_refs], window, out=frames)
        block_magnitude_t = (
            magnitude_t if size == _BLOCK_FRAMES else np.empty((n_fft_bins, size), np.float32)
        )
        # float32 in -> complex64 out; madmom drops the Nyquist bin.
        np.abs(scipy.fft.rfft(frames, axis=1)[:, :n_fft_bins], out=block_magnitude_t.T)
        out[first : first + size] = (filterbank_t @ block_magnitude_t).T
    out += 1.0
    np.log10(out, out=out)
    return out


def _check_signal(signal: Any, hop_length: float) -> np.ndarray:
    if not isinstance(signal, np.ndarray):
        raise ValueError(f"signal must be a numpy array, got {type(signal).__name__}")
    if not np.issubdtype(signal.dtype, np.floating):
        raise ValueError(
            f"signal must be a float array (peak-normalised samples), got dtype {signal.dtype}"
        )
    if signal.ndim != 1:
        raise ValueError(f"signal must be 1-D (mono), got shape {signal.shape}; downmix first")
    if len(signal) < hop_length:
        raise ValueError(
            f"signal has {len(signal)} samples, shorter than one hop ({hop_length:g} samples)"
        )
    signal = signal.astype(np.float32, copy=False)
    finite = np.isfinite(signal)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"signal has {len(bad)} non-finite samples (NaN/inf), first at index {bad[0]}"
        )
    return signal
