"""Log-filtered spectrogram (paper Section 5) and its on-disk store.

The spectrogram reproduces madmom 0.17's processor chain in plain numpy/scipy (the
filterbank bit for bit, the spectrogram to float32 rounding, ~1e-6); madmom is only a
test and benchmark reference, never a run-time dependency::

    frames (2048 samples, 31.25 fps, hop 705.6 samples, centred, zero padded)
    -> symmetric Hann window -> |rfft| without the Nyquist bin
    -> LogarithmicFilterbank(24 bands/octave, 20-16000 Hz, normalised, unique)
    -> log10(1 + S)

which at 22050 Hz gives 149 frequency bins and 313 frames per 10 s.

Storage layout
--------------
Each dataset is stored as one directory holding

``spectrograms.npy``
    A single float32 array of shape ``(total_frames, n_bins)``: every clip's frames
    concatenated along time, in sorted clip-id order.
``index.csv``
    Columns ``clip_id,start,n_frames``: the rows of ``spectrograms.npy`` of each clip.
``stats.json``
    One dataset-wide ``mean`` and ``std`` over all frames and bins (for input
    standardisation), ``n_frames``, ``n_bins``, ``n_clips`` and the spectrogram
    parameters that produced the store.

Why one array per dataset rather than one per split or one file per clip: the
train/validation/test splits are drawn per run at training time, so per-split arrays
would duplicate data (and tie the preprocessing to one split); and one contiguous
memory-mapped array gives O(1) random crops with no per-file open/parse cost when a
data loader touches ~5000 clips every epoch. The store is written into a temporary
directory and renamed into place, so an interrupted run never leaves a
complete-looking store behind.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import scipy.sparse

from .parallel import resolve_jobs

__all__ = [
    "SAMPLE_RATE",
    "FRAME_SIZE",
    "FPS",
    "BANDS_PER_OCTAVE",
    "FMIN",
    "FMAX",
    "N_BINS",
    "DATASETS",
    "logarithmic_filterbank",
    "frame_signal",
    "n_frames_for",
    "log_filtered_spectrogram",
    "spectrogram_params",
    "write_spectrogram_store",
    "build_spectrogram_stores",
    "collect_signal_paths",
    "SpectrogramStore",
    "InvalidStoreError",
]

# Paper / SPEC defaults (Section 5).
SAMPLE_RATE: int = 22050
FRAME_SIZE: int = 2048
FPS: float = 31.25
BANDS_PER_OCTAVE: int = 24
FMIN: float = 20.0
FMAX: float = 16000.0
FREF: float = 440.0
N_BINS: int = 149  # number of bands the defaults give at 22050 Hz

DATASETS: tuple[str, ...] = ("midlevel", "soundtracks")

STORE_ARRAY = "spectrograms.npy"
STORE_INDEX = "index.csv"
STORE_STATS = "stats.json"
_INDEX_COLUMNS = ("clip_id", "start", "n_frames")
RESAMPLE_REPORT = "report.json"  # written by the resample stage, records its sample_rate


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
    _check_filterbank_params(sample_rate, frame_size, bands_per_octave, fmin, fmax)
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


def log_filtered_spectrogram(
    signal: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    frame_size: int = FRAME_SIZE,
    fps: float = FPS,
    bands_per_octave: int = BANDS_PER_OCTAVE,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> np.ndarray:
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
    _check_spectrogram_params(sample_rate, frame_size, fps, bands_per_octave, fmin, fmax)
    hop_length = sample_rate / float(fps)  # madmom: sample_rate / float(fps)
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


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_filterbank_params(
    sample_rate: Any, frame_size: Any, bands_per_octave: Any, fmin: Any, fmax: Any
) -> None:
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


def _check_spectrogram_params(
    sample_rate: Any, frame_size: Any, fps: Any, bands_per_octave: Any, fmin: Any, fmax: Any
) -> None:
    _check_filterbank_params(sample_rate, frame_size, bands_per_octave, fmin, fmax)
    if not (isinstance(fps, (int, float, np.number)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    if sample_rate / float(fps) < 1:
        raise ValueError(f"fps={fps} exceeds sample_rate={sample_rate}: hop would be < 1 sample")


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


def spectrogram_params(
    sample_rate: int = SAMPLE_RATE,
    frame_size: int = FRAME_SIZE,
    fps: float = FPS,
    bands_per_octave: int = BANDS_PER_OCTAVE,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> dict[str, Any]:
    """Validated, JSON-ready spectrogram parameters (as recorded in ``stats.json``).

    Parameters
    ----------
    sample_rate, frame_size, fps, bands_per_octave, fmin, fmax
        See :func:`log_filtered_spectrogram`.

    Returns
    -------
    dict
        The parameters with plain Python types, plus the derived ``hop_length``
        [samples].
    """
    _check_spectrogram_params(sample_rate, frame_size, fps, bands_per_octave, fmin, fmax)
    return {
        "sample_rate": int(sample_rate),
        "frame_size": int(frame_size),
        "fps": float(fps),
        "hop_length": sample_rate / float(fps),
        "bands_per_octave": int(bands_per_octave),
        "fmin": float(fmin),
        "fmax": float(fmax),
    }


# --------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------


class InvalidStoreError(ValueError):
    """A spectrogram store directory is incomplete or inconsistent."""


def _spectrogram_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("sample_rate", "frame_size", "fps", "bands_per_octave", "fmin", "fmax")
    return {k: params[k] for k in keys}


def _load_signal(path: Path) -> np.ndarray:
    signal = np.load(path, allow_pickle=False)
    if signal.ndim != 1 or not np.issubdtype(signal.dtype, np.floating):
        raise ValueError(f"expected a 1-D float signal, got {signal.dtype} {signal.shape}")
    return signal


def _signal_length(clip_id: str, path: Path) -> int:
    """Length of a .npy signal from its header alone (mmap reads no sample data)."""
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"clip {clip_id!r}: cannot read {path}: {exc}") from exc
    if header.ndim != 1 or not np.issubdtype(header.dtype, np.floating):
        raise ValueError(
            f"clip {clip_id!r} ({path}): expected a 1-D float signal, "
            f"got {header.dtype} {header.shape}"
        )
    return len(header)


def _compute_chunk(
    array_path: str,
    tasks: list[tuple[int, str, str, int, int]],
    params: dict[str, Any],
    on_clip_done: Callable[[], None] | None = None,
) -> list[tuple[int, int, float, float]]:
    """Worker: compute spectrograms, write them into the shared memmap, return stats.

    Writing in the worker (rather than sending arrays back) avoids pickling ~1 GB of
    spectrograms through pipes; the row ranges of different clips never overlap.
    """
    # No flush()/msync: it forces a synchronous disk write per call (it tripled the
    # serial run time). Pages written through a shared mapping live in the page cache
    # and outlive this process; the atomic rename guards against interrupted runs.
    out = np.load(array_path, mmap_mode="r+")
    kwargs = _spectrogram_kwargs(params)
    results = []
    try:
        for position, clip_id, path, start, n_frames in tasks:
            try:
                spec = log_filtered_spectrogram(_load_signal(Path(path)), **kwargs)
            except ValueError as exc:
                raise ValueError(f"clip {clip_id!r} ({path}): {exc}") from exc
            if spec.shape[0] != n_frames:  # signal file changed between the two passes
                raise RuntimeError(
                    f"clip {clip_id!r}: expected {n_frames} frames, got {spec.shape[0]}"
                )
            out[start : start + n_frames] = spec
            # Per-clip count/mean/sum of squared deviations in float64, merged later
            # with Chan's formula: stable for ~10^8 values. (No np.dot here: a BLAS
            # call wakes OpenBLAS's spinning threads, which slowed every later step.)
            mean = float(spec.mean(dtype=np.float64))
            deviation = spec.astype(np.float64) - mean
            results.append((position, spec.size, mean, float(np.square(deviation).sum())))
            if on_clip_done is not None:
                on_clip_done()
    finally:
        del out
    return results


def _merge_moments(parts: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """Combine (count, mean, M2) triples (Chan et al.'s parallel variance update)."""
    n, mean, m2 = 0, 0.0, 0.0
    for n_b, mean_b, m2_b in parts:
        total = n + n_b
        delta = mean_b - mean
        mean += delta * n_b / total
        m2 += m2_b + delta * delta * n * n_b / total
        n = total
    return n, mean, m2


def write_spectrogram_store(
    signal_paths: Mapping[str, Path | str],
    out_dir: Path | str,
    *,
    jobs: int = 0,
    progress: bool = True,
    sample_rate: int = SAMPLE_RATE,
    frame_size: int = FRAME_SIZE,
    fps: float = FPS,
    bands_per_octave: int = BANDS_PER_OCTAVE,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> dict[str, Any]:
    """Compute the spectrograms of a dataset and write them as one store.

    Parameters
    ----------
    signal_paths : Mapping[str, Path]
        ``clip_id -> .npy`` file holding a 1-D float32 mono signal at ``sample_rate``.
    out_dir : Path
        Store directory to create (replaced atomically if it exists).
    jobs : int
        Worker processes; 0 uses all available cores, 1 computes in this process.
    progress : bool
        Show a tqdm progress bar (on stderr).
    sample_rate, frame_size, fps, bands_per_octave, fmin, fmax
        Spectrogram parameters, see :func:`log_filtered_spectrogram`.

    Returns
    -------
    dict
        The content of ``stats.json``: ``mean``, ``std`` (population std over all
        frames and bins), ``n_frames``, ``n_bins``, ``n_clips`` and the parameters.

    Raises
    ------
    ValueError
        If there are no clips, a clip id cannot be stored, or a signal is invalid.
    """
    params = spectrogram_params(sample_rate, frame_size, fps, bands_per_octave, fmin, fmax)
    jobs = resolve_jobs(jobs)
    out_dir = Path(out_dir)
    if not signal_paths:
        raise ValueError(f"no clips to write to {out_dir}")
    clip_ids = sorted(signal_paths)  # stable order, independent of discovery order
    for clip_id in clip_ids:
        if not clip_id or clip_id != clip_id.strip() or any(c in clip_id for c in ",\"\r\n"):
            raise ValueError(f"clip id {clip_id!r} cannot be stored in {STORE_INDEX}")
    n_bins = logarithmic_filterbank(sample_rate, frame_size, bands_per_octave, fmin, fmax).shape[1]

    # Pass 1: frame counts from the .npy headers, to lay out the array before computing.
    hop_length = params["hop_length"]
    starts, counts, total = [], [], 0
    for clip_id in clip_ids:
        path = Path(signal_paths[clip_id])
        n_samples = _signal_length(clip_id, path)
        if n_samples < hop_length:
            raise ValueError(
                f"clip {clip_id!r} ({path}): {n_samples} samples, "
                f"shorter than one hop ({hop_length:g})"
            )
        starts.append(total)
        counts.append(n_frames_for(n_samples, sample_rate, fps))
        total += counts[-1]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Hidden sibling temp dir on the same filesystem, so the final rename is atomic
    # (mkdir rather than mkdtemp: the store should get umask permissions, not 0700).
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:12]}")
    tmp_dir.mkdir()
    try:
        array_path = tmp_dir / STORE_ARRAY
        np.lib.format.open_memmap(
            array_path, mode="w+", dtype=np.float32, shape=(total, n_bins)
        ).flush()

        tasks = [
            (i, clip_id, str(signal_paths[clip_id]), starts[i], counts[i])
            for i, clip_id in enumerate(clip_ids)
        ]
        moments = _run_tasks(str(array_path), tasks, params, jobs, progress, out_dir)
        n_values, mean, m2 = _merge_moments([moments[i] for i in range(len(tasks))])

        with open(tmp_dir / STORE_INDEX, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(_INDEX_COLUMNS)
            writer.writerows(zip(clip_ids, starts, counts))
        stats = {
            "mean": mean,
            "std": math.sqrt(m2 / n_values),
            "n_frames": total,
            "n_bins": int(n_bins),
            "n_clips": len(clip_ids),
            **params,
        }
        with open(tmp_dir / STORE_STATS, "w", encoding="utf-8") as f:
            json.dump(stats, f, indent=2)
            f.write("\n")
        _replace_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return stats


def _run_tasks(
    array_path: str,
    tasks: list[tuple[int, str, str, int, int]],
    params: dict[str, Any],
    jobs: int,
    progress: bool,
    out_dir: Path,
) -> dict[int, tuple[int, float, float]]:
    from tqdm.auto import tqdm

    moments: dict[int, tuple[int, float, float]] = {}
    bar = tqdm(
        total=len(tasks), desc=f"spectrograms {out_dir.name}", unit="clip", disable=not progress
    )
    with bar:
        if jobs == 1 or len(tasks) == 1:
            for position, *rest in _compute_chunk(array_path, tasks, params, lambda: bar.update(1)):
                moments[position] = tuple(rest)
            return moments
        # >= 4 chunks per worker balances load; <= 32 clips keeps the bar moving.
        chunk = max(1, min(32, math.ceil(len(tasks) / (jobs * 4))))
        chunks = [tasks[i : i + chunk] for i in range(0, len(tasks), chunk)]
        with ProcessPoolExecutor(max_workers=min(jobs, len(chunks))) as pool:
            futures = {pool.submit(_compute_chunk, array_path, c, params): len(c) for c in chunks}
            try:
                for future in as_completed(futures):
                    for position, *rest in future.result():
                        moments[position] = tuple(rest)
                    bar.update(futures[future])
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return moments


def _replace_dir(tmp_dir: Path, out_dir: Path) -> None:
    """Move a finished ``tmp_dir`` to ``out_dir``, replacing any previous store."""
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a directory")
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out_dir, old)
        os.replace(tmp_dir, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, out_dir)


