"""The spectrogram store: one memory-mapped array per dataset, its layout and its reader.

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

:mod:`midlevel_emotion.signal.store_writer` writes stores; the ``spectrogram`` stage
(:mod:`midlevel_emotion.signal.spectrogram_stage`) writes one per dataset.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InvalidStoreError

__all__ = ["SpectrogramStore", "InvalidStoreError"]

STORE_ARRAY = "spectrograms.npy"
STORE_INDEX = "index.csv"
STORE_STATS = "stats.json"
INDEX_COLUMNS = ("clip_id", "start", "n_frames")


class SpectrogramStore:
    """Read-only, memory-mapped view of a store written by
    :func:`midlevel_emotion.signal.store_writer.write_spectrogram_store`.

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
    if not rows or tuple(rows[0]) != INDEX_COLUMNS:
        raise fail(f"{STORE_INDEX} must start with the header {','.join(INDEX_COLUMNS)}")
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
