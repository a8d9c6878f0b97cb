"""The ``download`` stage: the raw datasets in their published layout.

Fetch, verify and unpack the published archives (:mod:`.transfer`, :mod:`.archive`),
adopt a local copy (:mod:`.localcopy`), or generate the embedded synthetic corpus. The
guarantees the pipeline relies on:

* ``data/raw`` is built in a staging folder beside it and renamed into place only when
  complete; staging folders a killed run left behind are removed by the next run.
* Every archive or URL problem is a :class:`DownloadError` whose one-line message names the
  archive, the reason and, where it helps, the exact path where the user may put the file
  by hand (the hosts are sometimes unreachable). A bad archive is moved aside and the
  others are still tried, so one run reports every problem.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .archive import extract_zip, verify_zip
from ..core.config import DATA_SOURCES, DownloadParams, Params
from .labels import validate_raw
from ..core.errors import ArchiveError, DownloadError
from ..core.fileio import remove_stale_staging, replace_dir, staging_dir
from .localcopy import copy_local, link_or_copy, local_dir, pipeline_outputs, refuse_inside_outputs
from .synthetic import generate_corpus
from .transfer import fetch, sha256_file

__all__ = [
    "copy_local",
    "download_archives",
    "extract_zip",
    "fetch",
    "prepare_raw",
    "sha256_file",
]

ARCHIVE_SUBDIR = "_archives"

# The download.* params that bound each transfer (fetch) and each extraction (extract_zip).
_FETCH_KEYS = ("timeout_seconds", "retries", "deadline_seconds", "min_bytes_per_second", "rate_window_seconds")
_EXTRACT_KEYS = ("max_extracted_bytes", "max_compression_ratio")


@dataclass
class _Archive:
    name: str
    url: str
    sha256: str | None
    local: Path        # where the download is kept (the file to put there by hand)
    target_dir: Path   # where its content goes
    kind: str          # "zip" or "file"
    filename: PurePosixPath | None
    strip_top_dir: bool


def _spec_error(label: str, reason: str) -> ArchiveError:
    return ArchiveError(f"[{label}] dataset archive in params.yaml download.archives: {reason}",
                        reason=reason)


def _relative(value: Any, label: str, key: str) -> PurePosixPath:
    path = PurePosixPath(str(value).replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise _spec_error(label, f"{key}={value!r} must be a relative path without '..'")
    return path


def _plan(spec: Any, index: int, raw_dir: Path, archive_dir: Path) -> _Archive:
    """Check one ``download.archives`` entry and say where its files go."""
    if not isinstance(spec, Mapping):
        raise _spec_error(f"#{index}", f"expected a mapping, got {spec!r}")
    label = str(spec.get("name") or f"#{index}")

    def field(key: str) -> Any:
        if spec.get(key) in (None, ""):
            raise _spec_error(label, f"the required key {key!r} is missing")
        return spec[key]

    name = str(_relative(field("name"), label, "name"))
    url = str(field("url")).strip()
    target_dir = raw_dir / _relative(field("extract_to"), label, "extract_to")
    kind = spec.get("kind") or "zip"
    filename = None
    if kind == "zip":
        local = archive_dir / (name if name.lower().endswith(".zip") else f"{name}.zip")
    elif kind == "file":
        filename = _relative(field("filename"), label, "filename")
        local = archive_dir / f"{name}--{filename.name}"
    else:
        raise _spec_error(label, f"unknown kind {kind!r} (use 'zip' or 'file')")
    sha = spec.get("sha256")
    return _Archive(name, url, str(sha) if sha else None, local, target_dir, kind, filename,
                    bool(spec.get("strip_top_dir", True)))


def _options(limits: DownloadParams, keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: getattr(limits, key) for key in keys}


def download_archives(
    archives: list[dict[str, Any]],
    raw_dir: Path,
    *,
    limits: DownloadParams,
    progress: bool = True,
    archive_dir: Path | None = None,
) -> None:
    """Download every dataset archive, keep it in ``archive_dir``, and unpack it into ``raw_dir``.

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
        Where downloads are kept, so that a re-run skips finished ones and resumes
        unfinished ones. Default ``raw_dir/_archives``; point it outside a DVC output
        (which DVC deletes before re-running a stage) to keep them across runs.
    limits
        The ``download`` params (no defaults here: params.yaml is their only home):
        ``timeout_seconds``, ``retries``, ``deadline_seconds``, ``min_bytes_per_second``,
        ``rate_window_seconds`` (see :func:`fetch`), ``max_extracted_bytes`` and
        ``max_compression_ratio`` (see :func:`extract_zip`).

    Raises
    ------
    DownloadError
        One line listing every archive that failed, each with its reason: a malformed
        entry or URL, a failed download (with the path to put the file by hand), or an
        archive that cannot be extracted (moved aside to ``*.corrupt``, so the next run
        downloads it again). Downloads are all attempted before anything is extracted.
        An ``ArchiveError`` (also a ``ValueError``) when that is the only failure.
    """
    raw_dir = Path(raw_dir)
    archive_dir = Path(archive_dir) if archive_dir is not None else raw_dir / ARCHIVE_SUBDIR
    failures: list[tuple[str, DownloadError]] = []
    plans: list[_Archive] = []
    for index, spec in enumerate(archives or []):
        try:
            plan = _plan(spec, index, raw_dir, archive_dir)
            if any(p.local == plan.local for p in plans):
                raise _spec_error(plan.name, "the name is used by another archive")
            plans.append(plan)
        except ArchiveError as exc:
            failures.append((str(exc), exc))
    if not plans and not failures:
        raise _spec_error("-", "no archives are listed")

    fetch_options = _options(limits, _FETCH_KEYS)
    fetched = []
    for plan in plans:
        verify = verify_zip if plan.kind == "zip" else None
        try:
            fetch(plan.url, plan.local, sha256=plan.sha256, progress=progress, verify=verify,
                  **fetch_options)
            fetched.append(plan)
        except DownloadError as exc:
            after = " (a re-run then extracts it)" if plan.kind == "zip" else ""
            failures.append((f"[{plan.name}] {exc}{after}", exc))
    # An offline user learns about every file to place by hand from one error; extracting
    # the rest first would be wasted, since the stage fails anyway.
    if not failures:
        for plan in fetched:
            failure = _unpack(plan, _options(limits, _EXTRACT_KEYS))
            if failure is not None:
                failures.append(failure)
    if failures:
        _raise_all(failures, len(archives or []))


def _unpack(plan: _Archive, options: Mapping[str, Any]) -> tuple[str, DownloadError] | None:
    """Put one fetched archive's content in place; a bad archive is moved aside."""
    if plan.kind == "file":
        assert plan.filename is not None
        target = plan.target_dir / plan.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(plan.local, target)
        return None
    try:
        extract_zip(plan.local, plan.target_dir, strip_single_top_dir=plan.strip_top_dir,
                    **options)
        return None
    except ArchiveError as exc:
        # Move it aside so a re-run does not "skip" a broken download forever.
        corrupt = plan.local.with_name(plan.local.name + ".corrupt")
        os.replace(plan.local, corrupt)
        plan.local.with_name(plan.local.name + ".source.json").unlink(missing_ok=True)
        message = (f"[{plan.name}] {plan.local.name} from {plan.url}: {exc.reason}; moved it to "
                   f"{corrupt.absolute()}, a re-run downloads it again, or put a good copy at "
                   f"{plan.local.absolute()}")
        return message, type(exc)(message, reason=exc.reason, url=plan.url, path=plan.local)


