"""The two datasets: their published file formats, readers and splits."""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..core.errors import CorpusError

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


# Ids are file stems and table keys; the published ones are below 10 000. The bound stops a
# typo such as 1e30 (or a spreadsheet's serial number) from passing as an id.
MAX_ID = 999_999_999
N_SOUNDTRACKS = 360  # Soundtracks Stimulus Set 1: 001.mp3 ... 360.mp3

# What Python's csv module says (strict mode) -> what the user should look for.
_CSV_REASONS = {
    "unexpected end of data": "a quoted value is never closed (unclosed quote)",
    "expected after": "text follows a closing quote",
    "NUL": "contains a NUL byte; is it a text file?",
}


def _read_text(path: Path) -> str:
    """Read a CSV as text, dropping a UTF-8 byte-order mark and normalising CRLF."""
    if not Path(path).is_file():
        raise CorpusError(f"{path}: file not found")
    try:
        return Path(path).read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


@dataclass
class _Table:
    """A label file's data rows as stripped strings, with each row's line in the file."""

    path: Path
    names: list[str]  # header cells as written (stripped), for messages
    keys: list[str]  # header cells as looked up
    rows: list[list[str]]
    lines: list[int]

    def where(self, row: int, key: str) -> str:
        return f"{self.path}: line {self.lines[row]}, column {self.names[self.keys.index(key)]!r}"

    def column(self, key: str) -> list[str]:
        index = self.keys.index(key)
        return [row[index] for row in self.rows]

    def require(self, keys: Iterable[str], hint: str = "") -> None:
        missing = [key for key in keys if key not in self.keys]
        if missing:
            raise CorpusError(f"{self.path}: missing column(s) {missing} (header: {self.names}){hint}")


def _read_table(path: Path, *, sep: str, lower: bool = False) -> _Table:
    """Parse a label file strictly: quotes closed, every row as long as the header.

    ``lower`` looks columns up case-insensitively. Blank lines are skipped.
    """
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise CorpusError(f"{path}: empty file")
    reader = csv.reader(io.StringIO(text), delimiter=sep, strict=True, skipinitialspace=True)
    records: list[tuple[int, list[str]]] = []
    end = 0  # the file line the previous record ended on
    try:
        for fields in reader:
            if fields:
                records.append((end + 1, [field.strip() for field in fields]))
            end = reader.line_num
    except csv.Error as err:
        reason = next((r for key, r in _CSV_REASONS.items() if key in str(err)), str(err))
        raise CorpusError(f"{path}: line {end + 1}: {reason}") from None
    names = records[0][1]
    keys = [name.lower() for name in names] if lower else list(names)
    twice = sorted({name for name, key in zip(names, keys) if keys.count(key) > 1})
    if twice:
        raise CorpusError(f"{path}: column(s) {twice} appear more than once in the header")
    if len(records) == 1:
        raise CorpusError(f"{path}: header only, no data rows")
    for line, fields in records[1:]:
        if len(fields) != len(names):
            gap = (f"no value for {names[len(fields):]}" if len(fields) < len(names)
                   else f"{len(fields) - len(names)} value(s) beyond the last column")
            raise CorpusError(f"{path}: line {line}: {len(fields)} fields where the header has "
                              f"{len(names)} ({gap})")
        for name, field in zip(names, fields):
            if "\n" in field:
                raise CorpusError(f"{path}: line {line}, column {name!r}: a quoted value runs over "
                                  "several lines; is a closing quote missing?")
    return _Table(path, names, keys, [f for _, f in records[1:]], [line for line, _ in records[1:]])


def _whole_number(text: str, *, high: int = MAX_ID, decimal_ok: bool = False) -> int:
    """An id written as a whole number from 1 to ``high``; ``decimal_ok`` also takes ``7.0``."""
    if re.fullmatch(r"\d+(\.0*)?" if decimal_ok else r"\d+", text):
        value = int(text.split(".")[0])
        if 1 <= value <= high:
            return value
        raise ValueError(f"{text!r} is not in 1-{high}")
    if not text:
        raise ValueError("empty id")
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    kind = ("not finite" if not math.isfinite(number) else "not positive" if number <= 0
            else "not a whole number" if number != int(number) else "not written as digits only")
    raise ValueError(f"{text!r} is {kind}; ids are whole numbers from 1 to {high}")


def _ids(table: _Table, key: str, rows: Iterable[int], what: str, **number: Any) -> list[int]:
    """The whole numbers in column ``key`` of ``rows`` (see :func:`_whole_number`); each unique."""
    first_row: dict[int, int] = {}
    values = []
    for row in rows:
        try:
            value = _whole_number(table.rows[row][table.keys.index(key)], **number)
        except ValueError as err:
            raise CorpusError(f"{table.where(row, key)}: {err}") from None
        if value in first_row:
            raise CorpusError(f"{table.where(row, key)}: {what} {value} appears twice "
                              f"(lines {table.lines[first_row[value]]} and {table.lines[row]})")
        first_row[value] = row
        values.append(value)
    return values


