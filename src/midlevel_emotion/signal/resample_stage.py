"""The ``resample`` stage: every dataset's audio decoded to ``<clip_id>.npy`` signals, with a report.

Each file goes through :func:`midlevel_emotion.signal.audio.decode` in a worker process; what
went wrong with a file (undecodable, silent, too short, truncated, decoder messages) is
collected into the stage's ``report.json`` rather than raised, so no file is dropped silently.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..core.constants import SAMPLE_RATE
from ..data.layout import MIDLEVEL_AUDIO_DIR, SOUNDTRACKS_AUDIO_DIR
from ..core.errors import AudioError, TooManyFailuresError
from ..core.fileio import remove_stale_staging, replace_dir, save_npy, staging_dir, write_json
from ..core.parallel import map_tasks
from .audio import decode, native_stderr

AUDIO_EXTENSIONS: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg")
_MESSAGES_KEPT = 5  # distinct decoder lines kept per file in the resample report


def find_audio(directory: Path) -> dict[str, Path]:
    """Map clip id (file stem) to audio path for every supported audio file in a directory.

    Raises
    ------
    ValueError
        When two files share a stem (e.g. ``001.mp3`` and ``001.wav``): which one is meant
        would be a guess.
    """
    files: dict[str, Path] = {}
    for path in sorted(Path(directory).iterdir()):
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if path.stem in files:
            raise ValueError(f"{directory}: two audio files for clip {path.stem!r}: "
                             f"{files[path.stem].name} and {path.name}")
        files[path.stem] = path
    return files


def _resample_one(task: tuple[str, str, str, int, int]) -> dict[str, Any]:
    """Worker: one file -> ``<target>.npy``; what went wrong is returned, never raised."""
    clip_id, source, target, sample_rate, min_samples = task
    result: dict[str, Any] = {"clip_id": clip_id, "path": source, "n_samples": 0, "reason": None}
    with native_stderr() as messages:
        try:
            decoded = decode(source, sample_rate)
        except AudioError as err:
            result["reason"] = err.reason
    result["messages"] = messages
    if result["reason"] is not None:
        return result
    if len(decoded.signal) < min_samples:
        result["reason"] = (f"decoded {decoded.seconds:.3f} s, shorter than one spectrogram hop "
                            f"({min_samples} samples at {sample_rate} Hz)")
        return result
    save_npy(target, decoded.signal)
    result["n_samples"] = len(decoded.signal)
    if decoded.truncated:
        result["truncated"] = {"decoded_seconds": round(decoded.seconds, 3),
                               "stated_seconds": round(decoded.stated_seconds, 3)}
    return result


def decoder_summary(lines: list[str]) -> str:
    """One line for what a decoder printed about one file: how much, and the first line."""
    return f"{len(lines)} line(s) of decoder messages, first: {lines[0].strip()!r}"


def _tasks(files: dict[str, Path], out_dir: Path, sample_rate: int, min_samples: int) -> list[tuple]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [(clip_id, str(path), str(out_dir / f"{clip_id}.npy"), sample_rate, min_samples)
            for clip_id, path in sorted(files.items())]


def _summary(results: list[dict[str, Any]], sample_rate: int) -> dict[str, Any]:
    """One dataset's report from its workers' results.

    ``{"n_files", "n_ok", "seconds_of_audio", "failed", "truncated", "decoder_messages"}``: every
    file that failed (``clip_id``, ``path``, ``reason``); every file that decoded to clearly less
    than its header states (``decoded_seconds``, ``stated_seconds``); and for every file the
    decoder printed about, a one-line ``summary`` and its first distinct ``lines``. A file that
    fails is never dropped silently.
    """
    report: dict[str, Any] = {"n_files": len(results), "n_ok": 0, "seconds_of_audio": 0.0,
                              "failed": [], "truncated": [], "decoder_messages": []}
    n_samples = 0
    for result in results:
        where = {"clip_id": result["clip_id"], "path": result["path"]}
        if result["reason"] is not None:
            report["failed"].append({**where, "reason": result["reason"]})
        n_samples += result["n_samples"]
        if "truncated" in result:
            report["truncated"].append({**where, **result["truncated"]})
        if result["messages"]:
            distinct = list(dict.fromkeys(result["messages"]))[:_MESSAGES_KEPT]
            report["decoder_messages"].append({**where, "summary": decoder_summary(result["messages"]),
                                               "lines": distinct})
    report["n_ok"] = len(results) - len(report["failed"])
    report["seconds_of_audio"] = round(n_samples / sample_rate, 2)
    return report


# Resampled output subdirectory -> raw audio directory, for each dataset.
DATASET_AUDIO_DIRS: dict[str, str] = {"midlevel": MIDLEVEL_AUDIO_DIR, "soundtracks": SOUNDTRACKS_AUDIO_DIR}


def resample_corpus(
    raw_dir: Path,
    out_dir: Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    min_samples: int = 1,
    jobs: int = 0,
    max_failed_fraction: float = 0.02,
    progress: bool = True,
) -> dict:
    """The ``resample`` stage: every dataset's audio under ``raw_dir`` -> ``out_dir/<dataset>/``.

    Each file is decoded, downmixed, resampled and peak-normalised into
    ``out_dir/<dataset>/<clip_id>.npy``; ``report.json`` holds each dataset's report (see
    :func:`_summary`). A dataset whose audio directory is absent (a user with only Soundtracks)
    is reported as ``"absent"``. ``out_dir`` is built in a sibling staging directory and appears complete,
    with ``report.json``, also when too many files failed, so the user can see which and why.

    Parameters
    ----------
    raw_dir, out_dir : Path
        ``data/raw`` and the stage's output directory.
    sample_rate : int
        Target rate in Hz.
    min_samples : int
        Shorter signals fail (the spectrogram needs one hop, ``sample_rate / fps`` samples).
    jobs : int
        Worker processes; 0 means one per CPU core.
    max_failed_fraction : float
        The share of files that may fail.

    Raises
    ------
    TooManyFailuresError
        When the share of failed files (undecodable, silent, or shorter than ``min_samples``)
        exceeds ``max_failed_fraction``.
    FileNotFoundError
        When no dataset has an audio directory.
    """
    if not 0.0 <= max_failed_fraction <= 1.0:
        raise ValueError(f"max_failed_fraction must be in [0, 1], got {max_failed_fraction}")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    found = {d: raw_dir / a for d, a in DATASET_AUDIO_DIRS.items() if (raw_dir / a).is_dir()}
    if not found:
        raise FileNotFoundError(f"{raw_dir}: no audio directory found (expected "
                                f"{' or '.join(str(raw_dir / d) for d in DATASET_AUDIO_DIRS.values())})")
    remove_stale_staging(out_dir)
    staging = staging_dir(out_dir)
    report: dict = {"sample_rate": sample_rate, "min_samples": min_samples, "datasets": {}}
    try:
        # one pool for every dataset: a worker's start (imports, librosa's compiled kernels) is paid once
        tasks = {dataset: _tasks(find_audio(directory), staging / dataset, sample_rate, min_samples)
                 for dataset, directory in found.items()}
        results = map_tasks(_resample_one, [t for ts in tasks.values() for t in ts], jobs=jobs,
                            desc="resample", progress=progress)
        for dataset in DATASET_AUDIO_DIRS:
            if dataset not in tasks:
                report["datasets"][dataset] = "absent"
                continue
            report["datasets"][dataset] = _summary(results[:len(tasks[dataset])], sample_rate)
            results = results[len(tasks[dataset]):]
        done = [r for r in report["datasets"].values() if r != "absent"]
        n_files = report["n_files"] = sum(r["n_files"] for r in done)
        n_failed = report["n_failed"] = sum(len(r["failed"]) for r in done)
        write_json(staging / "report.json", report)
        replace_dir(staging, out_dir)
    except BaseException:  # Ctrl-C included: leave no half-built folder behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report_path = out_dir / "report.json"
    if n_files == 0 or n_failed > max_failed_fraction * n_files:
        raise TooManyFailuresError(
            f"resample: {n_failed} of {n_files} audio files failed "
            f"({100 * n_failed / max(n_files, 1):.1f}%, allowed {100 * max_failed_fraction:g}% by "
            f"resample.max_failed_fraction); reasons per file in {report_path}", report)
    return report
