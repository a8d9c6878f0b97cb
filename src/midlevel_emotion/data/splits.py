"""The splits of the protocol (Sections 4 and 6): which labelled clips train, validate, test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.errors import CorpusError
from .labels import _natural


def align(ids: list[str], available: set[str], what: str, decisions: list[str]) -> list[str]:
    """Keep the labelled ids that have a spectrogram, recording every one left out.

    Parameters
    ----------
    ids : list of str
        Labelled clip ids.
    available : set of str
        Clip ids that have audio (a spectrogram).
    what : str
        Dataset name for the messages.
    decisions : list of str
        Appended to: one line per excluded clip, in either direction.
    """
    kept = [i for i in ids if i in available]
    for i in sorted(set(ids) - available, key=_natural):
        decisions.append(f"{what} clip {i}: has labels but no usable audio (missing or failed to "
                         "decode, see data/resampled/report.json); excluded")
    for i in sorted(available - set(ids), key=_natural):
        decisions.append(f"{what} clip {i}: has audio but no labels; excluded")
    return kept


def artist_disjoint_split(metadata: pd.DataFrame, ids: list[str], *, test_fraction: float,
                          seed: int) -> tuple[list[str], list[str]]:
    """The A2Mid+ test split as Aljanaki & Soleymani made it: tracks of single-track artists.

    Tracks whose artist appears exactly once in the data are candidates, so no artist is in
    both train and test; ``test_fraction`` of all tracks are drawn from them (all of them when
    there are fewer, which the caller can see from the returned sizes).
    """
    rows = metadata.loc[[i for i in ids if i in metadata.index]]
    counts = rows["artist"].str.lower().value_counts()
    singles = [i for i in ids if i in rows.index and counts[rows.loc[i, "artist"].lower()] == 1]
    if not singles:
        raise CorpusError("artist-disjoint split: no artist appears exactly once in metadata.csv")
    rng = np.random.default_rng(seed)
    n_test = min(len(singles), max(1, round(test_fraction * len(ids))))
    test = sorted(rng.choice(singles, size=n_test, replace=False).tolist(), key=_natural)
    test_set = set(test)
    return [i for i in ids if i not in test_set], test


@dataclass(frozen=True)
class Split:
    """One run's split of the Soundtracks clips, shared by every model of that run."""

    seed: int
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def holdout(ids: list[str], *, fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Hold out a random ``fraction`` of ``ids`` (at least one): returns ``(rest, held_out)``."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    ids = sorted(ids, key=_natural)
    order = np.random.default_rng(seed).permutation(len(ids))
    n_held = max(1, round(fraction * len(ids)))
    if len(ids) - n_held < 2:
        raise ValueError(f"{len(ids)} clips are too few to hold out {fraction:g} of them")
    held = set(order[:n_held].tolist())
    return ([i for k, i in enumerate(ids) if k not in held], [i for k, i in enumerate(ids) if k in held])


def random_split(ids: list[str], *, seed: int, test_fraction: float,
                 validation_fraction: float) -> Split:
    """A random train/validation/test split; validation is carved out of train.

    ``validation_fraction`` is a share of the training part (early stopping only).
    """
    rest, test = holdout(ids, fraction=test_fraction, seed=seed)
    train, validation = holdout(rest, fraction=validation_fraction, seed=seed + 1)
    return Split(seed, tuple(train), tuple(validation), tuple(test))