def _raise_all(failures: list[tuple[str, DownloadError]], n_archives: int) -> None:
    if len(failures) == 1:
        raise failures[0][1].__class__(
            failures[0][0], url=failures[0][1].url, path=failures[0][1].path) from None
    first = failures[0][1]
    raise DownloadError(f"{len(failures)} problems with the {n_archives} dataset archives: "
                        + " | ".join(text for text, _ in failures), url=first.url, path=first.path)


# ---------------------------------------------------------------------------------------
# The download stage


def _local_folders(params: Params, raw_dir: Path) -> tuple[Path | None, Path | None]:
    """The ``local`` folders, refused when they lie inside anything the pipeline deletes."""
    folders = {key: local_dir(getattr(params.local, key), f"local.{key}")
               for key in ("midlevel_dir", "soundtracks_dir")}
    root = Path(params.path).resolve().parent
    dvc_yaml = root / "dvc.yaml" if (root / "dvc.yaml").is_file() else Path("dvc.yaml")
    outputs = [raw_dir, *pipeline_outputs(dvc_yaml)]
    outputs += [p for p in raw_dir.parent.glob(f".{raw_dir.name}.*") if p.is_dir()]
    refuse_inside_outputs([(f"local.{k}", v) for k, v in folders.items() if v is not None],
                          outputs)
    return folders["midlevel_dir"], folders["soundtracks_dir"]


def prepare_raw(source: str, raw_dir: Path, params: Params, *, progress: bool = True) -> dict[str, bool]:
    """The ``download`` stage: fill ``raw_dir`` with the datasets in their published layout.

    Parameters
    ----------
    source : {"synthetic", "download", "local"}
        ``synthetic`` generates the embedded corpus, ``download`` fetches the archives listed
        in ``params.download.archives``, ``local`` copies directories the user has.
    raw_dir : Path
        Destination; it appears only once complete (built in a sibling staging directory,
        then renamed), so an interrupted run never leaves a complete-looking corpus. Staging
        directories an earlier, killed run left are removed first.
    params : Params
        The whole params file (:func:`midlevel_emotion.core.params.load_params`).

    Returns
    -------
    dict
        ``{"midlevel": bool, "soundtracks": bool}``: which datasets are present.

    Raises
    ------
    ValueError
        An unknown source, or a ``local`` folder inside a pipeline output (checked before
        anything is removed).
    DownloadError, CorpusError, OSError
        One line each; messages name ``raw_dir``, never the staging directory.
    """
    raw_dir = Path(raw_dir)
    if source not in DATA_SOURCES:
        raise ValueError(f"data.source must be one of {', '.join(DATA_SOURCES)}, got {source!r}")
    local = _local_folders(params, raw_dir) if source == "local" else None
    remove_stale_staging(raw_dir)
    staging = staging_dir(raw_dir)
    try:
        if source == "synthetic":
            generate_corpus(staging, progress=progress, **asdict(params.synthetic))
        elif source == "download":
            cfg = params.download
            download_archives(list(cfg.archives), staging, archive_dir=Path(cfg.archive_dir),
                              progress=progress, limits=cfg)
        else:
            copy_local(*local, staging)
        present = validate_raw(staging, shown_as=raw_dir)  # bad label files stop this stage
        replace_dir(staging, raw_dir)
    except Exception as exc:
        # The staging folder is deleted below: name the folder the user knows instead.
        if len(exc.args) == 1 and isinstance(exc.args[0], str) and str(staging) in exc.args[0]:
            exc.args = (exc.args[0].replace(str(staging), str(raw_dir)),)
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return present
