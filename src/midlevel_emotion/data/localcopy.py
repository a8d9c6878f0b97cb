"""Adopting dataset folders the user already has (``data.source: local``).

The user's folder may be their only copy, so it is checked before anything is written or
removed: it must not lie inside a pipeline output (``data/raw``, ``models/...``), which DVC
and the stages delete and rebuild, nor contain the folder it is copied to.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import yaml

from .archive import JUNK_NAMES

__all__ = ["copy_local", "link_or_copy", "local_dir", "pipeline_outputs", "refuse_inside_outputs"]

# The value that means "this dataset is not copied from a folder": dvc.yaml lists both
# local folders as dependencies of the download stage, and DVC cannot template a null,
# so the default names the committed placeholder folder none/ instead.
NONE_VALUES = ("", "none", "none/", "./none", "./none/")


def local_dir(value: str | None, key: str) -> Path | None:
    """The folder a ``local.*_dir`` param names, or ``None`` for ``null`` / ``none``.

    Raises
    ------
    ValueError
        The value starts with ``~``: DVC, which lists it as a dependency, does not expand it.
    """
    if value is None or str(value).strip().lower() in NONE_VALUES:
        return None
    text = str(value).strip()
    if text.startswith("~"):
        raise ValueError(f"{key}={text!r}: write the full path; DVC, which lists this folder "
                         f"as a dependency of the download stage, does not expand '~'")
    return Path(text)


def pipeline_outputs(dvc_yaml: Path) -> list[Path]:
    """Every ``outs``, ``metrics`` and ``plots`` path of ``dvc.yaml``, relative to its folder.

    A missing or unreadable ``dvc.yaml`` gives an empty list (the caller still guards the
    folder it writes itself).
    """
    try:
        stages = (yaml.safe_load(Path(dvc_yaml).read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return []
    found: list[Path] = []
    for stage in stages.values():
        for key in ("outs", "metrics", "plots"):
            for entry in (stage or {}).get(key) or []:
                name = entry if isinstance(entry, str) else next(iter(entry), "")
                if name and "${" not in name:
                    found.append(Path(dvc_yaml).parent / name)
    return found


def refuse_inside_outputs(folders: Iterable[tuple[str, Path]], outputs: Iterable[Path]) -> None:
    """Raise when a user folder lies inside (or is) a folder the pipeline deletes and rebuilds.

    Parameters
    ----------
    folders
        ``(param key, folder)`` pairs, e.g. ``("local.midlevel_dir", Path(...))``.
    outputs
        The pipeline's outputs (and staging folders), which are removed before a rebuild.

    Raises
    ------
    ValueError
        One line naming the param, the folder and the output it lies in.
    """
    resolved = [(out, out.resolve()) for out in outputs]
    for key, folder in folders:
        source = folder.expanduser().resolve()
        for out, target in resolved:
            if source == target or target in source.parents:
                raise ValueError(
                    f"{key}={str(folder)!r} lies inside the pipeline output {out}, which is "
                    f"deleted and rebuilt on every run (your files would be lost); move the "
                    f"dataset elsewhere and point {key} there")


def link_or_copy(src: Path, dst: Path) -> None:
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
            if fname in JUNK_NAMES:
                continue
            link_or_copy(Path(root) / fname, dst / rel / fname)


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
        raise ValueError("data.source is local but local.midlevel_dir and local.soundtracks_dir "
                         "are both unset; point at least one at your copy of a dataset")
    # Check all inputs before copying anything, so a typo does not leave half a setup.
    for sub, src in given:
        if not src.exists():
            raise FileNotFoundError(
                f"The {sub} dataset directory {src.absolute()} does not exist; check the path "
                f"you configured for it")
        if not src.is_dir():
            raise NotADirectoryError(f"The {sub} dataset path {src.absolute()} is not a directory")
        if not any(p.is_file() for p in src.rglob("*")):
            raise ValueError(f"The {sub} dataset directory {src.absolute()} contains no files")
        target, source = (raw_dir / sub).resolve(), src.resolve()
        if source == target or source in target.parents or target in source.parents:
            raise ValueError(
                f"The {sub} dataset directory {source} overlaps its destination {target}")
    for sub, src in given:
        _copy_tree(src, raw_dir / sub)
