"""Audio decoding and the ``resample`` stage: mono, 22050 Hz, peak-normalised signals.

Decoding goes through libsndfile (the ``soundfile`` wheels bundle a libsndfile that reads
mp3, wav, flac and ogg), as ``librosa.load`` does first; resampling through
``librosa.resample`` with soxr's high-quality filter (``soxr_hq``, librosa's default).
The file is opened here rather than by ``librosa.load`` because libsndfile's own reason for a
bad file and the length the file's header states are both needed (``librosa.load`` falls back
to audioread and hides the first, and never sees the second).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import librosa
import numpy as np
import soundfile as sf

from ..core.constants import SAMPLE_RATE
from ..data.corpus import MIDLEVEL_AUDIO_DIR, SOUNDTRACKS_AUDIO_DIR
from ..core.errors import AudioError, TooManyFailuresError
from ..core.fileio import remove_stale_staging, replace_dir, save_npy, staging_dir, write_json
from ..core.parallel import map_tasks

RESAMPLE_TYPE = "soxr_hq"  # librosa's default: soxr, high quality
AUDIO_EXTENSIONS: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg")
# Peaks below this (about -120 dBFS) are treated as digital silence: normalising them
# would only amplify dither or encoder noise.
SILENCE_PEAK = 1e-6
# A file is called truncated when it decodes to less than its header states by both margins:
# mp3 encoder delay and padding account for a few hundredths of a second, never this much.
TRUNCATED_FRACTION = 0.95
TRUNCATED_SECONDS = 0.25
# What libmpg123 and libsndfile print on their own: "Note: ...", "Warning: ...",
# "[src/libmpg123/parse.c:...] error: ...".
_DECODER_CHATTER = re.compile(r"^(Note|Warning|Error):|^\[[^\]]*\] ")
_MESSAGES_KEPT = 5  # distinct decoder lines kept per file in the resample report


@dataclass(frozen=True)
class Decoded:
    """One decoded file: the signal and what its header promised.

    Attributes
    ----------
    signal : np.ndarray
        Mono float32 at ``sample_rate``, peak amplitude 1.
    sample_rate : int
        Hz.
    stated_seconds : float
        The length libsndfile reads from the file's header (an mp3's Xing/LAME frame count).
    """

    signal: np.ndarray
    sample_rate: int
    stated_seconds: float

    @property
    def seconds(self) -> float:
        """Decoded length in seconds."""
        return len(self.signal) / self.sample_rate

    @property
    def truncated(self) -> bool:
        """Whether the file decoded to clearly less than its header states (a damaged file)."""
        return is_truncated(self.seconds, self.stated_seconds)


def is_truncated(decoded_seconds: float, stated_seconds: float) -> bool:
    """Whether ``decoded_seconds`` falls short of ``stated_seconds`` by more than encoder padding."""
    missing = stated_seconds - decoded_seconds
    return missing > TRUNCATED_SECONDS and decoded_seconds < TRUNCATED_FRACTION * stated_seconds


def truncation_note(path: Path | str, decoded_seconds: float) -> str | None:
    """The warning for a file that decoded to a fraction of the length its header states.

    For the CLI, which has the decoded length: ``"<path>: decoded 0.6 s of a file whose header
    says 15.0 s"``, or None when the file is whole (or its header cannot be read).
    """
    try:
        with native_stderr():  # the decoder repeats its own warnings while reading the header
            info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    stated = info.frames / info.samplerate if info.samplerate > 0 else 0.0
    if not is_truncated(decoded_seconds, stated):
        return None
    return f"{path}: decoded {decoded_seconds:.1f} s of a file whose header says {stated:.1f} s"


def resample(signal: np.ndarray, orig_sample_rate: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a 1-D signal with soxr's high-quality anti-aliasing filter (``librosa.resample``).

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
    return librosa.resample(signal, orig_sr=orig_sample_rate, target_sr=sample_rate,
                            res_type=RESAMPLE_TYPE).astype(np.float32, copy=False)


def normalise(samples: np.ndarray, orig_sample_rate: int, sample_rate: int = SAMPLE_RATE, *,
              source: Path | str = "signal") -> np.ndarray:
    """Downmix, check, resample and peak-normalise decoded samples.

    Parameters
    ----------
    samples : np.ndarray
        ``(frames,)`` or ``(frames, channels)``, as ``soundfile`` returns them.
    orig_sample_rate, sample_rate : int
        Their rate and the target rate in Hz.
    source : Path or str
        What error messages name.

    Raises
    ------
    AudioError
        No samples, non-finite samples, or silence.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.shape[0] == 0:
        raise AudioError(source, "decoded to zero samples")
    if not np.isfinite(samples).all():
        raise AudioError(source, "contains non-finite samples")
    # Downmix before resampling: half the filtering work, same result (both are linear).
    mono = librosa.to_mono(samples.T) if samples.ndim == 2 else samples
    signal = resample(mono, orig_sample_rate, sample_rate)
    peak = float(np.max(np.abs(signal)))
    if peak < SILENCE_PEAK:
        raise AudioError(source, f"silent (peak amplitude {peak:.1e})")
    return (signal / peak).astype(np.float32)


def decode(path: Path | str, sample_rate: int = SAMPLE_RATE) -> Decoded:
    """Decode an audio file like :func:`load`, keeping the length its header states."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        with sf.SoundFile(str(path)) as handle:
            stated_seconds = handle.frames / handle.samplerate
            samples = handle.read(dtype="float32", always_2d=True)
            orig_sample_rate = handle.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        # libsndfile says "Error opening '<path>': <reason>"; keep only the reason
        reason = re.sub(r"^Error opening .*?: ", "", str(err).split("\n")[0]).strip()
        if "does not exist" in reason:  # libsndfile's words for a file it cannot identify
            reason = "not a recognised audio format, or corrupt data"
        raise AudioError(path, f"cannot decode audio ({reason or type(err).__name__})") from None
    signal = normalise(samples, orig_sample_rate, sample_rate, source=path)
    return Decoded(signal, sample_rate, stated_seconds)


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
    return decode(path, sample_rate).signal


def is_decoder_chatter(line: str) -> bool:
    """Whether a line on stderr is the mp3 decoder talking to itself (``Note: ...`` and kin)."""
    return bool(_DECODER_CHATTER.match(line))


@contextlib.contextmanager
def native_stderr(echo: Callable[[str], bool] | None = None) -> Iterator[list[str]]:
    """Capture what native code (libsndfile's mp3 decoder) writes to file descriptor 2.

    Parameters
    ----------
    echo : callable, optional
        After the block, the captured lines for which ``echo(line)`` is true are written to
        ``sys.stderr`` (e.g. ``lambda line: not is_decoder_chatter(line)``).

    Yields
    ------
    list of str
        Filled with the captured non-blank lines when the block ends, also when it raises.
    """
    lines: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2 (embedded interpreter): nothing to capture
        yield lines
        return
    _flush_std()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield lines
        finally:
            _flush_std()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines.extend(line for line in captured.read().decode(errors="replace").splitlines() if line.strip())
            shown = [line for line in lines if echo is not None and echo(line)]
            if shown:
                sys.stderr.write("\n".join(shown) + "\n")


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


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
