"""The figures of Section 7 (matplotlib only, Agg canvas, no pyplot state).

Each function takes arrays and an output path and writes one 150-dpi PNG atomically
(:func:`midlevel_emotion.core.fileio.atomic_write`), so an interrupted run never leaves a
half-written image. Values are on the paper's scale (ratings and annotations / 10).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..core.fileio import atomic_write

DPI = 150
COLOR_A = "#d62728"  # red: song A (square), as in the paper's Figure 3
COLOR_B = "#1f77b4"  # blue: song B (dot)
EFFECT_UNIT = "effect  w·x  (emotion rating / 10)"
# Matplotlib 3.10 replaced boxplot(vert=False) by orientation="horizontal" (vert warns from 3.11).
_HORIZONTAL = ({"orientation": "horizontal"}
               if tuple(int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 10) else {"vert": False})


def _label(name: str) -> str:
    return name.replace("_", " ")


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path | str) -> Path:
    """Write ``figure`` as a PNG atomically, with the permissions the user's umask gives."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=DPI, format="png"))


def effects_figure(effects: np.ndarray, path: Path | str, *, example_a: int | None = None,
                   example_b: int | None = None, label_a: str = "song A", label_b: str = "song B",
                   title: str = "Effects of the mid-level features on the emotion predictions",
                   features: Sequence[str] = MIDLEVEL_FEATURES, emotions: Sequence[str] = EMOTIONS) -> Path:
    """Figure 3: per emotion, boxplots over songs of each feature's effect ``w_ij * x_j``.

    Parameters
    ----------
    effects : np.ndarray
        (n_songs, n_emotions, n_features).
    example_a, example_b : int, optional
        Rows of the two highlighted songs (red square, blue dot).
    """
    effects = np.asarray(effects, dtype=np.float64)
    n_songs, n_emotions, n_features = effects.shape
    if (n_emotions, n_features) != (len(emotions), len(features)):
        raise ValueError(f"effects shape {effects.shape} does not match {len(emotions)} emotions x "
                         f"{len(features)} features")
    columns = 4
    rows = int(np.ceil(n_emotions / columns))
    figure = _new_figure(16, 3.4 * rows + 1.0)
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    positions = np.arange(n_features)[::-1]  # first feature on top
    low, high = float(effects.min()), float(effects.max())
    pad = 0.05 * max(high - low, 1e-6)
    for k, ax in enumerate(axes.flat):
        if k >= n_emotions:
            ax.set_visible(False)
            continue
        ax.axvline(0.0, color="0.55", linewidth=0.8, zorder=0)
        ax.boxplot([effects[:, k, j] for j in range(n_features)], positions=positions, widths=0.6, **_HORIZONTAL,
                   patch_artist=True, showfliers=True,
                   boxprops={"facecolor": "0.88", "edgecolor": "0.35"},
                   medianprops={"color": "0.1", "linewidth": 1.2},
                   whiskerprops={"color": "0.35"}, capprops={"color": "0.35"},
                   flierprops={"marker": ".", "markersize": 3, "markerfacecolor": "0.5", "markeredgecolor": "none"})
        if example_a is not None:
            ax.plot(effects[example_a, k], positions + 0.12, linestyle="none", marker="s", markersize=6,
                    color=COLOR_A, markeredgecolor="white", markeredgewidth=0.5, zorder=3)
        if example_b is not None:
            ax.plot(effects[example_b, k], positions - 0.12, linestyle="none", marker="o", markersize=6,
                    color=COLOR_B, markeredgecolor="white", markeredgewidth=0.5, zorder=3)
        ax.set_title(_label(emotions[k]), fontsize=12, fontweight="bold")
        ax.set_yticks(positions, [_label(f) for f in features], fontsize=10)
        ax.tick_params(axis="x", labelsize=9)
        ax.grid(axis="x", color="0.92", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_xlim(low - pad, high + pad)
        if k // columns == rows - 1:
            ax.set_xlabel(EFFECT_UNIT, fontsize=10)
    handles = [Patch(facecolor="0.88", edgecolor="0.35", label=f"all {n_songs} songs (box: quartiles, "
                     "whiskers: 1.5 IQR)")]
    if example_a is not None:
        handles.append(Line2D([], [], linestyle="none", marker="s", color=COLOR_A, markersize=7, label=label_a))
    if example_b is not None:
        handles.append(Line2D([], [], linestyle="none", marker="o", color=COLOR_B, markersize=7, label=label_b))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=10, frameon=False)
    figure.suptitle(title, fontsize=14)
    return save_figure(figure, path)


