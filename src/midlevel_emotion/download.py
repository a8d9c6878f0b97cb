"""Fetch, verify and unpack the published datasets (or adopt a local copy).

Everything here is standard library (plus ``tqdm`` for progress bars) so that the
download stage has no heavyweight dependencies. The guarantees the pipeline relies on:

* A file at a final path is always complete: downloads stream to ``<dest>.part`` and are
  renamed into place (atomically) only after the transfer finished and the checksum, when
  known, matched. Extraction goes through a temporary directory the same way.
* Interrupted downloads resume with an HTTP ``Range`` request; servers without range
  support are handled by starting over.
* Every failure is a :class:`DownloadError` whose one-line message names the URL, the
  reason, and the exact path where the user may put the file by hand instead (the
  hosts are sometimes unreachable, e.g. behind a firewall).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm.auto import tqdm

from .corpus import validate_raw
from .synthetic import generate_corpus

__all__ = [
    "ArchiveError",
    "CorruptArchiveError",
    "DownloadError",
    "UnsafeArchiveError",
    "copy_local",
    "download_archives",
    "extract_zip",
    "fetch",
    "prepare_raw",
    "sha256_file",
]

ARCHIVE_SUBDIR = "_archives"
USER_AGENT = "midlevel-emotion-downloader/0.1 (+python-urllib)"

# Base delay between retries; doubles per attempt. Module-level so tests can set it to 0.
_RETRY_BACKOFF_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 30.0

# Junk that macOS / Windows zip tools add; ignoring it keeps the "single wrapping folder"
# detection working and keeps the raw directory clean.
_JUNK_TOP_LEVEL = {"__MACOSX"}
_JUNK_NAMES = {".DS_Store", "Thumbs.db"}


class DownloadError(RuntimeError):
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
        # Collapse whitespace so the message is always exactly one line (log-friendly).
        super().__init__(_one_line(message))
        self.url = url
        self.path = path


class ArchiveError(DownloadError, ValueError):
    """An archive cannot be extracted. Also a ``ValueError``: the input itself is bad."""


class CorruptArchiveError(ArchiveError):
    """The archive is not a readable zip file (truncated, HTML error page, bad CRC)."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would be written outside the target directory ("zip slip")."""


class _TransientError(Exception):
    """Failure worth retrying (truncation, timeout, reset, 5xx); message is the reason."""


class _PermanentError(Exception):
    """Failure that retrying will not fix (404, refused, DNS); message is the reason."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _manual_hint(dest: Path) -> str:
    return f"or download it yourself and put it at {Path(dest).absolute()}"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Return the hex SHA-256 digest of a file, read in chunks.

    Parameters
    ----------
    path
        File to hash.
    chunk_size
        Bytes per read; bounded so huge archives do not need to fit in memory.

    Returns
    -------
    str
        Lower-case hexadecimal digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- fetch


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    timeout_seconds: float = 30.0,
    retries: int = 3,
    progress: bool = True,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest`` resumably and atomically, optionally verifying it.

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
        How many times a failed transfer (truncated, timed out, reset, HTTP 5xx) is
        retried, resuming from the partial file, before giving up.
    progress
        Show a ``tqdm`` progress bar.
    chunk_size
        Bytes read per iteration.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        On HTTP errors, connection failures, exhausted retries or a checksum mismatch.
        The partial file ``<dest>.part`` is kept (except on checksum mismatch) so the next
        call resumes.
    """
    dest = Path(dest)
    expected = sha256.strip().lower() if sha256 else None
    existing_note = ""
    if dest.is_file():
        if expected is None:
            return dest
        actual = sha256_file(dest, chunk_size)
        if actual == expected:
            return dest
        # Keep the existing (wrong) file until a good one replaces it: it may be the
        # user's, and deleting it would not make an offline run succeed either.
        existing_note = f" (the existing file has sha256 {actual}, expected {expected})"

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempts = max(0, int(retries)) + 1
    reason = "no attempt made"
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1), _MAX_BACKOFF_SECONDS))
        try:
            _transfer(url, part, timeout_seconds, progress, chunk_size, desc=dest.name)
            break
        except _TransientError as exc:
            reason = str(exc)
        except _PermanentError as exc:
            raise DownloadError(
                f"Could not download {url}: {exc}{existing_note}; check the URL and your "
                f"network and retry, {_manual_hint(dest)}",
                url=url,
                path=dest,
            ) from None
    else:
        kept = f"; the partial file {part.name} is kept and a re-run resumes it"
        raise DownloadError(
            f"Could not download {url}: {reason} (gave up after {attempts} attempt"
            f"{'s' if attempts != 1 else ''}{kept if part.exists() else ''}){existing_note}; "
            f"retry later, {_manual_hint(dest)}",
            url=url,
            path=dest,
        )

    if expected is not None:
        actual = sha256_file(part, chunk_size)
        if actual != expected:
            # A wrong file cannot be fixed by resuming it: discard it entirely.
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"Could not download {url}: checksum mismatch, expected sha256 {expected} "
                f"but got {actual} (the download was deleted; the file may have changed "
                f"upstream); retry, {_manual_hint(dest)}",
                url=url,
                path=dest,
            )
    os.replace(part, dest)  # atomic on the same filesystem: dest is never partial
    return dest


