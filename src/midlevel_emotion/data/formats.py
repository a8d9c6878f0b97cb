"""The published label files of both datasets: their formats, read strictly.

``annotations.csv`` and ``metadata.csv`` of the mid-level dataset and ``mean_ratings_set1.csv``
of Soundtracks Set 1 are read as published (header spellings, separators, byte-order mark,
CRLF); every problem is one :class:`CorpusError` naming the file, line and column.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
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
