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
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..core.errors import DownloadError
from ..core.fileio import file_mode, write_json

__all__ = ["check_url", "fetch", "sha256_file"]

USER_AGENT = "midlevel-emotion-downloader/0.1 (+python-urllib)"

# Base delay between retries; doubles per attempt. Module-level so tests can set it to 0.
_RETRY_BACKOFF_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 30.0
_LOCK_POLL_SECONDS = 0.2


class _TransientError(Exception):
    """Failure worth retrying (truncation, timeout, reset, 5xx, too slow)."""


class _PermanentError(Exception):
    """Failure that retrying will not fix (404, refused, DNS, deadline passed)."""


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


@dataclass
class _Pace:
    """Deadline and minimum-rate bookkeeping for one ``fetch`` (across its retries)."""

    deadline_at: float | None
    min_bytes_per_second: float
    window_seconds: float
    window_start: float = field(default_factory=time.monotonic)
    window_bytes: int = 0

    def restart_window(self) -> None:
        self.window_start, self.window_bytes = time.monotonic(), 0

    def timeout(self, per_read: float) -> float:
        """The socket timeout: the per-read one, but never past the deadline."""
        if self.deadline_at is None:
            return per_read
        return max(0.05, min(per_read, self.deadline_at - time.monotonic()))

    def check_deadline(self, received: int) -> None:
        if self.deadline_at is not None and time.monotonic() > self.deadline_at:
            raise _PermanentError(f"not complete within download.deadline_seconds "
                                  f"({received} bytes received)")

    def check(self, new_bytes: int, received: int) -> None:
        self.check_deadline(received)
        now = time.monotonic()
        self.window_bytes += new_bytes
        elapsed = now - self.window_start
        if self.min_bytes_per_second > 0 and elapsed >= self.window_seconds:
            rate = self.window_bytes / elapsed
            if rate < self.min_bytes_per_second:
                raise _TransientError(
                    f"too slow: {rate:.0f} bytes/s over the last {elapsed:.0f} s, under "
                    f"download.min_bytes_per_second={self.min_bytes_per_second:g} "
                    f"({received} bytes received)")
            self.restart_window()


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


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """Return ``(start, total)`` from a Content-Range header; ``None`` where unknown."""
    match = _CONTENT_RANGE.match(value.strip()) if value else None
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    return start, total


def _describe_url_error(exc: urllib.error.URLError) -> tuple[bool, str]:
    """Classify a connection-level error as ``(transient, human reason)``."""
    reason = exc.reason
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return True, "connection timed out"
    if isinstance(reason, ConnectionRefusedError):
        return False, "connection refused (server down, or are you offline?)"
    if isinstance(reason, socket.gaierror):
        return False, f"host name could not be resolved (are you offline?): {reason}"
    if isinstance(reason, (ConnectionResetError, ConnectionAbortedError)):
        return True, f"connection reset: {reason}"
    if isinstance(reason, OSError):
        # Network unreachable, TLS failures, ...: retrying rarely helps.
        return False, f"network error (are you offline?): {reason}"
    return False, f"network error: {reason}"


def _open(url: str, part: Path, offset: int, timeout: float):
    """Send the request (resuming at ``offset``); returns the response or ``None`` when the
    server says the ``.part`` is already complete (HTTP 416 with a matching total)."""
    # identity: a compressed body would break both Range offsets and length checks.
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code == 416 and offset:
                # Our range starts at or past the end: the .part is complete (e.g. a run
                # killed before the rename) or stale and longer than the file.
                _, total = _parse_content_range(exc.headers.get("Content-Range"))
                if total is not None and total == offset:
                    return None
                part.unlink(missing_ok=True)
                raise _TransientError("server rejected resume (HTTP 416); restarting") from None
            message = f"HTTP {exc.code} {exc.reason}".strip()
            if exc.code in (408, 429) or exc.code >= 500:
                raise _TransientError(message) from None
            raise _PermanentError(message) from None
    except urllib.error.URLError as exc:
        transient, message = _describe_url_error(exc)
        raise (_TransientError if transient else _PermanentError)(message) from None
    except (TimeoutError, socket.timeout):
        raise _TransientError(f"timed out after {timeout:g} s") from None
    except ValueError as exc:  # http.client.InvalidURL and friends
        raise _PermanentError(f"malformed URL ({exc})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise _TransientError(f"connection error: {exc!r}") from None


def _transfer(url: str, part: Path, pace: _Pace, timeout: float, progress: bool,
              chunk_size: int, desc: str) -> bool:
    """Make one request and append/write the body to ``part``.

    Returns whether the server stated the full length (so a complete body is known to be
    complete). Raises ``_TransientError`` for retryable failures (``part`` keeps what
    arrived) and ``_PermanentError`` otherwise.
    """
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, part, offset, pace.timeout(timeout))
    if response is None:
        return True
    with response:
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if response.status == 206 and offset:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                # Appending at the wrong place would corrupt the file silently.
                part.unlink(missing_ok=True)
                raise _TransientError(
                    f"server resumed at byte {start} instead of {offset}; restarting")
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
        else:
            # 200 to a Range request means the server ignores ranges: start over.
            offset, total, mode = 0, length, "wb"
        with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                          unit_divisor=1024, desc=desc,
                                          disable=not progress) as bar:
            received = _stream(response, fh, bar, pace, offset, total, timeout, chunk_size)

    # http.client returns b"" (no exception) when the peer closes before Content-Length.
    if total is not None and received < total:
        raise _TransientError(_truncation_reason(received, total))
    if total is not None and received > total:
        part.unlink(missing_ok=True)
        raise _TransientError(f"received {received} bytes but expected {total}; restarting")
    return total is not None


def _stream(response, fh, bar, pace: _Pace, received: int, total: int | None,
            timeout: float, chunk_size: int) -> int:
    """Copy the body to ``fh``; returns the byte count. ``read1`` returns what has arrived,
    so a trickling server hands control back often enough to check the deadline and rate."""
    pace.restart_window()
    while True:
        try:
            chunk = response.read1(chunk_size)
        except http.client.IncompleteRead as exc:  # chunked bodies cut short
            fh.write(exc.partial)
            raise _TransientError(_truncation_reason(received + len(exc.partial), total)) from None
        except (TimeoutError, socket.timeout):
            raise _TransientError(
                f"timed out after {timeout:g} s with {received} bytes received") from None
        except (http.client.HTTPException, OSError) as exc:
            raise _TransientError(f"connection lost after {received} bytes: {exc!r}") from None
        if not chunk:
            return received
        fh.write(chunk)
        received += len(chunk)
        bar.update(len(chunk))
        pace.check(len(chunk), received)


def _truncation_reason(received: int, total: int | None) -> str:
    of_total = f" of {total}" if total is not None else ""
    return f"truncated transfer: got {received}{of_total} bytes"