def heatmap_figure(matrix: np.ndarray, path: Path | str, *, row_labels: Sequence[str] = MIDLEVEL_FEATURES,
                   col_labels: Sequence[str] = EMOTIONS, title: str = "", colorbar_label: str = "",
                   limit: float | None = None, fmt: str = "{:.2f}", row_title: str = "mid-level feature",
                   col_title: str = "emotion") -> Path:
    """Figures 4 and 5: an annotated heatmap, diverging colormap centred at 0.

    Parameters
    ----------
    matrix : np.ndarray
        (n_rows, n_cols); NaN cells are shown blank with "n/a".
    limit : float, optional
        Colour scale ``[-limit, limit]``; default the largest absolute value.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"matrix shape {matrix.shape} does not match {len(row_labels)} x {len(col_labels)} labels")
    finite = matrix[np.isfinite(matrix)]
    if limit is None:
        limit = float(np.max(np.abs(finite))) if finite.size else 1.0
        limit = limit if limit > 0 else 1.0
    figure = _new_figure(1.05 * len(col_labels) + 3.6, 0.62 * len(row_labels) + 2.0)
    ax = figure.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(np.arange(len(col_labels)), [_label(c) for c in col_labels], fontsize=10, rotation=30,
                  ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(len(row_labels)), [_label(r) for r in row_labels], fontsize=10)
    ax.set_xlabel(col_title, fontsize=11)
    ax.set_ylabel(row_title, fontsize=11)
    ax.set_xticks(np.arange(len(col_labels) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(row_labels) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            dark = abs(value) > 0.55 * limit
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=9.5,
                    color="white" if dark else "black")
        else:
            ax.text(j, i, "n/a", ha="center", va="center", fontsize=9, color="0.4")
    colorbar = figure.colorbar(image, ax=ax, shrink=0.9, pad=0.02)
    colorbar.set_label(colorbar_label, fontsize=10)
    colorbar.ax.tick_params(labelsize=9)
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=12)
    return save_figure(figure, path)


def song_pair_effects_figure(effects_a: np.ndarray, effects_b: np.ndarray, path: Path | str, *,
                             label_a: str = "song A", label_b: str = "song B",
                             predicted_a: np.ndarray | None = None, predicted_b: np.ndarray | None = None,
                             bias: np.ndarray | None = None, range_a: np.ndarray | None = None,
                             range_b: np.ndarray | None = None, n_runs: int = 1,
                             title: str = "Why two songs get their emotion predictions: feature effects side by side",
                             features: Sequence[str] = MIDLEVEL_FEATURES,
                             emotions: Sequence[str] = EMOTIONS) -> Path:
    """Per emotion, the 7 effects of song A and song B as paired horizontal bars.

    Parameters
    ----------
    effects_a, effects_b : np.ndarray
        (n_emotions, n_features) effects of each song: with several runs, their mean over runs.
    predicted_a, predicted_b : np.ndarray, optional
        (n_emotions,) predictions, shown in each panel's title.
    bias : np.ndarray, optional
        (n_emotions,) emotion-layer bias (prediction = sum of the effects + bias), shown too.
    range_a, range_b : np.ndarray, optional
        (2, n_emotions, n_features): the smallest and the largest run's effect, drawn as
        whiskers around each bar (given together, for ``n_runs`` > 1).
    n_runs : int
        How many runs the bars summarise; the legend says so.
    """
    effects_a = np.asarray(effects_a, dtype=np.float64)
    effects_b = np.asarray(effects_b, dtype=np.float64)
    if effects_a.shape != (len(emotions), len(features)) or effects_b.shape != effects_a.shape:
        raise ValueError(f"expected two ({len(emotions)}, {len(features)}) arrays, got {effects_a.shape} "
                         f"and {effects_b.shape}")
    ranges = _whisker_ranges(range_a, range_b, effects_a.shape, n_runs)
    columns = 4
    rows = int(np.ceil(len(emotions) / columns))
    figure = _new_figure(16, 3.4 * rows + 1.0)
    axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    positions = np.arange(len(features))[::-1]
    both = np.concatenate([effects_a.ravel(), effects_b.ravel(), [0.0]]
                          + ([r.ravel() for r in ranges] if ranges else []))  # whiskers stay inside the axes
    pad = 0.08 * max(float(both.max() - both.min()), 1e-6)
    height = 0.38
    for k, ax in enumerate(axes.flat):
        if k >= len(emotions):
            ax.set_visible(False)
            continue
        ax.barh(positions + height / 2, effects_a[k], height=height, color=COLOR_A, label=label_a)
        ax.barh(positions - height / 2, effects_b[k], height=height, color=COLOR_B, label=label_b)
        if ranges:
            _whiskers(ax, positions + height / 2, effects_a[k], ranges[0][:, k])
            _whiskers(ax, positions - height / 2, effects_b[k], ranges[1][:, k])
        ax.axvline(0.0, color="0.3", linewidth=0.8)
        name = _label(emotions[k])
        if predicted_a is not None and predicted_b is not None:
            name += f"\npredicted: A {float(predicted_a[k]):.2f}, B {float(predicted_b[k]):.2f}"
            if bias is not None:
                name += f"  (bias {float(bias[k]):+.2f})"
        ax.set_title(name, fontsize=11)
        ax.set_yticks(positions, [_label(f) for f in features], fontsize=10)
        ax.tick_params(axis="x", labelsize=9)
        ax.grid(axis="x", color="0.92", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_xlim(float(both.min()) - pad, float(both.max()) + pad)
        if k // columns == rows - 1:
            ax.set_xlabel(EFFECT_UNIT, fontsize=10)
    handles = [Patch(color=COLOR_A, label=f"A: {label_a}"), Patch(color=COLOR_B, label=f"B: {label_b}")]
    runs = (f"bars, predictions and bias: mean of {n_runs} runs; whiskers: smallest and largest among the runs"
            if ranges else "1 run")
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=10, frameon=False,
                  title=runs, title_fontsize=10)
    figure.suptitle(title, fontsize=14)
    return save_figure(figure, path)


def _whisker_ranges(range_a: np.ndarray | None, range_b: np.ndarray | None, shape: tuple[int, ...],
                    n_runs: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The (2, *shape) min/max arrays of both songs, checked; None for one run (no spread to draw)."""
    given = (range_a is not None) + (range_b is not None)
    if n_runs < 1 or given != (2 if n_runs > 1 else 0):  # the legend must not claim a spread it does not draw
        raise ValueError(f"{n_runs} run(s) need {'range_a and range_b' if n_runs > 1 else 'no ranges'}, "
                         f"got {given} range(s)")
    if n_runs == 1:
        return None
    ranges = (np.asarray(range_a, dtype=np.float64), np.asarray(range_b, dtype=np.float64))
    if any(r.shape != (2, *shape) for r in ranges):
        raise ValueError(f"expected two {(2, *shape)} min/max arrays, got {ranges[0].shape} and {ranges[1].shape}")
    return ranges


def _whiskers(ax: Axes, positions: np.ndarray, values: np.ndarray, low_high: np.ndarray) -> None:
    """Horizontal whiskers from ``low_high[0]`` to ``low_high[1]`` around bars ending at ``values``."""
    # Clipped at 0: a mean equals its runs' extreme only up to rounding, and errorbar rejects
    # negative lengths.
    xerr = np.clip(np.stack([values - low_high[0], low_high[1] - values]), 0.0, None)
    ax.errorbar(values, positions, xerr=xerr, fmt="none", ecolor="0.15", elinewidth=0.9, capsize=2.5)


def not_run_figure(path: Path | str, title: str, reason: str) -> Path:
    """A placeholder image stating why a figure could not be made (keeps DVC outputs complete)."""
    figure = _new_figure(8, 3)
    ax = figure.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.68, title, ha="center", va="center", fontsize=14, fontweight="bold", transform=ax.transAxes)
    ax.text(0.5, 0.35, "\n".join(textwrap.wrap(reason, 80)), ha="center", va="center", fontsize=10,
            transform=ax.transAxes)
    return save_figure(figure, path)
