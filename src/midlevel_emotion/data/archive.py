"""Unpacking dataset zips safely (the errors of a download are in :mod:`.errors`).

An archive from the network is untrusted input. Before a single byte is written, every
member is checked: no path escaping the target ("zip slip"), no duplicate names, no file
that clashes with a folder, no encrypted member, no over-long name, and no "zip bomb"
(a declared total size or a per-member compression ratio over the limits). Extraction
then goes to a temporary folder beside the target and is moved in only when complete.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from ..core.errors import ArchiveError, CorruptArchiveError, UnsafeArchiveError

__all__ = ["extract_zip", "verify_zip"]

# Junk that macOS / Windows zip tools add; ignoring it keeps the "single wrapping folder"
# detection working and keeps the raw directory clean.
_JUNK_TOP_LEVEL = {"__MACOSX"}
JUNK_NAMES = {".DS_Store", "Thumbs.db"}

# Limits of common filesystems (ext4, APFS, NTFS): longer names fail half-way through.
_MAX_NAME_BYTES = 255
_MAX_PATH_BYTES = 1024
# Members smaller than this cannot fill a disk, whatever their ratio (a CSV of zeros
# compresses 1000:1); the ratio limit applies above it.
_RATIO_FLOOR_BYTES = 1 << 20

DEFAULT_MAX_EXTRACTED_BYTES = 20 * 10**9
DEFAULT_MAX_COMPRESSION_RATIO = 200.0



def _fail(kind: type[ArchiveError], archive: Path, reason: str) -> ArchiveError:
    return kind(f"Cannot extract {archive}: {reason}", reason=reason, path=archive)


def _open_zip(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise _fail(CorruptArchiveError, archive, f"not a valid zip file ({exc})") from None


def verify_zip(archive: Path) -> str | None:
    """Why ``archive`` is not a complete zip (it does not open, or a member fails its CRC).

    Used for downloads that came without a length or a checksum: the only way to know the
    body was not cut short.

    Returns
    -------
    str or None
        The reason, or ``None`` when every member reads back with a matching CRC.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError) as exc:
        return f"not a complete zip file ({exc})"
    return f"member {bad!r} fails its CRC check" if bad is not None else None


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """Validated path components of a zip member; raises on anything escaping the root."""
    unsafe = (
        name.startswith(("/", "\\"))
        or re.match(r"^[A-Za-z]:", name) is not None
        or "\x00" in name
    )
    parts = tuple(p for p in re.split(r"[/\\]+", name) if p not in ("", "."))
    if unsafe or ".." in parts:
        raise _fail(UnsafeArchiveError, archive,
                    f"member {name!r} would be written outside the target directory "
                    f"(absolute path or '..'; possible 'zip slip')")
    if any(len(p.encode("utf-8", "surrogateescape")) > _MAX_NAME_BYTES for p in parts) or (
        len("/".join(parts).encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES
    ):
        shown = name[:60] + "..."
        raise _fail(UnsafeArchiveError, archive,
                    f"member name {shown!r} is too long (over {_MAX_NAME_BYTES} bytes per "
                    f"name or {_MAX_PATH_BYTES} bytes per path)")
    return parts


def _is_junk(parts: tuple[str, ...]) -> bool:
    return bool(parts) and (parts[0] in _JUNK_TOP_LEVEL or parts[-1] in JUNK_NAMES)


def _check_layout(archive: Path, members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]]) -> None:
    """Refuse duplicate members, files that are also folders, and encrypted members."""
    files: dict[tuple[str, ...], str] = {}
    folders: set[tuple[str, ...]] = set()
    for info, parts in members:
        if info.flag_bits & 0x1:
            raise _fail(UnsafeArchiveError, archive,
                        f"member {info.filename!r} is encrypted (password-protected zips "
                        f"are not supported; unpack it yourself)")
        folders.update(parts[:i] for i in range(1, len(parts)))
        if info.is_dir():
            folders.add(parts)
        elif parts in files:
            raise _fail(UnsafeArchiveError, archive,
                        f"member {info.filename!r} appears twice (also as "
                        f"{files[parts]!r}); the second would silently replace the first")
        else:
            files[parts] = info.filename
    clash = sorted(set(files) & folders)
    if clash:
        raise _fail(UnsafeArchiveError, archive,
                    f"member {files[clash[0]]!r} is both a file and a folder")


