"""One HTTP request of a download: resumed with ``Range``, streamed into the ``.part`` file.

Each attempt of :func:`~.transfer.fetch` is one :func:`_transfer`. It is bounded by
:class:`_Pace` (an overall deadline and a minimum rate over a sliding window, not just a
timeout per read), and sorts every failure into :class:`_TransientError` (worth retrying,
resuming from what arrived) or :class:`_PermanentError` (retrying will not fix it).
"""

from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

USER_AGENT = "midlevel-emotion-downloader/0.1 (+python-urllib)"


class _TransientError(Exception):
    """Failure worth retrying (truncation, timeout, reset, 5xx, too slow)."""


class _PermanentError(Exception):
    """Failure that retrying will not fix (404, refused, DNS, deadline passed)."""


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
