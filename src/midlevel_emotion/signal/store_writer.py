"""Writing spectrogram stores (the layout of :mod:`midlevel_emotion.signal.store`).

A store is laid out before it is filled: the frame counts come from the signals' ``.npy``
headers, the array is created as a memory map, and worker processes compute each clip's
spectrogram into its own rows. The dataset-wide mean and std are merged from each clip's
moments, and the store is written into a staging directory and renamed into place.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core.constants import SpectrogramSettings
from .features import log_filtered_spectrogram, logarithmic_filterbank, n_frames_for
from ..core.fileio import replace_dir, staging_dir, write_json
from ..core.parallel import map_tasks
from .store import INDEX_COLUMNS, STORE_ARRAY, STORE_INDEX, STORE_STATS

__all__ = ["write_spectrogram_store", "write_store_from_arrays"]


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


def _compute_clip(task: tuple[str, str, str, int, int, SpectrogramSettings]) -> tuple[int, float, float]:
    """Worker: compute one spectrogram, write it into the shared memmap, return its moments.

    Writing in the worker (rather than sending arrays back) avoids pickling ~1 GB of
    spectrograms through pipes; the row ranges of different clips never overlap.
    """
    array_path, clip_id, path, start, n_frames, settings = task
    try:
        spec = log_filtered_spectrogram(_load_signal(Path(path)), **settings.kwargs())
    except ValueError as exc:
        raise ValueError(f"clip {clip_id!r} ({path}): {exc}") from exc
    if spec.shape[0] != n_frames:  # signal file changed between the two passes
        raise RuntimeError(f"clip {clip_id!r}: expected {n_frames} frames, got {spec.shape[0]}")
    # No flush()/msync: it forces a synchronous disk write per call (it tripled the
    # serial run time). Pages written through a shared mapping live in the page cache
    # and outlive this process; the atomic rename guards against interrupted runs.
    out = np.load(array_path, mmap_mode="r+")
    out[start : start + n_frames] = spec
    del out
    return _moments(spec)


def _moments(spec: np.ndarray) -> tuple[int, float, float]:
    """One clip's count, mean and sum of squared deviations, in float64.

    Merged later with Chan's formula (:func:`_merge_moments`): stable for ~10^8 values.
    (No np.dot here: a BLAS call wakes OpenBLAS's spinning threads, which slowed every
    later step.)
    """
    mean = float(spec.mean(dtype=np.float64))
    deviation = spec.astype(np.float64) - mean
    return spec.size, mean, float(np.square(deviation).sum())


def _merge_moments(parts: Iterable[tuple[int, float, float]]) -> tuple[int, float, float]:
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
    settings: SpectrogramSettings = SpectrogramSettings(),
    *,
    jobs: int = 0,
    progress: bool = True,
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
    settings : SpectrogramSettings
        The spectrogram's parameters (see :func:`log_filtered_spectrogram`).

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
    out_dir = Path(out_dir)
    if not signal_paths:
        raise ValueError(f"no clips to write to {out_dir}")
    clip_ids = sorted(signal_paths)  # stable order, independent of discovery order
    for clip_id in clip_ids:
        _check_clip_id(clip_id)
    n_bins = logarithmic_filterbank(settings.sample_rate, settings.frame_size, settings.bands_per_octave,
                                    settings.fmin, settings.fmax).shape[1]

    # Pass 1: frame counts from the .npy headers, to lay out the array before computing.
    hop_length = settings.hop_length
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
        counts.append(n_frames_for(n_samples, settings.sample_rate, settings.fps))
        total += counts[-1]

    tmp_dir = staging_dir(out_dir)  # a sibling on the same filesystem: the final rename is atomic
    try:
        array_path = tmp_dir / STORE_ARRAY
        np.lib.format.open_memmap(array_path, mode="w+", dtype=np.float32, shape=(total, n_bins)).flush()
        tasks = [(str(array_path), clip_id, str(signal_paths[clip_id]), starts[i], counts[i], settings)
                 for i, clip_id in enumerate(clip_ids)]
        moments = map_tasks(_compute_clip, tasks, jobs=jobs, desc=f"spectrograms {out_dir.name}",
                            progress=progress)
        stats = _finish_store(tmp_dir, out_dir, clip_ids, starts, counts, _merge_moments(moments), int(n_bins),
                              settings.as_dict())
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return stats


def write_store_from_arrays(spectrograms: Mapping[str, np.ndarray], out_dir: Path | str,
                            parameters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write spectrograms already in memory as one store (the layout of :mod:`.store`).

    For stores made without audio (benchmarks, tests); the ``spectrogram`` stage uses
    :func:`write_spectrogram_store`.

    Parameters
    ----------
    spectrograms : Mapping[str, np.ndarray]
        ``clip_id -> (n_frames, n_bins)`` array; every clip has the same ``n_bins``.
    out_dir : Path
        Store directory to create (replaced atomically if it exists).
    parameters : Mapping, optional
        Recorded in ``stats.json`` next to the moments (e.g. the spectrogram's parameters).

    Returns
    -------
    dict
        The content of ``stats.json``.
    """
    out_dir = Path(out_dir)
    if not spectrograms:
        raise ValueError(f"no clips to write to {out_dir}")
    clip_ids = sorted(spectrograms)
    for clip_id in clip_ids:
        _check_clip_id(clip_id)
    arrays = [np.asarray(spectrograms[clip_id], dtype=np.float32) for clip_id in clip_ids]
    n_bins = arrays[0].shape[1] if arrays[0].ndim == 2 else None
    for clip_id, array in zip(clip_ids, arrays):
        if array.ndim != 2 or array.shape[1] != n_bins or len(array) == 0:
            width = "n_bins" if n_bins is None else n_bins
            raise ValueError(f"clip {clip_id!r}: spectrogram of shape {array.shape}, expected (n_frames > 0, {width})")
    counts = [len(array) for array in arrays]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
    tmp_dir = staging_dir(out_dir)
    try:
        data = np.lib.format.open_memmap(tmp_dir / STORE_ARRAY, mode="w+", dtype=np.float32,
                                         shape=(sum(counts), n_bins))
        for start, array in zip(starts, arrays):
            data[start:start + len(array)] = array
        data.flush()
        del data
        stats = _finish_store(tmp_dir, out_dir, clip_ids, starts, counts, _merge_moments(map(_moments, arrays)), n_bins,
                              dict(parameters or {}))
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return stats


def _check_clip_id(clip_id: str) -> None:
    if not clip_id or clip_id != clip_id.strip() or any(c in clip_id for c in ",\"\r\n"):
        raise ValueError(f"clip id {clip_id!r} cannot be stored in {STORE_INDEX}")


def _finish_store(tmp_dir: Path, out_dir: Path, clip_ids: list[str], starts: list[int], counts: list[int],
                  moments: tuple[int, float, float], n_bins: int, parameters: dict[str, Any]) -> dict[str, Any]:
    """Write the index and the statistics next to a filled array, then move the store into place."""
    with open(tmp_dir / STORE_INDEX, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(INDEX_COLUMNS)
        writer.writerows(zip(clip_ids, starts, counts))
    n_values, mean, m2 = moments
    stats = {
        "mean": mean,
        "std": math.sqrt(m2 / n_values),
        "n_frames": int(sum(counts)),
        "n_bins": n_bins,
        "n_clips": len(clip_ids),
        **parameters,
    }
    write_json(tmp_dir / STORE_STATS, stats)
    replace_dir(tmp_dir, out_dir)
    return stats
