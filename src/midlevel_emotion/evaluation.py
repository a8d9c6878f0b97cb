"""Scoring: Pearson correlation per target (the paper's metric) and the linear Mid2E map."""

from __future__ import annotations

import numpy as np


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson correlation per column.

    Parameters
    ----------
    y_true, y_pred : np.ndarray
        Arrays of shape (n_samples, n_targets) (or 1-D for one target).

    Returns
    -------
    np.ndarray
        Shape (n_targets,); NaN for a column where either input is constant (the
        correlation is undefined there, and pretending it is 0 would hide a broken model).
    """
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    if a.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a correlation, got {a.shape[0]}")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=0) / denom
    return np.where(denom > 0, r, np.nan)


def fit_linear(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary least squares ``y ~ x @ weight.T + bias`` (the paper's Mid2E / A2Mid2E layer).

    Returns
    -------
    weight : np.ndarray
        Shape (n_targets, n_features), i.e. the layout of ``torch.nn.Linear.weight``.
    bias : np.ndarray
        Shape (n_targets,).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"expected x (n, features) and y (n, targets), got {x.shape} and {y.shape}")
    if len(x) <= x.shape[1]:
        raise ValueError(f"{len(x)} samples are too few to fit {x.shape[1]} weights and a bias")
    design = np.hstack([x, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef[:-1].T.copy(), coef[-1].copy()
