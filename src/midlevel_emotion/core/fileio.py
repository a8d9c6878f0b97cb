"""Writing files so that no half-written output ever looks complete.

Every file the project writes goes through :func:`atomic_write`: the content goes to a
temporary file next to the target, gets the permissions a plain ``open(..., "w")`` would
give under the user's umask (``mkstemp`` alone gives 0600), and is renamed into place.
A crash or Ctrl-C leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np


def file_mode() -> int:
    """The mode a plainly created file gets: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def dir_mode() -> int:
    """The mode a plainly created directory gets: 0o777 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Create ``path`` by calling ``write(tmp)`` on a sibling temporary path, then renaming.

    Parameters
    ----------
    path : Path
        The final file; its parent directories are created.
    write : callable
        Writes the whole content to the path it is given (e.g. ``figure.savefig``).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path | str, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (line ends as given)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path | str, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (keys in insertion order, trailing newline) atomically."""
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def save_npy(path: Path | str, array: np.ndarray) -> Path:
    """Write one array as ``.npy`` atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    return atomic_write(path, write)


def staging_dir(target: Path | str) -> Path:
    """A new empty directory next to ``target`` to build a replacement in (see :func:`replace_dir`).

    Its name starts with ``.<target name>.``, so :func:`remove_stale_staging` finds what an
    earlier, killed run left behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(path, dir_mode())
    return path


def remove_stale_staging(target: Path | str) -> list[Path]:
    """Delete the ``.<target name>.*`` staging directories earlier runs left next to ``target``.

    Only call this while holding the stage (DVC's lock does so for stages); returns what
    was removed.
    """
    target = Path(target)
    removed = []
    if target.parent.is_dir():
        for path in sorted(target.parent.glob(f".{target.name}.*")):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def replace_dir(staging: Path | str, target: Path | str) -> Path:
    """Move a finished ``staging`` directory to ``target``, replacing any previous one.

    The old directory is first renamed aside, so ``target`` is never a mix of both.
    """
    staging, target = Path(staging), Path(target)
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise FileExistsError(f"{target}: exists and is not a directory")
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
    return target
