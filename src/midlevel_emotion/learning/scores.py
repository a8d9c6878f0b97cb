"""Scores: Pearson correlation per target (the paper's metric), the least-squares linear map
(Mid2E, A2Mid2E) and test MSE against the predict-the-train-mean baseline.

Kept apart from :mod:`midlevel_emotion.evaluation.evaluate_stage` so that training, which scores every
validation epoch, does not depend on the report code.
"""

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


def mse_vs_baseline(y_train: np.ndarray, y_test: np.ndarray,
                    prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Test MSE of the model and of the predict-the-train-mean baseline, per target.

    Pearson r is undefined for a constant predictor, so the baseline is compared in MSE.

    Parameters
    ----------
    y_train, y_test, prediction : np.ndarray
        Training targets (their mean is the baseline), test targets and the model's test
        predictions, each (n_clips, n_targets).

    Returns
    -------
    model, baseline : np.ndarray
        Shape (n_targets,) each: mean over test clips of the squared error.
    """
    y_test = np.asarray(y_test, dtype=np.float64)
    baseline = np.asarray(y_train, dtype=np.float64).mean(axis=0)
    model = np.mean((np.asarray(prediction, dtype=np.float64) - y_test) ** 2, axis=0)
    return model, np.mean((baseline - y_test) ** 2, axis=0)