_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """Return ``(start, total)`` from a Content-Range header; ``None`` where unknown."""
    if not value:
        return None, None
    match = _CONTENT_RANGE.match(value.strip())
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


def _transfer(
    url: str, part: Path, timeout: float, progress: bool, chunk_size: int, desc: str
) -> None:
    """Make one request and append/write the body to ``part``.

    Raises ``_TransientError`` for retryable failures (``part`` keeps what arrived) and
    ``_PermanentError`` otherwise. Returns normally only when the body is complete.
    """
    offset = part.stat().st_size if part.exists() else 0
    # identity: a compressed body would break both Range offsets and length checks.
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code == 416 and offset:
                # Our range starts at or past the end: the .part is complete (e.g. a run
                # killed before the rename) or stale and longer than the file.
                _, total = _parse_content_range(exc.headers.get("Content-Range"))
                if total is not None and total == offset:
                    return
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
    except (http.client.HTTPException, OSError) as exc:
        raise _TransientError(f"connection error: {exc!r}") from None

    with response:
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if response.status == 206 and offset:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:
                # Appending at the wrong place would corrupt the file silently.
                part.unlink(missing_ok=True)
                raise _TransientError(
                    f"server resumed at byte {start} instead of {offset}; restarting"
                )
            if total is None and length is not None:
                total = offset + length
            mode = "ab"
        else:
            # 200 to a Range request means the server ignores ranges: start over.
            offset, total, mode = 0, length, "wb"

        received = offset
        with (
            open(part, mode) as fh,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(chunk_size)
                except http.client.IncompleteRead as exc:  # chunked bodies cut short
                    fh.write(exc.partial)
                    received += len(exc.partial)
                    raise _TransientError(_truncation_reason(received, total)) from None
                except (TimeoutError, socket.timeout):
                    raise _TransientError(
                        f"timed out after {timeout:g} s with {received} bytes received"
                    ) from None
                except (http.client.HTTPException, OSError) as exc:
                    raise _TransientError(
                        f"connection lost after {received} bytes: {exc!r}"
                    ) from None
                if not chunk:
                    break
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))

    # http.client returns b"" (no exception) when the peer closes before Content-Length.
    if total is not None and received < total:
        raise _TransientError(_truncation_reason(received, total))
    if total is not None and received > total:
        part.unlink(missing_ok=True)
        raise _TransientError(f"received {received} bytes but expected {total}; restarting")


def _truncation_reason(received: int, total: int | None) -> str:
    of_total = f" of {total}" if total is not None else ""
    return f"truncated transfer: got {received}{of_total} bytes"


# --------------------------------------------------------------------------- extract


def _is_junk(parts: tuple[str, ...]) -> bool:
    return bool(parts) and (parts[0] in _JUNK_TOP_LEVEL or parts[-1] in _JUNK_NAMES)


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """Validated path components of a zip member; raises on anything escaping the root."""
    unsafe = (
        name.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", name) is not None
        or "\x00" in name
    )
    parts = tuple(p for p in re.split(r"[/\\]+", name) if p not in ("", "."))
    if unsafe or ".." in parts:
        raise UnsafeArchiveError(
            f"Refusing to extract {archive}: member {name!r} would be written outside the "
            f"target directory (absolute path or '..'; possible 'zip slip')"
        )
    return parts


