"""CSV that a spreadsheet opens as data, never as formulas.

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run
as a formula by Excel, LibreOffice and Google Sheets ("CSV injection", OWASP). A file name
such as ``=HYPERLINK(...).mp3`` or an error message can be such a cell, so every *text*
cell that starts with one of them is written with a leading single quote, which
spreadsheets show as text. Numbers (``-0.12``) are written as numbers: only text is escaped.
No pandas or torch import, so the command line can use it at once.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Mapping, Sequence

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would evaluate; others as given."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def rows_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], *,
              float_format: str = "{:.6f}") -> str:
    """CSV text (header, then one line per row, ``\\n`` line ends) with text cells escaped.

    Floats are formatted with ``float_format``; a missing cell or ``None`` is empty.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([safe_cell(c) for c in columns])
    for row in rows:
        writer.writerow([_cell(row.get(c), float_format) for c in columns])
    return buffer.getvalue()


def _cell(value: Any, float_format: str) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return float_format.format(value)
    return safe_cell(value)


def frame_text(frame: Any, *, float_format: str = "%.6g") -> str:
    """A pandas DataFrame as CSV text (no index, ``\\n`` line ends), text cells escaped."""
    frame = frame.copy()
    frame.columns = [safe_cell(str(c)) for c in frame.columns]
    for column in frame.columns:
        if frame[column].dtype.kind not in "biufcmM":  # text (object or string) columns only
            frame[column] = frame[column].map(safe_cell)
    return frame.to_csv(index=False, float_format=float_format, lineterminator="\n")
