"""HTTP downloads that resume, are bounded in time, locked, and tied to their source.

* A file at a final path is always complete: the body streams to ``<dest>.part`` and is
  renamed into place only after the transfer finished and was verified (the checksum when
  one is known; else the length the server announced; else the caller's ``verify``, e.g.
  every zip member's CRC). An unverified body stays ``.part`` and a re-run resumes it.
* Interrupted downloads resume with an HTTP ``Range`` request; servers without range
  support are handled by starting over.
* A transfer is bounded: an overall deadline and a minimum rate over a sliding window,
  not just a timeout per read (a server trickling one byte a second never times out).
* ``<dest>.lock`` (``flock``) serialises two processes fetching the same file.
* ``<dest>.source.json`` records the URL and checksum a download was made for; when either
  changes in params the file is fetched again. A file without that record was put there
  by hand and is used as is (verified against the checksum when there is one).

One attempt (a single request streamed into the ``.part`` file) is :mod:`.request`; this
module retries it, locks, verifies and puts the file in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

from ..core.errors import DownloadError
from ..core.fileio import file_mode, write_json
from .request import _Pace, _PermanentError, _TransientError, _transfer

__all__ = ["check_url", "fetch", "sha256_file"]

# Base delay between retries; doubles per attempt. Module-level so tests can set it to 0.
_RETRY_BACKOFF_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 30.0
_LOCK_POLL_SECONDS = 0.2


def _manual_hint(dest: Path) -> str:
    return f"or download it yourself and put it at {Path(dest).absolute()}"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Return the lower-case hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def check_url(url: str) -> str | None:
    """Why ``url`` cannot be fetched (not http(s), no host, bad port), or ``None``."""
    try:
        parts = urllib.parse.urlsplit(str(url).strip())
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        return f"malformed URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"malformed URL (scheme {parts.scheme!r}; use http:// or https://)"
    if not parts.hostname:
        return "malformed URL (no host name)"
    if any(ch.isspace() for ch in str(url).strip()):
        return "malformed URL (contains whitespace)"
    return None


@contextlib.contextmanager
def _locked(dest: Path, pace: _Pace) -> Iterator[None]:
    """Hold ``<dest>.lock`` exclusively; wait for another process until the deadline."""
    lock_path = dest.with_name(dest.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, file_mode())
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if pace.deadline_at is not None and time.monotonic() > pace.deadline_at:
                    raise DownloadError(
                        f"Could not download to {dest.absolute()}: another process is still "
                        f"downloading it (it holds {lock_path.name}) and did not finish within "
                        f"download.deadline_seconds; wait for it or stop it, then retry",
                        path=dest) from None
                time.sleep(_LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)  # closing releases the flock; the file stays (deleting it would race)


def _source_path(path: Path) -> Path:
    return path.with_name(path.name + ".source.json")


def _recorded_source(path: Path) -> dict | None:
    """What ``<path>.source.json`` says ``path`` was fetched for; ``None`` if no record."""
    try:
        return json.loads(_source_path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable record: treat as another source


def _usable_existing(dest: Path, source: dict, chunk_size: int) -> tuple[bool, str]:
    """Whether the file already at ``dest`` is what ``source`` asks for, and a note if not."""
    if not dest.is_file():
        return False, ""
    recorded = _recorded_source(dest)
    if recorded is not None and recorded != source:
        return False, (f" (the cached {dest.name} was fetched from {recorded.get('url')!r} "
                       f"with sha256 {recorded.get('sha256')}; params now say otherwise)")
    expected = source["sha256"]
    if expected is None:
        return True, ""  # ours for this URL, or put there by hand
    actual = sha256_file(dest, chunk_size)
    if actual == expected:
        if recorded is None:
            write_json(_source_path(dest), source)
        return True, ""
    # Keep the existing (wrong) file until a good one replaces it: it may be the user's.
    return False, f" (the existing file has sha256 {actual}, expected {expected})"


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    timeout_seconds: float = 30.0,
    retries: int = 3,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    deadline_seconds: float | None = None,
    min_bytes_per_second: float = 0.0,
    rate_window_seconds: float = 60.0,
    verify: Callable[[Path], str | None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` resumably, atomically and boundedly.

    Parameters
    ----------
    url
        HTTP(S) URL; redirects are followed.
    dest
        Final path. It only ever appears once the file is complete (and verified).
    sha256
        Expected hex SHA-256 of the file, or ``None`` to skip verification.
    timeout_seconds
        Socket timeout for connecting and for each read.
    retries
        How many times a failed transfer (truncated, timed out, reset, HTTP 5xx, too slow)
        is retried, resuming from the partial file, before giving up.
    progress
        Show a ``tqdm`` progress bar.
    chunk_size
        Most bytes taken per read.
    deadline_seconds
        Give up when the file is not complete this long after the call (waiting for another
        process's lock included); ``None`` for no deadline.
    min_bytes_per_second
        Abandon an attempt (and retry) when fewer bytes than this per second arrived over
        the last ``rate_window_seconds``; 0 disables the check.
    rate_window_seconds
        The window of the rate check.
    verify
        Called on the finished body when neither a checksum nor a length confirms it is
        complete; returns why it is not (then it stays ``.part``), or ``None``.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        One line naming the URL, the reason and where to put the file by hand: a malformed
        URL, HTTP errors, connection failures, exhausted retries, the deadline, a checksum
        mismatch, or another process holding the file's lock past the deadline. The partial
        file ``<dest>.part`` is kept (except on a checksum mismatch) so the next call resumes.
    """
    dest = Path(dest)
    problem = check_url(url)
    if problem:
        raise DownloadError(f"Could not download {url!r}: {problem}; fix the URL in params.yaml, "
                            f"{_manual_hint(dest)}", url=url, path=dest)
    source = {"url": url, "sha256": sha256.strip().lower() if sha256 else None}
    pace = _Pace(None if deadline_seconds is None else time.monotonic() + float(deadline_seconds),
                 float(min_bytes_per_second), float(rate_window_seconds))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest, pace):
        usable, note = _usable_existing(dest, source, chunk_size)
        if usable:
            return dest
        part = dest.with_name(dest.name + ".part")
        if part.exists() and _recorded_source(part) not in (None, source):
            part.unlink()  # a partial body of another URL or file: resuming would mix them
        write_json(_source_path(part), source)
        _download_part(url, part, dest, source["sha256"], pace, note,
                       dict(timeout=timeout_seconds, progress=progress, chunk_size=chunk_size,
                            retries=retries, verify=verify))
        _source_path(dest).unlink(missing_ok=True)  # never a stale record beside new bytes
        os.replace(part, dest)  # atomic on the same filesystem: dest is never partial
        os.replace(_source_path(part), _source_path(dest))
    return dest


