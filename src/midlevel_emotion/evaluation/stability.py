"""Stability of the explanations: how much the runs' learned weights agree with each other."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..learning.scores import pearson


def _stacked_weights(weights: Mapping[int, np.ndarray]) -> np.ndarray:
    """The runs' emotion layers as one (n_runs, 8, 7) array, in seed order."""
    stacked = [np.asarray(weights[s], dtype=np.float64) for s in sorted(weights)]
    shape = (len(EMOTIONS), len(MIDLEVEL_FEATURES))
    for seed, w in zip(sorted(weights), stacked):
        if w.shape != shape:
            raise ValueError(f"seed {seed}: emotion layer of shape {w.shape}, expected {shape}")
    return np.stack(stacked) if stacked else np.empty((0, *shape))


def sign_agreement_per_weight(weights: Mapping[int, np.ndarray]) -> np.ndarray:
    """Per weight, the share of runs whose sign equals the majority sign.

    Parameters
    ----------
    weights : mapping
        Seed -> the run's emotion layer, shape (8, 7) (rows emotions, columns features).

    Returns
    -------
    np.ndarray
        Shape (8, 7), values in [0, 1]: 1 = every run gives the weight the same sign. Signs
        are -1, 0 and +1 (an exactly zero weight is its own class: it states no direction, so
        it agrees only with other exact zeros); a non-finite weight has no sign and agrees
        with none. With two runs that split, the share is 1/2.

    Raises
    ------
    ValueError
        No runs, or a matrix that is not 8x7.
    """
    w = _stacked_weights(weights)
    if not len(w):
        raise ValueError("sign agreement needs at least one run")
    signs = np.sign(w)  # NaN stays NaN and so equals none of the three classes below
    counts = np.stack([(signs == s).sum(axis=0) for s in (-1.0, 0.0, 1.0)])
    return counts.max(axis=0) / len(w)


def weight_stability(weights: Mapping[int, np.ndarray]) -> dict[str, float | int | None]:
    """How much the runs of one model agree on its mid-level -> emotion layer.

    Compares the runs with each other, not with a truth, so it applies to real data too: an
    explanation that changes from run to run (seed: split and initialisation) explains the
    run more than the music.

    Parameters
    ----------
    weights : mapping
        Seed -> the run's emotion layer, shape (8, 7), as
        :func:`midlevel_emotion.evaluation.collect.learned_weights` gives them.

    Returns
    -------
    dict
        - ``n_runs``: runs compared.
        - ``pairwise_r_mean``, ``pairwise_r_min``: Pearson r (:func:`midlevel_emotion.learning.scores.pearson`)
          between the flattened 56 weights of two runs, mean and minimum over every pair
          of runs. Scale-free, like ``weight_correlation`` against the planted map: two runs
          whose layers differ only by a positive factor have r = 1.
        - ``n_pairs``: pairs whose r is defined (the mean and min are over these).
        - ``degenerate_runs``: runs whose layer is constant (e.g. all zeros) or holds a
          non-finite weight. Their r with any run is undefined (no variance, or no value), so their
          pairs are reported as missing, not raised on and not counted as 0: the same rule as
          a NaN test r in :mod:`midlevel_emotion.evaluation.statistics`. When every pair is
          undefined the r values are None.
        - ``sign_agreement_mean``, ``sign_agreement_min``: mean and minimum over the 56
          weights of :func:`sign_agreement_per_weight`.

        With fewer than 2 runs there is nothing to compare: every value except ``n_runs``,
        ``n_pairs`` (0) and ``degenerate_runs`` is None (as
        :func:`~midlevel_emotion.evaluation.statistics.mean_std` gives no std for one run),
        never a made-up 1.

    Raises
    ------
    ValueError
        A matrix that is not 8x7.
    """
    w = _stacked_weights(weights)
    n = len(w)
    flat = w.reshape(n, len(EMOTIONS) * len(MIDLEVEL_FEATURES))
    # constant or non-finite: no variance to correlate (NaN ptp compares False, hence both tests)
    degenerate = int(np.sum(~np.isfinite(flat).all(axis=1) | (np.ptp(flat, axis=1) == 0)))
    out: dict[str, float | int | None] = {
        "n_runs": n, "pairwise_r_mean": None, "pairwise_r_min": None, "n_pairs": 0,
        "degenerate_runs": degenerate, "sign_agreement_mean": None, "sign_agreement_min": None}
    if n < 2:
        return out
    first, second = np.triu_indices(n, k=1)
    # pearson correlates column by column: one column per pair of runs
    r = pearson(flat[first].T, flat[second].T)
    r = r[np.isfinite(r)]
    if r.size:
        out.update(pairwise_r_mean=float(r.mean()), pairwise_r_min=float(r.min()), n_pairs=int(r.size))
    agreement = sign_agreement_per_weight(weights)
    out.update(sign_agreement_mean=float(agreement.mean()), sign_agreement_min=float(agreement.min()))
    return out


def explanation_stability(learned: Mapping[str, dict[int, np.ndarray] | str]
                          ) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, str]]:
    """:func:`weight_stability` of every model :func:`~midlevel_emotion.evaluation.collect.learned_weights` read.

    Parameters
    ----------
    learned : mapping
        Model -> {seed: (8, 7) emotion layer}, or a reason string when it has none (the
        same input as :func:`~midlevel_emotion.evaluation.planted_truth.explanation_truth`).

    Returns
    -------
    metrics : dict
        ``{model: weight_stability(...)}`` (scalars only, for the metrics file).
    per_weight : dict
        Model -> :func:`sign_agreement_per_weight`, (8, 7), for models with 2+ runs (for the
        report; a matrix has no place in the metrics file).
    skipped : dict
        Model -> why it has no weights.
    """
    metrics: dict[str, Any] = {}
    per_weight: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for name, per_seed in learned.items():
        if isinstance(per_seed, str):
            skipped[name] = per_seed
            continue
        metrics[name] = weight_stability(per_seed)
        if len(per_seed) >= 2:
            per_weight[name] = sign_agreement_per_weight(per_seed)
    return metrics, per_weight, skipped