def collect_signal_paths(dataset_dir: Path | str) -> dict[str, Path]:
    """Map clip ids to the ``<clip_id>.npy`` signal files of one resampled dataset.

    Parameters
    ----------
    dataset_dir : Path
        Directory holding the resampled signals of one dataset.

    Returns
    -------
    dict[str, Path]
        ``clip_id -> path``, sorted by clip id.
    """
    # Hidden files are temporaries of an interrupted atomic write, not clips.
    return {
        p.stem: p
        for p in sorted(Path(dataset_dir).glob("*.npy"))
        if p.is_file() and not p.name.startswith(".")
    }


def build_spectrogram_stores(
    resampled_dir: Path | str,
    out_dir: Path | str,
    *,
    datasets: tuple[str, ...] = DATASETS,
    jobs: int = 0,
    progress: bool = True,
    **spectrogram_kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """Write ``out_dir/<dataset>/`` stores for each dataset present in ``resampled_dir``.

    A dataset directory may be absent (e.g. a user with only one corpus); at least one
    must be present.

    Parameters
    ----------
    resampled_dir : Path
        Directory with one subdirectory of ``<clip_id>.npy`` signals per dataset.
    out_dir : Path
        Directory receiving one store per dataset.
    datasets : tuple of str
        Dataset subdirectory names to look for.
    jobs, progress
        See :func:`write_spectrogram_store`.
    **spectrogram_kwargs
        ``sample_rate``, ``frame_size``, ``fps``, ``bands_per_octave``, ``fmin``,
        ``fmax``.

    Returns
    -------
    dict[str, dict]
        ``dataset -> stats`` for each store written.

    Raises
    ------
    FileNotFoundError
        If none of the dataset directories exists.
    ValueError
        If a present dataset directory holds no ``.npy`` signals, or the resample
        stage's ``report.json`` records a sample rate other than ``sample_rate``.
    """
    resampled_dir, out_dir = Path(resampled_dir), Path(out_dir)
    _check_resampled_rate(resampled_dir, spectrogram_kwargs.get("sample_rate", SAMPLE_RATE))
    present = [name for name in datasets if (resampled_dir / name).is_dir()]
    if not present:
        raise FileNotFoundError(
            f"none of the dataset directories {list(datasets)} exists in {resampled_dir}"
        )
    results = {}
    for name in present:
        paths = collect_signal_paths(resampled_dir / name)
        if not paths:
            raise ValueError(f"{resampled_dir / name} holds no <clip_id>.npy signals")
        results[name] = write_spectrogram_store(
            paths, out_dir / name, jobs=jobs, progress=progress, **spectrogram_kwargs
        )
    return results


def _check_resampled_rate(resampled_dir: Path, sample_rate: int) -> None:
    """The signals carry no rate of their own; the resample stage's report does."""
    report_path = resampled_dir / RESAMPLE_REPORT
    if not report_path.is_file():
        return  # signals produced by other means: the caller vouches for the rate
    try:
        recorded = json.loads(report_path.read_text(encoding="utf-8")).get("sample_rate")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"cannot read the sample rate from {report_path}: {exc}") from exc
    if recorded is not None and recorded != sample_rate:
        raise ValueError(
            f"the signals in {resampled_dir} are at {recorded} Hz ({report_path}) but the "
            f"spectrogram filterbank is built for sample_rate={sample_rate} Hz"
        )


