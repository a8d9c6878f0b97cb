"""The two datasets: their published file formats, readers and splits."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

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

# Header spellings in the published annotations.csv (after stripping stray spaces).
ANNOTATION_COLUMNS: dict[str, str] = {
    "melody": "melodiousness",
    "articulation": "articulation",
    "rhythm_stability": "rhythm_stability",
    "rhythm_complexity": "rhythm_complexity",
    "dissonance": "dissonance",
    "tonal_stability": "tonal_stability",
    "minorness": "minorness",
}
METADATA_COLUMNS: dict[str, str] = {
    "song id": "song_id",
    "Source": "source",
    "ID at file source": "soundtracks_number",
    "Artist": "artist",
    "Title": "title",
    "Album name": "album",
}
ANNOTATION_RANGE = (1.0, 10.0)  # pairwise comparisons converted to 1-10 scores
RATING_RANGE = (1.0, 9.0)  # Soundtracks expert ratings, 1-9 Likert means
SOUNDTRACKS_SOURCE = "soundtracks"

# Relative paths of the published layouts under data/raw/.
MIDLEVEL_DIR = "midlevel"
SOUNDTRACKS_DIR = "soundtracks"
ANNOTATIONS_CSV = "midlevel/metadata_annotations/annotations.csv"
METADATA_CSV = "midlevel/metadata_annotations/metadata.csv"
RATINGS_CSV = "soundtracks/mean_ratings_set1.csv"
MIDLEVEL_AUDIO_DIR = "midlevel/audio"
SOUNDTRACKS_AUDIO_DIR = "soundtracks/audio"
SYNTHETIC_TRUTH_JSON = "synthetic_truth.json"


class CorpusError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the reason."""