def extract_zip(
    archive: Path, dest_dir: Path, *, strip_single_top_dir: bool = True
) -> list[Path]:
    """Extract a zip into ``dest_dir`` safely, merging with what is already there.

    Parameters
    ----------
    archive
        The ``.zip`` file.
    dest_dir
        Target directory (created if needed). Existing files with the same relative
        path are replaced; other existing files are kept, so several archives can fill
        one directory (the mid-level audio and annotation archives both go to
        ``midlevel/``).
    strip_single_top_dir
        Drop a wrapping top-level folder: when every member lives under one top-level
        folder *and that folder contains a subfolder* (OSF zips often wrap a whole layout
        such as ``audio/`` + files in one folder). A single top-level folder holding only
        files is kept, because it is the layout itself (``metadata_annotations/*.csv``,
        ``audio/*.mp3``). ``False`` never strips.

    Returns
    -------
    list[Path]
        The extracted files, at their final paths in ``dest_dir``, sorted.

    Raises
    ------
    UnsafeArchiveError
        A member has an absolute path or ``..`` component ("zip slip"); nothing is
        written.
    CorruptArchiveError
        The archive is not a valid zip or its data fail the CRC check; nothing is
        written to ``dest_dir``.
    """
    archive = Path(archive)
    dest_dir = Path(dest_dir)
    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CorruptArchiveError(
            f"Cannot extract {archive}: not a valid zip file ({exc})"
        ) from None

    with zf:
        # Validate every name before writing anything.
        members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        for info in zf.infolist():
            parts = _member_parts(archive, info.filename)
            if parts and not _is_junk(parts):
                members.append((info, parts))
        file_parts = [parts for info, parts in members if not info.is_dir()]
        if not file_parts:
            raise CorruptArchiveError(f"Cannot extract {archive}: the archive contains no files")

        # A lone top folder is a wrapper only if it has subfolders; if it holds just
        # files it *is* the layout (metadata_annotations/, audio/) and must stay.
        single_top = len({parts[0] for _, parts in members}) == 1
        has_subfolder = any(
            len(parts) > 2 or (info.is_dir() and len(parts) == 2) for info, parts in members
        )
        strip = 1 if strip_single_top_dir and single_top and has_subfolder else 0
        final_files = sorted(dest_dir.joinpath(*parts[strip:]) for parts in file_parts)

        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        # Same parent -> same filesystem, so the moves below are cheap renames.
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.extracting-", dir=dest_dir.parent))
        try:
            for info, parts in members:
                target = tmp.joinpath(*parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                    raise CorruptArchiveError(
                        f"Cannot extract {archive}: member {info.filename!r} is damaged ({exc})"
                    ) from None
            root = tmp.joinpath(*next(iter(members))[1][:strip]) if strip else tmp
            dest_dir.mkdir(parents=True, exist_ok=True)
            _merge_tree(root, dest_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final_files


def _merge_tree(src: Path, dst: Path) -> None:
    """Move the contents of ``src`` into existing directory ``dst`` (renames, no copies)."""
    for entry in src.iterdir():
        target = dst / entry.name
        if entry.is_dir():
            if target.is_dir():
                _merge_tree(entry, target)
                continue
            if target.exists():
                target.unlink()
            os.replace(entry, target)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)  # each file appears complete or not at all


# --------------------------------------------------------------------------- archives


def _archive_field(spec: Mapping[str, Any], key: str, index: int) -> Any:
    if key not in spec or spec[key] in (None, ""):
        label = spec.get("name", f"#{index}")
        raise ValueError(f"Dataset archive {label!r} is missing the required key {key!r}")
    return spec[key]


def _relative_subdir(value: str, name: str, key: str) -> PurePosixPath:
    path = PurePosixPath(str(value).replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(
            f"Dataset archive {name!r}: {key}={value!r} must be a relative path without '..'"
        )
    return path


def download_archives(
    archives: list[dict[str, Any]],
    raw_dir: Path,
    *,
    progress: bool = True,
    archive_dir: Path | None = None,
) -> None:
    """Download every dataset archive into ``raw_dir`` and extract it.

    Parameters
    ----------
    archives
        One mapping per archive with keys ``name``, ``url``, ``sha256`` (hex string or
        ``None``), ``extract_to`` (subdirectory of ``raw_dir``, e.g. ``"midlevel"``),
        optional ``kind`` (``"zip"``, the default, or ``"file"``: place the download
        as ``raw_dir/extract_to/<filename>``, which requires the ``filename`` key) and
        optional ``strip_top_dir`` (bool, default ``True``; see :func:`extract_zip`).
    raw_dir
        Root of the raw data; archives are extracted into its subdirectories.
    progress
        Show progress bars.
    archive_dir
        Where zip archives are kept as ``<archive_dir>/<name>.zip`` so that a re-run
        skips finished downloads (and resumes unfinished ones). Default
        ``raw_dir/_archives``; point it outside a DVC output (which DVC deletes before
        re-running a stage) to keep the archives across runs.

    Raises
    ------
    DownloadError
        If any download fails (all are attempted first, and the message lists, for each
        failed one, the URL, reason and where to put the file by hand) or an archive
        cannot be extracted. A corrupt cached archive is renamed to ``*.corrupt`` so the
        next run downloads it again.
    ValueError
        If an archive description is malformed.
    """
    raw_dir = Path(raw_dir)
    archive_dir = Path(archive_dir) if archive_dir is not None else raw_dir / ARCHIVE_SUBDIR
    plan: list[tuple[str, str, Path, Path, dict[str, Any]]] = []
    for index, spec in enumerate(archives):
        name = str(_archive_field(spec, "name", index))
        url = str(_archive_field(spec, "url", index))
        _relative_subdir(name, name, "name")
        subdir = _relative_subdir(_archive_field(spec, "extract_to", index), name, "extract_to")
        target_dir = raw_dir / subdir
        kind = spec.get("kind") or "zip"
        if kind == "zip":
            filename = name if name.lower().endswith(".zip") else f"{name}.zip"
            local = archive_dir / filename
        elif kind == "file":
            filename = str(_archive_field(spec, "filename", index))
            local = target_dir / _relative_subdir(filename, name, "filename")
        else:
            raise ValueError(
                f"Dataset archive {name!r}: unknown kind {kind!r} (use 'zip' or 'file')"
            )
        plan.append((name, url, local, target_dir, dict(spec, kind=kind)))

    # Download everything before extracting anything: an offline user then learns about
    # every file to place by hand from one error instead of one per run.
    failures: list[tuple[str, DownloadError]] = []
    for name, url, local, target_dir, spec in plan:
        try:
            fetch(url, local, sha256=spec.get("sha256"), progress=progress)
        except DownloadError as exc:
            after = ""
            if spec["kind"] == "zip":
                after = f" (a re-run then extracts it into {target_dir.absolute()})"
            failures.append((f"[{name}] {exc}{after}", exc))
    if failures:
        summary = f"{len(failures)} of {len(plan)} dataset downloads failed: "
        first = failures[0][1]
        raise DownloadError(
            summary + " | ".join(text for text, _ in failures), url=first.url, path=first.path
        )

    for name, url, local, target_dir, spec in plan:
        if spec["kind"] != "zip":
            continue
        try:
            strip = bool(spec.get("strip_top_dir", True))
            extract_zip(local, target_dir, strip_single_top_dir=strip)
        except CorruptArchiveError as exc:
            # Move it aside so a re-run does not "skip" a broken download forever.
            corrupt = local.with_name(local.name + ".corrupt")
            os.replace(local, corrupt)
            raise CorruptArchiveError(
                f"[{name}] {exc}; moved it to {corrupt.absolute()} - re-run to download {url} "
                f"again, {_manual_hint(local)}",
                url=url,
                path=local,
            ) from None


# --------------------------------------------------------------------------- local copy


def _link_or_copy(src: Path, dst: Path) -> None:
    """Place ``src`` at ``dst`` atomically, hard-linking when possible (no extra disk)."""
    if dst.exists():
        try:
            if os.path.samefile(src, dst):
                return
        except OSError:
            pass
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        # Different filesystem, or links unsupported (FAT, some network mounts).
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _copy_tree(src: Path, dst: Path) -> None:
    for root, dirs, files in os.walk(src):
        dirs.sort()
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for fname in sorted(files):
            if fname in _JUNK_NAMES:
                continue
            _link_or_copy(Path(root) / fname, dst / rel / fname)


def copy_local(midlevel_dir: Path | None, soundtracks_dir: Path | None, raw_dir: Path) -> None:
    """Adopt datasets the user already has into ``raw_dir`` (source ``local``).

    Files are hard-linked when ``raw_dir`` is on the same filesystem (instant, no extra
    space) and copied otherwise; existing files in the targets are replaced, others
    kept.

    Parameters
    ----------
    midlevel_dir
        The user's Mid-level Perceptual Features directory (with ``audio/`` and
        ``metadata_annotations/``), copied to ``raw_dir/midlevel``; ``None`` to skip.
    soundtracks_dir
        The user's Soundtracks Set 1 directory (``mean_ratings_set1.csv``, ``audio/``),
        copied to ``raw_dir/soundtracks``; ``None`` to skip.
    raw_dir
        Root of the raw data.

    Raises
    ------
    FileNotFoundError
        A given directory does not exist.
    NotADirectoryError
        A given path is not a directory.
    ValueError
        Both are ``None``, a directory is empty, or a source overlaps its target.
    """
    raw_dir = Path(raw_dir)
    pairs: Iterable[tuple[str, Path | None]] = (
        ("midlevel", midlevel_dir),
        ("soundtracks", soundtracks_dir),
    )
    given = [(sub, Path(src).expanduser()) for sub, src in pairs if src is not None]
    if not given:
        raise ValueError("copy_local needs at least one of midlevel_dir or soundtracks_dir")
    # Check all inputs before copying anything, so a typo does not leave half a setup.
    for sub, src in given:
        if not src.exists():
            raise FileNotFoundError(
                f"The {sub} dataset directory {src.absolute()} does not exist; check the path "
                f"you configured for it"
            )
        if not src.is_dir():
            raise NotADirectoryError(f"The {sub} dataset path {src.absolute()} is not a directory")
        if not any(p.is_file() for p in src.rglob("*")):
            raise ValueError(f"The {sub} dataset directory {src.absolute()} contains no files")
        target = (raw_dir / sub).resolve()
        source = src.resolve()
        if target == source:
            continue
        if source in target.parents or target in source.parents:
            raise ValueError(
                f"The {sub} dataset directory {source} overlaps its destination {target}"
            )
    for sub, src in given:
        target = raw_dir / sub
        if target.resolve() == src.resolve():
            continue  # already in place
        _copy_tree(src, target)


# ---------------------------------------------------------------------------------------
# The download stage


def prepare_raw(source: str, raw_dir: Path, params: dict, *, progress: bool = True) -> dict[str, bool]:
    """The ``download`` stage: fill ``raw_dir`` with the datasets in their published layout.

    Parameters
    ----------
    source : {"synthetic", "download", "local"}
        ``synthetic`` generates the embedded corpus, ``download`` fetches the archives listed
        in ``params['download']['archives']``, ``local`` copies directories the user has.
    raw_dir : Path
        Destination; it appears only once complete (built in a sibling temporary directory,
        then renamed), so an interrupted run never leaves a complete-looking corpus.
    params : dict
        The whole params file.
    """
    raw_dir = Path(raw_dir)
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{raw_dir.name}.", dir=raw_dir.parent))
    try:
        if source == "synthetic":
            generate_corpus(staging, progress=progress, **params["synthetic"])
        elif source == "download":
            cfg = params["download"]
            download_archives(cfg["archives"], staging, archive_dir=Path(cfg["archive_dir"]),
                                       progress=progress)
        elif source == "local":
            cfg = params["local"]
            copy_local(_optional_path(cfg.get("midlevel_dir")),
                                _optional_path(cfg.get("soundtracks_dir")), staging)
        else:
            raise ValueError(f"data.source must be synthetic, download or local, got {source!r}")
        present = validate_raw(staging, shown_as=raw_dir)  # bad label files stop this stage
        if raw_dir.exists():
            shutil.rmtree(raw_dir)
        os.replace(staging, raw_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return present


def _optional_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None