def _score(text: str, low: float, high: float) -> tuple[float, str | None]:
    """A rating or annotation value, and what is wrong with it (None when nothing)."""
    if not text:
        return math.nan, "empty value"
    try:
        value = float(text)
    except ValueError:
        return math.nan, f"{text!r} is not a number"
    if not math.isfinite(value):
        return math.nan, f"{text!r} is not a finite number"
    if not low <= value <= high:
        return value, f"{text} is outside the published scale [{low:g}, {high:g}]"
    return value, None


def _scores(table: _Table, keys: list[str], value_range: tuple[float, float]) -> np.ndarray:
    """The columns ``keys`` as floats; the first bad value (and how many there are) is one error."""
    values = np.empty((len(table.rows), len(keys)))
    problems: list[str] = []
    for i, row in enumerate(table.rows):
        for j, key in enumerate(keys):
            values[i, j], problem = _score(row[table.keys.index(key)], *value_range)
            if problem:
                problems.append(f"{table.where(i, key)}: {problem}")
    if problems:
        more = f" ({len(problems)} bad values in all)" if len(problems) > 1 else ""
        raise CorpusError(problems[0] + more)
    return values


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

    Raises
    ------
    CorpusError
        One line naming the file, line and column of the first problem.
    """
    table = _read_table(path, sep=",")
    table.require(["song_id", *ANNOTATION_COLUMNS])
    _ids(table, "song_id", range(len(table.rows)), "song_id")
    values = _scores(table, list(ANNOTATION_COLUMNS), ANNOTATION_RANGE)
    frame = pd.DataFrame(values, index=pd.Index(table.column("song_id"), name="song_id"),
                         columns=list(ANNOTATION_COLUMNS.values()))
    return frame[list(MIDLEVEL_FEATURES)]


def read_metadata(path: Path) -> pd.DataFrame:
    """Read the mid-level dataset's ``metadata.csv`` (semicolon-separated).

    Returns
    -------
    pandas.DataFrame
        Index ``song_id`` (str); columns ``source``, ``soundtracks_number`` (zero-padded
        str such as ``"007"`` for Soundtracks clips, else ``None``), ``artist``, ``title``,
        ``album``.

    A Soundtracks number that two rows share is an error, like every problem of the readers
    (see :class:`CorpusError`).
    """
    table = _read_table(path, sep=";")
    table.require(METADATA_COLUMNS, "; is it semicolon-separated?")
    _ids(table, "song id", range(len(table.rows)), "song id")
    frame = pd.DataFrame({new: table.column(old) for old, new in METADATA_COLUMNS.items()})
    frame = frame.set_index("song_id")
    frame["source"] = frame["source"].str.lower()
    rows = np.flatnonzero(frame["source"].to_numpy() == SOUNDTRACKS_SOURCE).tolist()
    numbers: list[str | None] = [None] * len(frame)
    for row, number in zip(rows, _ids(table, "ID at file source", rows, "Soundtracks number",
                                      high=N_SOUNDTRACKS, decimal_ok=True)):
        numbers[row] = f"{number:03d}"
    frame["soundtracks_number"] = pd.Series(numbers, index=frame.index, dtype=object)
    return frame


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
    table = _read_table(path, sep=",", lower=True)
    table.require(["number", *EMOTIONS])
    numbers = _ids(table, "number", range(len(table.rows)), "clip number", high=N_SOUNDTRACKS,
                   decimal_ok=True)
    values = _scores(table, list(EMOTIONS), RATING_RANGE)
    frame = pd.DataFrame(values, index=pd.Index([f"{n:03d}" for n in numbers], name="number"),
                         columns=list(EMOTIONS))
    targets = table.column("target") if "target" in table.keys else [""] * len(frame)
    frame["target"] = pd.Series([t or None for t in targets], index=frame.index, dtype=object)
    return frame


def validate_raw(raw_dir: Path, *, shown_as: Path | None = None) -> dict[str, bool]:
    """Read every label file under ``raw_dir`` as the training stages will.

    The ``download`` stage calls this before it puts ``data/raw`` in place, so a bad label file
    stops the first stage that holds it, not the training stages after resampling.

    Parameters
    ----------
    raw_dir : Path
        A directory in the layout of :func:`check_layout`.
    shown_as : Path, optional
        Messages name the files under this directory instead of ``raw_dir`` (the stage builds
        ``data/raw`` in a temporary sibling that is gone when the message is read).

    Returns
    -------
    dict
        :func:`check_layout`'s ``{"midlevel": bool, "soundtracks": bool}``.
    """
    try:
        present = check_layout(raw_dir)
        load_labels(raw_dir)
    except CorpusError as err:
        if shown_as is None:
            raise
        raise CorpusError(str(err).replace(str(Path(raw_dir)), str(Path(shown_as)))) from None
    return present


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