def _require_file(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: file not found")
    return path


def _read_text(path: Path) -> str:
    """Read a CSV as text, dropping a UTF-8 byte-order mark and normalising CRLF."""
    try:
        return _require_file(path).read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _check_values(frame: pd.DataFrame, path: Path, value_range: tuple[float, float]) -> None:
    """Reject NaN and out-of-range values, naming the first offending row and column."""
    values = frame.to_numpy(dtype=np.float64)
    low, high = value_range
    bad = ~np.isfinite(values) | (values < low) | (values > high)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise CorpusError(
            f"{path}: {int(bad.sum())} value(s) missing or outside [{low:g}, {high:g}], "
            f"first at id {frame.index[row]!r}, column {frame.columns[col]!r}: {values[row, col]!r}"
        )


def _numeric(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    try:
        return frame.apply(pd.to_numeric, errors="raise").astype(np.float64)
    except (ValueError, TypeError) as err:
        raise CorpusError(f"{path}: non-numeric value ({err})") from None


def _unique_index(frame: pd.DataFrame, path: Path, what: str) -> pd.DataFrame:
    duplicated = frame.index[frame.index.duplicated()]
    if len(duplicated):
        raise CorpusError(f"{path}: duplicate {what} {list(duplicated[:5])}")
    return frame


def read_annotations(path: Path) -> pd.DataFrame:
    """Read the mid-level annotations (``annotations.csv``).

    Parameters
    ----------
    path : Path
        Comma-separated file, first column ``song_id`` then the seven features, with stray
        spaces in the header names (as published).

    Returns
    -------
    pandas.DataFrame
        Index ``song_id`` (str), columns :data:`MIDLEVEL_FEATURES` in canonical order, values
        on the published 1-10 scale.
    """
    path = Path(path)
    frame = pd.read_csv(io.StringIO(_read_text(path)), dtype=str, skipinitialspace=True)
    frame.columns = [c.strip() for c in frame.columns]
    if "song_id" not in frame.columns:
        raise CorpusError(f"{path}: no 'song_id' column (header: {list(frame.columns)})")
    missing = [c for c in ANNOTATION_COLUMNS if c not in frame.columns]
    if missing:
        raise CorpusError(f"{path}: missing feature column(s) {missing} (header: {list(frame.columns)})")
    frame["song_id"] = frame["song_id"].str.strip()
    frame = frame.set_index("song_id")[list(ANNOTATION_COLUMNS)].rename(columns=ANNOTATION_COLUMNS)
    frame = _numeric(frame, path)[list(MIDLEVEL_FEATURES)]
    _check_values(frame, path, ANNOTATION_RANGE)
    return _unique_index(frame, path, "song_id")


def read_metadata(path: Path) -> pd.DataFrame:
    """Read the mid-level dataset's ``metadata.csv`` (semicolon-separated).

    Returns
    -------
    pandas.DataFrame
        Index ``song_id`` (str); columns ``source``, ``soundtracks_number`` (zero-padded
        str such as ``"007"`` for Soundtracks clips, else ``None``), ``artist``, ``title``,
        ``album``.
    """
    path = Path(path)
    frame = pd.read_csv(io.StringIO(_read_text(path)), sep=";", dtype=str, keep_default_na=False)
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in METADATA_COLUMNS if c not in frame.columns]
    if missing:
        raise CorpusError(f"{path}: missing column(s) {missing} (header: {list(frame.columns)}); "
                          "is it semicolon-separated?")
    frame = frame[list(METADATA_COLUMNS)].rename(columns=METADATA_COLUMNS)
    frame = frame.apply(lambda column: column.str.strip())
    frame = frame.set_index("song_id")
    frame["source"] = frame["source"].str.lower()
    is_soundtrack = frame["source"] == SOUNDTRACKS_SOURCE
    numbers: list[str | None] = []
    for song_id, raw, soundtrack in zip(frame.index, frame["soundtracks_number"], is_soundtrack):
        if not soundtrack:
            numbers.append(None)
            continue
        try:
            number = int(float(raw))
        except ValueError:
            raise CorpusError(f"{path}: song id {song_id!r} is a soundtracks clip but "
                              f"'ID at file source' is {raw!r}, not a number") from None
        if not 1 <= number <= 360:
            raise CorpusError(f"{path}: song id {song_id!r}: Soundtracks number {number} not in 1-360")
        numbers.append(f"{number:03d}")
    frame["soundtracks_number"] = pd.Series(numbers, index=frame.index, dtype=object)
    return _unique_index(frame, path, "song id")


def read_ratings(path: Path) -> pd.DataFrame:
    """Read the Soundtracks mean ratings (``mean_ratings_set1.csv``).

    Handles the published dialect: UTF-8 with byte-order mark, CRLF line ends, zero-padded
    ``number``. Older ``.xls`` copies are not read: convert them to CSV first.

    Returns
    -------
    pandas.DataFrame
        Index ``number`` (zero-padded str, ``"001"``), columns :data:`EMOTIONS` on the
        published 1-9 scale, plus ``target`` (the design category, str or None).
    """
    path = Path(path)
    if path.suffix.lower() in (".xls", ".xlsx"):
        raise CorpusError(f"{path}: spreadsheet copies are not read; save it as CSV "
                          "(mean_ratings_set1.csv) with columns number,valence,...,tender,TARGET")
    frame = pd.read_csv(io.StringIO(_read_text(path)), dtype=str)
    frame.columns = [c.strip().lower() for c in frame.columns]
    missing = [c for c in ("number",) + EMOTIONS if c not in frame.columns]
    if missing:
        raise CorpusError(f"{path}: missing column(s) {missing} (header: {list(frame.columns)})")
    try:
        frame["number"] = [f"{int(float(n)):03d}" for n in frame["number"]]
    except ValueError as err:
        raise CorpusError(f"{path}: non-numeric clip number ({err})") from None
    frame = frame.set_index("number")
    target = frame["target"].str.strip() if "target" in frame.columns else None
    ratings = _numeric(frame[list(EMOTIONS)], path)
    _check_values(ratings, path, RATING_RANGE)
    ratings["target"] = target if target is not None else None
    return _unique_index(ratings, path, "number")


def check_layout(raw_dir: Path) -> dict[str, bool]:
    """Check which datasets are complete under ``raw_dir``.

    A dataset is either entirely present (annotations or ratings plus audio directory) or
    entirely absent; a partial one is an error naming the missing paths, because training on
    it would silently lose clips or labels.

    Returns
    -------
    dict
        ``{"midlevel": bool, "soundtracks": bool}``.
    """
    raw_dir = Path(raw_dir)
    required = {
        "midlevel": [ANNOTATIONS_CSV, METADATA_CSV, MIDLEVEL_AUDIO_DIR],
        "soundtracks": [RATINGS_CSV, SOUNDTRACKS_AUDIO_DIR],
    }
    present: dict[str, bool] = {}
    for dataset, paths in required.items():
        exists = [(raw_dir / p).exists() for p in paths]
        if any(exists) and not all(exists):
            missing = [str(raw_dir / p) for p, e in zip(paths, exists) if not e]
            raise CorpusError(f"{raw_dir / dataset}: incomplete {dataset} dataset, missing {', '.join(missing)}")
        present[dataset] = all(exists)
    if not any(present.values()):
        raise CorpusError(f"{raw_dir}: neither dataset found; expected {raw_dir / RATINGS_CSV} "
                          f"(Soundtracks) and/or {raw_dir / ANNOTATIONS_CSV} (mid-level)")
    return present


# ---------------------------------------------------------------------------------------
# Labels on the paper's scale, and the splits of the protocol (Sections 4 and 6)

LABEL_SCALE = 10.0  # the paper divides both the 1-10 annotations and the 1-9 ratings by 10


@dataclass
class Labels:
    """Everything the training stages need to know about the clips, on the paper's scale.

    Attributes
    ----------
    midlevel : pandas.DataFrame or None
        Mid-level annotations / 10, index ``song_id``; None when the mid-level set is absent.
    metadata : pandas.DataFrame or None
        Mid-level metadata (source, soundtracks_number, artist, ...), index ``song_id``.
    emotions : pandas.DataFrame or None
        Soundtracks ratings / 10, index ``number`` (``"001"``); None when absent.
    soundtracks_midlevel : pandas.DataFrame or None
        Mid-level annotations / 10 of the Soundtracks clips, index ``number``.
    decisions : list of str
        Every clip left out, with its reason (never dropped silently).
    """

    midlevel: pd.DataFrame | None
    metadata: pd.DataFrame | None
    emotions: pd.DataFrame | None
    soundtracks_midlevel: pd.DataFrame | None
    decisions: list[str] = field(default_factory=list)

    @property
    def soundtracks_song_ids(self) -> dict[str, str]:
        """Soundtracks number -> mid-level song_id."""
        if self.metadata is None:
            return {}
        rows = self.metadata[self.metadata["soundtracks_number"].notna()]
        return dict(zip(rows["soundtracks_number"], rows.index))


def load_labels(raw_dir: Path) -> Labels:
    """Read whichever datasets are present under ``raw_dir`` and link them.

    A Soundtracks clip whose metadata row or annotation is missing keeps its emotion
    ratings but gets no mid-level label; this is recorded in ``decisions``.
    """
    raw_dir = Path(raw_dir)
    present = check_layout(raw_dir)
    labels = Labels(None, None, None, None)
    if present["midlevel"]:
        annotations = read_annotations(raw_dir / ANNOTATIONS_CSV)
        metadata = read_metadata(raw_dir / METADATA_CSV)
        no_meta = sorted(set(annotations.index) - set(metadata.index), key=_natural)
        for song_id in no_meta:
            labels.decisions.append(f"mid-level song {song_id}: annotated but has no metadata row; "
                                    "kept for training, excluded from the artist-disjoint test split")
        labels.midlevel = annotations / LABEL_SCALE
        labels.metadata = metadata
    if present["soundtracks"]:
        labels.emotions = read_ratings(raw_dir / RATINGS_CSV)[list(EMOTIONS)] / LABEL_SCALE
    if labels.midlevel is not None and labels.emotions is not None:
        song_ids = labels.soundtracks_song_ids
        numbers = [n for n in labels.emotions.index if song_ids.get(n) in labels.midlevel.index]
        for number in sorted(set(labels.emotions.index) - set(numbers)):
            labels.decisions.append(f"soundtracks clip {number}: no mid-level annotation found "
                                    "(metadata 'ID at file source'); used for A2E only")
        frame = labels.midlevel.loc[[song_ids[n] for n in numbers]]
        frame.index = pd.Index(numbers, name="number")
        labels.soundtracks_midlevel = frame
    return labels


def _natural(value: str) -> tuple:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def align(ids: list[str], available: set[str], what: str, decisions: list[str]) -> list[str]:
    """Keep the labelled ids that have a spectrogram, recording every one left out.

    Parameters
    ----------
    ids : list of str
        Labelled clip ids.
    available : set of str
        Clip ids that have audio (a spectrogram).
    what : str
        Dataset name for the messages.
    decisions : list of str
        Appended to: one line per excluded clip, in either direction.
    """
    kept = [i for i in ids if i in available]
    for i in sorted(set(ids) - available, key=_natural):
        decisions.append(f"{what} clip {i}: has labels but no usable audio (missing or failed to "
                         "decode, see data/resampled/report.json); excluded")
    for i in sorted(available - set(ids), key=_natural):
        decisions.append(f"{what} clip {i}: has audio but no labels; excluded")
    return kept


def artist_disjoint_split(metadata: pd.DataFrame, ids: list[str], *, test_fraction: float,
                          seed: int) -> tuple[list[str], list[str]]:
    """The A2Mid+ test split as Aljanaki & Soleymani made it: tracks of single-track artists.

    Tracks whose artist appears exactly once in the data are candidates, so no artist is in
    both train and test; ``test_fraction`` of all tracks are drawn from them (all of them when
    there are fewer, which the caller can see from the returned sizes).
    """
    rows = metadata.loc[[i for i in ids if i in metadata.index]]
    counts = rows["artist"].str.lower().value_counts()
    singles = [i for i in ids if i in rows.index and counts[rows.loc[i, "artist"].lower()] == 1]
    if not singles:
        raise CorpusError("artist-disjoint split: no artist appears exactly once in metadata.csv")
    rng = np.random.default_rng(seed)
    n_test = min(len(singles), max(1, round(test_fraction * len(ids))))
    test = sorted(rng.choice(singles, size=n_test, replace=False).tolist(), key=_natural)
    test_set = set(test)
    return [i for i in ids if i not in test_set], test


@dataclass(frozen=True)
class Split:
    """One run's split of the Soundtracks clips, shared by every model of that run."""

    seed: int
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def holdout(ids: list[str], *, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Hold out a random ``fraction`` of ``ids`` (at least one): returns ``(rest, held_out)``."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    ids = sorted(ids, key=_natural)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_held = max(1, round(fraction * len(ids)))
    if len(ids) - n_held < 2:
        raise ValueError(f"{len(ids)} clips are too few to hold out {fraction:g} of them")
    held = set(order[:n_held].tolist())
    return ([i for k, i in enumerate(ids) if k not in held], [i for k, i in enumerate(ids) if k in held])


def random_split(ids: list[str], *, seed: int, test_fraction: float,
                 validation_fraction: float) -> Split:
    """A random train/validation/test split; validation is carved out of train.

    ``validation_fraction`` is a share of the training part (early stopping only).
    """
    rest, test = holdout(ids, fraction=test_fraction, seed=seed)
    train, validation = holdout(rest, fraction=validation_fraction, seed=seed + 1)
    return Split(seed, tuple(train), tuple(validation), tuple(test))