def _check_sizes(archive: Path, infos: list[zipfile.ZipInfo], dest_dir: Path,
                 max_bytes: int, max_ratio: float) -> None:
    """Refuse a zip bomb, or one that does not fit on the disk, from the declared sizes.

    ``zipfile`` never inflates a member past its declared ``file_size`` (the CRC check
    fails instead), so the declared sizes bound what extraction writes.
    """
    total = 0
    for info in infos:
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR_BYTES and ratio > max_ratio:
            raise _fail(UnsafeArchiveError, archive,
                        f"member {info.filename!r} expands {ratio:.0f}-fold "
                        f"({info.compress_size} -> {info.file_size} bytes), over "
                        f"download.max_compression_ratio={max_ratio:g} (possible zip bomb)")
    if total > max_bytes:
        raise _fail(UnsafeArchiveError, archive,
                    f"it expands to {total} bytes, over download.max_extracted_bytes="
                    f"{max_bytes} (possible zip bomb; raise the limit if the archive is genuine)")
    probe = next((p for p in (dest_dir, *dest_dir.parents) if p.exists()), None)
    if probe is not None:
        free = shutil.disk_usage(probe).free
        if total > free:
            raise _fail(ArchiveError, archive,
                        f"it expands to {total} bytes but only {free} are free on the disk "
                        f"holding {probe}")


def extract_zip(
    archive: Path,
    dest_dir: Path,
    *,
    strip_single_top_dir: bool = True,
    max_extracted_bytes: int = DEFAULT_MAX_EXTRACTED_BYTES,
    max_compression_ratio: float = DEFAULT_MAX_COMPRESSION_RATIO,
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
    max_extracted_bytes
        Refuse an archive whose members add up to more than this.
    max_compression_ratio
        Refuse a member over 1 MiB that expands more than this many times.

    Returns
    -------
    list[Path]
        The extracted files, at their final paths in ``dest_dir``, sorted.

    Raises
    ------
    UnsafeArchiveError
        Zip slip, duplicate member, file/folder clash, encrypted member, over-long name,
        or over a size limit; nothing is written.
    CorruptArchiveError
        The archive is not a valid zip or its data fail the CRC check; nothing is
        written to ``dest_dir``.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    with _open_zip(archive) as zf:
        # Validate every name and size before writing anything.
        members = [(info, parts) for info in zf.infolist()
                   if (parts := _member_parts(archive, info.filename)) and not _is_junk(parts)]
        file_members = [(info, parts) for info, parts in members if not info.is_dir()]
        if not file_members:
            raise _fail(CorruptArchiveError, archive, "the archive contains no files")
        _check_layout(archive, members)
        _check_sizes(archive, [info for info, _ in file_members], dest_dir,
                     int(max_extracted_bytes), float(max_compression_ratio))

        # A lone top folder is a wrapper only if it has subfolders; if it holds just
        # files it *is* the layout (metadata_annotations/, audio/) and must stay.
        single_top = len({parts[0] for _, parts in members}) == 1
        has_subfolder = any(
            len(parts) > 2 or (info.is_dir() and len(parts) == 2) for info, parts in members
        )
        strip = 1 if strip_single_top_dir and single_top and has_subfolder else 0
        final_files = sorted(dest_dir.joinpath(*parts[strip:]) for _, parts in file_members)

        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        # Same parent -> same filesystem, so the moves below are cheap renames.
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.extracting-", dir=dest_dir.parent))
        try:
            for info, parts in members:
                _extract_member(zf, info, tmp.joinpath(*parts), archive)
            root = tmp.joinpath(*members[0][1][:strip]) if strip else tmp
            dest_dir.mkdir(parents=True, exist_ok=True)
            _merge_tree(root, dest_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final_files


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path,
                    archive: Path) -> None:
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise _fail(CorruptArchiveError, archive,
                    f"member {info.filename!r} is damaged ({exc})") from None


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
