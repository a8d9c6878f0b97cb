"""The spectrogram store: one memory-mapped array per dataset (the ``spectrogram`` stage).

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
import json
import math
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core.constants import DATASETS, SpectrogramSettings
from ..core.errors import InvalidStoreError
from .features import log_filtered_spectrogram, logarithmic_filterbank, n_frames_for
from ..core.fileio import replace_dir, staging_dir, write_json
from ..core.parallel import map_tasks

__all__ = [
    "write_spectrogram_store",
    "write_store_from_arrays",
    "build_spectrogram_stores",
    "collect_signal_paths",
    "SpectrogramStore",
    "InvalidStoreError",
]

STORE_ARRAY = "spectrograms.npy"
STORE_INDEX = "index.csv"
STORE_STATS = "stats.json"
_INDEX_COLUMNS = ("clip_id", "start", "n_frames")
RESAMPLE_REPORT = "report.json"  # written by the resample stage, records its sample_rate


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
    """Write spectrograms already in memory as one store (the layout above).

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
        writer.writerow(_INDEX_COLUMNS)
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
    settings: SpectrogramSettings = SpectrogramSettings(),
    *,
    datasets: tuple[str, ...] = DATASETS,
    jobs: int = 0,
    progress: bool = True,
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
    settings : SpectrogramSettings
        The spectrogram's parameters.
    datasets : tuple of str
        Dataset subdirectory names to look for.
    jobs, progress
        See :func:`write_spectrogram_store`.

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
    _check_resampled_rate(resampled_dir, settings.sample_rate)
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
            paths, out_dir / name, settings, jobs=jobs, progress=progress
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
