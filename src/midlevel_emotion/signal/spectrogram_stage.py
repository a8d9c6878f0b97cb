"""The ``spectrogram`` stage: one spectrogram store per dataset of resampled signals.

The stores' layout is in :mod:`midlevel_emotion.signal.store`; each is written by
:func:`midlevel_emotion.signal.store_writer.write_spectrogram_store`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.constants import DATASETS, SpectrogramSettings
from .store_writer import write_spectrogram_store

__all__ = ["build_spectrogram_stores", "collect_signal_paths"]

RESAMPLE_REPORT = "report.json"  # written by the resample stage, records its sample_rate


def collect_signal_paths(dataset_dir: Path | str) -> dict[str, Path]:
    """Map clip ids to the ``<clip_id>.npy`` signal files of one resampled dataset.

    Parameters
    ----------
    dataset_dir : Path
        Directory holding the resampled signals of one dataset.

    Returns
    -------
    dict[str, Path]
        ``clip_id -> path``, sorted by clip id.
    """
    # Hidden files are temporaries of an interrupted atomic write, not clips.
    return {
        p.stem: p
        for p in sorted(Path(dataset_dir).glob("*.npy"))
        if p.is_file() and not p.name.startswith(".")
    }


def build_spectrogram_stores(
    resampled_dir: Path | str,
    out_dir: Path | str,
    settings: SpectrogramSettings = SpectrogramSettings(),
    *,
    datasets: tuple[str, ...] = DATASETS,
    jobs: int = 0,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Write ``out_dir/<dataset>/`` stores for each dataset present in ``resampled_dir``.

    A dataset directory may be absent (e.g. a user with only one corpus); at least one
    must be present.

    Parameters
    ----------
    resampled_dir : Path
        Directory with one subdirectory of ``<clip_id>.npy`` signals per dataset.
    out_dir : Path
        Directory receiving one store per dataset.
    settings : SpectrogramSettings
        The spectrogram's parameters.
    datasets : tuple of str
        Dataset subdirectory names to look for.
    jobs, progress
        See :func:`write_spectrogram_store`.

    Returns
    -------
    dict[str, dict]
        ``dataset -> stats`` for each store written.

    Raises
    ------
    FileNotFoundError
        If none of the dataset directories exists.
    ValueError
        If a present dataset directory holds no ``.npy`` signals, or the resample
        stage's ``report.json`` records a sample rate other than ``sample_rate``.
    """
    resampled_dir, out_dir = Path(resampled_dir), Path(out_dir)
    _check_resampled_rate(resampled_dir, settings.sample_rate)
    present = [name for name in datasets if (resampled_dir / name).is_dir()]
    if not present:
        raise FileNotFoundError(
            f"none of the dataset directories {list(datasets)} exists in {resampled_dir}"
        )
    results = {}
    for name in present:
        paths = collect_signal_paths(resampled_dir / name)
        if not paths:
            raise ValueError(f"{resampled_dir / name} holds no <clip_id>.npy signals")
        results[name] = write_spectrogram_store(
            paths, out_dir / name, settings, jobs=jobs, progress=progress
        )
    return results


def _check_resampled_rate(resampled_dir: Path, sample_rate: int) -> None:
    """The signals carry no rate of their own; the resample stage's report does."""
    report_path = resampled_dir / RESAMPLE_REPORT
    if not report_path.is_file():
        return  # signals produced by other means: the caller vouches for the rate
    try:
        recorded = json.loads(report_path.read_text(encoding="utf-8")).get("sample_rate")
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"cannot read the sample rate from {report_path}: {exc}") from exc
    if recorded is not None and recorded != sample_rate:
        raise ValueError(
            f"the signals in {resampled_dir} are at {recorded} Hz ({report_path}) but the "
            f"spectrogram filterbank is built for sample_rate={sample_rate} Hz"
        )