def _download_part(url: str, part: Path, dest: Path, expected: str | None, pace: _Pace,
                   note: str, opts: dict) -> None:
    """Fill ``part`` completely (with retries) and verify it, or raise ``DownloadError``."""
    attempts = max(0, int(opts["retries"])) + 1
    reason = "no attempt made"
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1), _MAX_BACKOFF_SECONDS))
        try:
            pace.check_deadline(part.stat().st_size if part.exists() else 0)
            length_known = _transfer(url, part, pace, opts["timeout"], opts["progress"],
                                     opts["chunk_size"], desc=dest.name)
            if expected is None and not length_known and opts["verify"] is not None:
                problem = opts["verify"](part)
                if problem:
                    raise _TransientError(f"the server sent no length and the body is {problem}")
            break
        except _TransientError as exc:
            reason = str(exc)
        except _PermanentError as exc:
            kept = "; the partial file is kept and a re-run resumes it" if part.exists() else ""
            raise DownloadError(f"Could not download {url}: {exc}{kept}{note}; check the URL and "
                                f"your network and retry, {_manual_hint(dest)}",
                                url=url, path=dest) from None
    else:
        kept = f"; the partial file {part.name} is kept and a re-run resumes it"
        raise DownloadError(
            f"Could not download {url}: {reason} (gave up after {attempts} attempt"
            f"{'s' if attempts != 1 else ''}{kept if part.exists() else ''}){note}; "
            f"retry later, {_manual_hint(dest)}", url=url, path=dest)
    if expected is not None:
        actual = sha256_file(part, opts["chunk_size"])
        if actual != expected:
            # A wrong file cannot be fixed by resuming it: discard it entirely.
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"Could not download {url}: checksum mismatch, expected sha256 {expected} "
                f"but got {actual} (the download was deleted; the file may have changed "
                f"upstream); retry, {_manual_hint(dest)}", url=url, path=dest)
