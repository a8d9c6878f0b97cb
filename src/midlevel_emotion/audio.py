"""Audio decoding and the ``resample`` stage: mono, 22050 Hz, peak-normalised signals.

Decoding goes through libsndfile (the ``soundfile`` wheels bundle a libsndfile that reads
mp3, wav, flac and ogg), resampling through a polyphase filter (``scipy.signal.resample_poly``)
with the exact rational ratio of the two rates.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from .corpus import MIDLEVEL_AUDIO_DIR, SOUNDTRACKS_AUDIO_DIR
from .parallel import resolve_jobs

SAMPLE_RATE = 22050
AUDIO_EXTENSIONS: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg")
# Peaks below this (about -120 dBFS) are treated as digital silence: normalising them
# would only amplify dither or encoder noise.
SILENCE_PEAK = 1e-6


class AudioError(ValueError):
    """An audio file cannot be used; ``str(err)`` is one line naming the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def resample(signal: np.ndarray, orig_sample_rate: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D signal with a polyphase anti-aliasing filter.

    Parameters
    ----------
    signal : np.ndarray
        1-D signal.
    orig_sample_rate, sample_rate : int
        Source and target rates in Hz.

    Returns
    -------
    np.ndarray
        float32 signal at ``sample_rate``.
    """
    if orig_sample_rate <= 0 or sample_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sample_rate} -> {sample_rate}")
    signal = np.asarray(signal, dtype=np.float32)
    if orig_sample_rate == sample_rate:
        return signal
    ratio = Fraction(sample_rate, orig_sample_rate)
    return resample_poly(signal, ratio.numerator, ratio.denominator).astype(np.float32)


def load(path: Path | str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an audio file to a mono, resampled, peak-normalised float32 signal.

    Parameters
    ----------
    path : Path or str
        An mp3, wav, flac or ogg file.
    sample_rate : int
        Target rate in Hz (22050, as in the paper).

    Returns
    -------
    np.ndarray
        1-D float32 signal with peak absolute amplitude 1.

    Raises
    ------
    AudioError
        When the file is missing, empty, undecodable, has no samples, contains non-finite
        samples, or is silent. The message names the file and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        data, orig_sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        # libsndfile says "Error opening '<path>': <reason>"; keep only the reason
        reason = re.sub(r"^Error opening .*?: ", "", str(err).split("\n")[0]).strip()
        if "does not exist" in reason:  # libsndfile's words for a file it cannot identify
            reason = "not a recognised audio format, or corrupt data"
        raise AudioError(path, f"cannot decode audio ({reason or type(err).__name__})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "decoded to zero samples")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains non-finite samples")
    # Downmix before resampling: half the filtering work, same result (both are linear).
    signal = resample(data.mean(axis=1), orig_sample_rate, sample_rate)
    peak = float(np.max(np.abs(signal)))
    if peak < SILENCE_PEAK:
        raise AudioError(path, f"silent (peak amplitude {peak:.1e})")
    return (signal / peak).astype(np.float32)


def _atomic_save_npy(array: np.ndarray, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _resample_one(job: tuple[str, str, str, int]) -> tuple[str, str, int, str | None]:
    clip_id, source, target, sample_rate = job
    try:
        signal = load(source, sample_rate)
    except AudioError as err:
        return clip_id, source, 0, err.reason
    _atomic_save_npy(signal, Path(target))
    return clip_id, source, len(signal), None


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


def resample_files(
    files: dict[str, Path],
    out_dir: Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    jobs: int = 0,
    progress: bool = True,
    description: str = "resample",
) -> dict:
    """Decode, downmix, resample and peak-normalise many files into ``out_dir/<clip_id>.npy``.

    Parameters
    ----------
    files : dict
        Clip id -> audio path.
    out_dir : Path
        Output directory (created).
    sample_rate : int
        Target rate in Hz.
    jobs : int
        Worker processes; 0 means one per CPU core.

    Returns
    -------
    dict
        ``{"n_files", "n_ok", "seconds_of_audio", "failed": [{"clip_id", "path", "reason"}]}``.
        A file that fails is never dropped silently: it is listed here with its reason.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = [(clip_id, str(path), str(out_dir / f"{clip_id}.npy"), sample_rate)
            for clip_id, path in sorted(files.items())]
    jobs = resolve_jobs(jobs)
    failed: list[dict] = []
    n_samples = 0
    results: Iterable
    with ProcessPoolExecutor(max_workers=jobs) if jobs > 1 else _InlineExecutor() as pool:
        results = pool.map(_resample_one, work, chunksize=max(1, len(work) // (8 * jobs)))
        for clip_id, source, length, reason in tqdm(results, total=len(work), desc=description,
                                                    unit="clip", disable=not progress):
            if reason is None:
                n_samples += length
            else:
                failed.append({"clip_id": clip_id, "path": source, "reason": reason})
    return {
        "n_files": len(work),
        "n_ok": len(work) - len(failed),
        "seconds_of_audio": round(n_samples / sample_rate, 2),
        "failed": failed,
    }


class _InlineExecutor:
    """Executor stand-in for ``jobs=1``: no process start-up, easier profiling."""

    def __enter__(self) -> "_InlineExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, iterable, chunksize: int = 1):  # noqa: ARG002 - same signature as Executor.map
        return map(fn, iterable)


class TooManyFailuresError(RuntimeError):
    """More audio files failed to decode than the configured share allows."""


# Resampled output subdirectory -> raw audio directory, for each dataset.
DATASET_AUDIO_DIRS: dict[str, str] = {"midlevel": MIDLEVEL_AUDIO_DIR, "soundtracks": SOUNDTRACKS_AUDIO_DIR}


def resample_corpus(
    raw_dir: Path,
    out_dir: Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    jobs: int = 0,
    max_failed_fraction: float = 0.02,
    progress: bool = True,
) -> dict:
    """The ``resample`` stage: every dataset's audio under ``raw_dir`` -> ``out_dir/<dataset>/``.

    A dataset whose audio directory is absent (a user with only Soundtracks) is reported as
    ``"absent"``. The report is written to ``out_dir/report.json`` before any failure is raised,
    so the user can see which files failed and why.

    Raises
    ------
    TooManyFailuresError
        When the share of failed files exceeds ``max_failed_fraction``.
    FileNotFoundError
        When no dataset has an audio directory.
    """
    if not 0.0 <= max_failed_fraction <= 1.0:
        raise ValueError(f"max_failed_fraction must be in [0, 1], got {max_failed_fraction}")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    report: dict = {"sample_rate": sample_rate, "datasets": {}}
    for dataset, audio_dir in DATASET_AUDIO_DIRS.items():
        if not (raw_dir / audio_dir).is_dir():
            report["datasets"][dataset] = "absent"
            continue
        files = find_audio(raw_dir / audio_dir)
        report["datasets"][dataset] = resample_files(
            files, out_dir / dataset, sample_rate=sample_rate, jobs=jobs, progress=progress,
            description=f"resample {dataset}")
    done = [r for r in report["datasets"].values() if r != "absent"]
    if not done:
        raise FileNotFoundError(f"{raw_dir}: no audio directory found (expected "
                                f"{' or '.join(str(raw_dir / d) for d in DATASET_AUDIO_DIRS.values())})")
    n_files = sum(r["n_files"] for r in done)
    n_failed = sum(len(r["failed"]) for r in done)
    report["n_files"], report["n_failed"] = n_files, n_failed
    report_path = out_dir / "report.json"
    write_report(report, report_path)
    if n_files == 0 or n_failed > max_failed_fraction * n_files:
        raise TooManyFailuresError(
            f"resample: {n_failed} of {n_files} audio files failed "
            f"({100 * n_failed / max(n_files, 1):.1f}%, allowed {100 * max_failed_fraction:g}% by "
            f"resample.max_failed_fraction); reasons per file in {report_path}")
    return report


def write_report(report: dict, path: Path) -> None:
    """Write a JSON report atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
