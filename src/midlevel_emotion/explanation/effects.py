"""Feature effects: how a linear mid-level -> emotion layer turns a prediction into reasons (paper Section 7).

In the Joint model (and A2Mid2E) the emotion layer is a plain ``Linear(7, 8)`` on the
mid-level output, so every emotion prediction is a sum of *feature effects* plus a bias::

    emotion_i = sum_j  w_ij * x_j  +  b_i        effect_ij = w_ij * x_j

where ``x`` is the predicted mid-level vector. This module holds that arithmetic, the spread of
a quantity over runs, and how far each feature's prediction can be trusted (its test r).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..core.errors import CheckpointError


def effects(weight: np.ndarray, bias: np.ndarray, midlevel: np.ndarray) -> np.ndarray:
    """Feature effects ``effect_ij = w_ij * x_j`` of a linear mid-level -> emotion layer.

    Parameters
    ----------
    weight : np.ndarray
        (8, 7): one row per emotion, one column per mid-level feature (``Linear.weight``).
    bias : np.ndarray
        (8,). Not part of any effect; it is taken so that callers pass the layer as a whole
        and the shapes are checked: ``effects(...).sum(-1) + bias`` is the emotion prediction.
    midlevel : np.ndarray
        (..., 7) mid-level values (one song, a curve of windows, or many songs).

    Returns
    -------
    np.ndarray
        (..., 8, 7) float64.
    """
    weight = np.asarray(weight, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    midlevel = np.asarray(midlevel, dtype=np.float64)
    n_out, n_in = len(EMOTIONS), len(MIDLEVEL_FEATURES)
    if weight.shape != (n_out, n_in) or bias.shape != (n_out,):
        raise ValueError(f"expected weight {(n_out, n_in)} and bias {(n_out,)}, got {weight.shape} and {bias.shape}")
    if midlevel.shape[-1:] != (n_in,):
        raise ValueError(f"expected mid-level values of shape (..., {n_in}), got {midlevel.shape}")
    return midlevel[..., None, :] * weight


def spread(values: np.ndarray) -> dict[str, float]:
    """``std`` (ddof=1), ``min``, ``max`` and ``sign_agreement`` of one quantity over runs (axis 0).

    ``sign_agreement`` is the share of runs whose value has the sign of the mean (a mean of
    exactly 0 agrees with zeros only). One run has no std (NaN), is its own range and agrees
    with itself.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) < 1:
        raise ValueError(f"a spread needs one value per run, got shape {values.shape}")
    mean_sign = np.sign(values.mean())
    std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return {"std": std, "min": float(values.min()), "max": float(values.max()),
            "sign_agreement": float(np.mean(np.sign(values) == mean_sign))}


def emotion_layer(model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The (8, 7) weight and (8,) bias of an explainable model's emotion layer, as float64."""
    layer = getattr(model, "emotion_layer", None)
    if not isinstance(layer, torch.nn.Linear):
        raise CheckpointError(f"{type(model).__name__} has no linear emotion layer on a mid-level bottleneck")
    return (layer.weight.detach().cpu().double().numpy().copy(),
            layer.bias.detach().cpu().double().numpy().copy())


def feature_reliability(meta: dict) -> dict[str, float | None]:
    """feature -> the test Pearson r the checkpoint recorded for it (None where it recorded none)."""
    pearson = meta.get("test_pearson") or {}
    out: dict[str, float | None] = {}
    for feature in MIDLEVEL_FEATURES:
        try:
            value = float(pearson[feature])
        except (KeyError, TypeError, ValueError):
            value = None
        out[feature] = value if value is not None and math.isfinite(value) else None
    return out


def check_min_feature_r(value: float) -> float:
    """``value`` as a float in [-1, 1], the range of a Pearson r; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= float(value) <= 1.0:
        raise ValueError(f"min_feature_r must be a number from -1 to 1 (a Pearson r), got {value!r}")
    return float(value)


__all__ = ["check_min_feature_r", "effects", "emotion_layer", "feature_reliability", "spread"]
