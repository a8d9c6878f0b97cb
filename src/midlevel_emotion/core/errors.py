"""Every error the package reports on purpose, in one module.

All derive from :class:`MidlevelError`: a bad input, a failed download or run, something the
user can act on, whose message is one line naming the file, key, run or checkpoint and the
reason. The stage scripts (``stages/_common.run``) and the command line print such an error
as that one line; any other exception is a bug and keeps its traceback. Each class also
derives from the builtin a caller would expect (``ValueError`` for a bad value, ``KeyError``
for a missing key, ``RuntimeError`` for something that failed while running), so code that
catches those keeps working.
"""

from __future__ import annotations

from pathlib import Path


def one_line(text: object) -> str:
    """``text`` with every run of whitespace, newlines included, made one space."""
    return " ".join(str(text).split())


class MidlevelError(Exception):
    """Base of every error this package reports on purpose (one line, no traceback)."""


# ---------------------------------------------------------------------------------------
# Inputs: params, files, checkpoints


class ParamsError(MidlevelError, KeyError):
    """params.yaml is missing, unreadable or holds a bad value; the message names the file and the key."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class CorpusError(MidlevelError, ValueError):
    """A dataset file is missing or malformed.

    ``str(err)`` is one line naming the file and the reason; for a bad value also its line in
    the file and its column, as a text editor or spreadsheet shows them.
    """


class AudioError(MidlevelError, ValueError):
    """An audio file cannot be used; ``str(err)`` is one line naming the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class TooManyFailuresError(MidlevelError, RuntimeError):
    """More audio files failed to decode than the configured share allows.

    ``report`` is the stage's report (also in ``report.json``), with every failure's reason.
    """

    def __init__(self, message: str, report: dict | None = None) -> None:
        super().__init__(message)
        self.report = report or {}


class InvalidStoreError(MidlevelError, ValueError):
    """A spectrogram store directory is incomplete or inconsistent."""


class CheckpointError(MidlevelError, ValueError):
    """A checkpoint is missing or not usable; the message names the file and the reason."""


class MissingDataError(MidlevelError, RuntimeError):
    """A stage cannot run on the data present (e.g. no mid-level annotations)."""


class ResultsError(MidlevelError, ValueError):
    """A results folder is missing or malformed; the message names the file."""


class EvaluationError(MidlevelError, ValueError):
    """The inputs of the evaluation are inconsistent; the message names the files."""


class CheckError(MidlevelError, ValueError):
    """The inputs of a check cannot be read; the message names the file or revision."""


# ---------------------------------------------------------------------------------------
# Downloads


class DownloadError(MidlevelError, RuntimeError):
    """A dataset file could not be obtained; the message says how to fix it by hand.

    Parameters
    ----------
    message
        One line naming the URL (or archive), the reason, and the manual fallback.
    url
        The URL that failed, when there is one.
    path
        Where the user can place the file by hand, when there is one.
    """

    def __init__(self, message: str, *, url: str | None = None, path: Path | None = None):
        super().__init__(one_line(message))
        self.url = url
        self.path = path


class ArchiveError(DownloadError, ValueError):
    """An archive (or its description) is unusable. Also a ``ValueError``: the input is bad.

    ``reason`` holds the bare reason, without the file name, for callers that re-word it.
    """

    def __init__(self, message: str, *, reason: str = "", url: str | None = None,
                 path: Path | None = None):
        super().__init__(message, url=url, path=path)
        self.reason = one_line(reason or message)


class CorruptArchiveError(ArchiveError):
    """The archive is not a readable zip file (truncated, HTML error page, bad CRC)."""


class UnsafeArchiveError(ArchiveError):
    """A member would be written outside the target, over another member, or is a bomb."""


# ---------------------------------------------------------------------------------------
# Running


class GridError(MidlevelError, RuntimeError):
    """A run of the grid failed where it ran (a worker or a Slurm job); names the run."""


class CLIError(MidlevelError):
    """A failure of ``midlevel-emotion`` to report as one line on stderr, with an exit status
    (2: usage or input error, the default; 1: failure)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(one_line(message))
        self.code = code


__all__ = ["ArchiveError", "AudioError", "CLIError", "CheckError", "CheckpointError", "CorpusError",
           "CorruptArchiveError", "DownloadError", "EvaluationError", "GridError", "InvalidStoreError",
           "MidlevelError", "MissingDataError", "ParamsError", "ResultsError", "TooManyFailuresError",
           "UnsafeArchiveError", "one_line"]