class SpectrogramStore:
    """Read-only, memory-mapped view of a store written by :func:`write_spectrogram_store`.

    Attributes
    ----------
    directory : Path
        The store directory.
    clip_ids : list of str
        Clip ids in storage (sorted) order.
    mean, std : float
        Dataset-wide spectrogram mean and standard deviation.
    n_bins : int
        Frequency bins per frame (149 with the default parameters).
    stats : dict
        Full content of ``stats.json`` (includes the spectrogram parameters).
    data : numpy.memmap
        All frames, shape ``(total_frames, n_bins)``, float32, read-only.
    """

    def __init__(
        self,
        directory: Path,
        data: np.ndarray,
        clip_ids: list[str],
        starts: np.ndarray,
        n_frames: np.ndarray,
        stats: dict[str, Any],
    ) -> None:
        self.directory = directory
        self.data = data
        self.clip_ids = clip_ids
        self.stats = stats
        self.mean = float(stats["mean"])
        self.std = float(stats["std"])
        self.n_bins = int(stats["n_bins"])
        self._starts = starts
        self._n_frames = n_frames
        self._position = {clip_id: i for i, clip_id in enumerate(clip_ids)}

    @classmethod
    def open(cls, directory: Path | str) -> SpectrogramStore:
        """Open a store directory, checking that its three files agree.

        Parameters
        ----------
        directory : Path
            Store directory.

        Returns
        -------
        SpectrogramStore

        Raises
        ------
        FileNotFoundError
            If the directory does not exist.
        InvalidStoreError
            If a file is missing or unreadable, or the array, index and stats disagree.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"spectrogram store {directory} does not exist")

        def fail(problem: str) -> InvalidStoreError:
            return InvalidStoreError(
                f"spectrogram store {directory}: {problem} (re-run the spectrogram stage)"
            )

        names = (STORE_ARRAY, STORE_INDEX, STORE_STATS)
        missing = [name for name in names if not (directory / name).is_file()]
        if missing:
            raise fail(f"missing {', '.join(missing)}; the store is incomplete")
        try:
            data = np.load(directory / STORE_ARRAY, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read {STORE_ARRAY}: {exc}") from exc
        try:
            stats = json.loads((directory / STORE_STATS).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read {STORE_STATS}: {exc}") from exc
        if not isinstance(stats, dict) or not {"mean", "std", "n_frames", "n_bins"} <= stats.keys():
            raise fail(f"{STORE_STATS} lacks mean/std/n_frames/n_bins")
        clip_ids, starts, counts = _read_index(directory / STORE_INDEX, fail)

        if data.ndim != 2 or data.dtype != np.float32:
            raise fail(
                f"{STORE_ARRAY} is {data.dtype} {data.shape}, expected float32 (frames, bins)"
            )
        if data.shape[1] != stats["n_bins"]:
            raise fail(
                f"{STORE_ARRAY} has {data.shape[1]} bins, {STORE_STATS} says {stats['n_bins']}"
            )
        if data.shape[0] != stats["n_frames"]:
            raise fail(
                f"{STORE_ARRAY} has {data.shape[0]} frames, {STORE_STATS} says {stats['n_frames']}"
            )
        expected_starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else counts
        if len(counts) and (np.any(counts < 1) or not np.array_equal(starts, expected_starts)):
            raise fail(f"{STORE_INDEX} rows are not contiguous, positive frame ranges")
        if int(counts.sum()) != data.shape[0]:
            raise fail(
                f"{STORE_INDEX} covers {int(counts.sum())} frames "
                f"but {STORE_ARRAY} has {data.shape[0]}"
            )
        return cls(directory, data, clip_ids, starts, counts, stats)

    def clip(self, clip_id: str) -> np.ndarray:
        """All frames of one clip, shape ``(n_frames, n_bins)`` (a read-only view).

        Raises
        ------
        KeyError
            If the clip is not in the store.
        """
        i = self._position.get(clip_id)
        if i is None:
            raise KeyError(f"clip {clip_id!r} is not in spectrogram store {self.directory}")
        start = int(self._starts[i])
        return self.data[start : start + int(self._n_frames[i])]

    def n_frames(self, clip_id: str) -> int:
        """Number of frames of one clip."""
        if clip_id not in self._position:
            raise KeyError(f"clip {clip_id!r} is not in spectrogram store {self.directory}")
        return int(self._n_frames[self._position[clip_id]])

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __contains__(self, clip_id: object) -> bool:
        return clip_id in self._position

    def __iter__(self) -> Iterator[str]:
        return iter(self.clip_ids)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Pickle (e.g. into DataLoader worker processes) by path: pickling the memmap
        # itself would copy the whole array.
        return (type(self).open, (str(self.directory),))

    def __repr__(self) -> str:
        return (
            f"SpectrogramStore({str(self.directory)!r}, clips={len(self)}, "
            f"frames={self.data.shape[0]}, n_bins={self.n_bins})"
        )


def _read_index(path: Path, fail: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise fail(f"cannot read {STORE_INDEX}: {exc}") from exc
    if not rows or tuple(rows[0]) != _INDEX_COLUMNS:
        raise fail(f"{STORE_INDEX} must start with the header {','.join(_INDEX_COLUMNS)}")
    clip_ids, starts, counts = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 3:
            raise fail(f"{STORE_INDEX} line {line} has {len(row)} fields, expected 3")
        try:
            starts.append(int(row[1]))
            counts.append(int(row[2]))
        except ValueError as exc:
            raise fail(f"{STORE_INDEX} line {line}: {exc}") from exc
        clip_ids.append(row[0])
    if len(set(clip_ids)) != len(clip_ids):
        raise fail(f"{STORE_INDEX} lists a clip id more than once")
    return clip_ids, np.asarray(starts, dtype=np.int64), np.asarray(counts, dtype=np.int64)
