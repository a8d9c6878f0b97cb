"""What ``midlevel-emotion explain FILE --plot OUT`` draws: the effects of every feature on every
emotion (one window), or the emotions and features over time (a song).

matplotlib is imported only when a chart is drawn, so the other commands never load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .output import n_windows, names, num, seconds, source_name


def _reliability_label(exp: Any, feature: str) -> str:
    """A chart's name for a feature with its test r, e.g. ``minorness (r -0.07) *`` (``*``: unreliable)."""
    r = exp.reliability.get(feature)
    label = feature if r is None else f"{feature} (r {num(r, 2)})"
    return f"{label} *" if feature in exp.unreliable else label


def plot(exp: Any, out: Path, warning: str | None) -> None:
    """Draw the effects (one window) or the curves over time (a song) to ``out``, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from ..core.fileio import atomic_write

    title = f"{Path(source_name(exp)).name}  ({seconds(exp.duration_seconds)})"
    if n_windows(exp) > 1:
        fig = _draw_curves(exp)
    else:
        fig = _draw_effects(exp)
        title += _effects_caption(exp)
    if warning:
        fig.suptitle(f"{title}\nWARNING: {warning}", color="black", fontsize="medium")
    else:
        fig.suptitle(title, fontsize="medium")
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix.lstrip(".").lower(), dpi=110))
    finally:
        plt.close(fig)


def _draw_curves(exp: Any) -> Any:
    """A song: the emotions (top) and the mid-level features (bottom) at every window's centre."""
    import matplotlib.pyplot as plt

    features, emotions = names()
    times = [float(t) + exp.window_seconds / 2 for t in exp.times]
    fig, axes = plt.subplots(2, 1, figsize=(12, 8), sharex=True, constrained_layout=True)
    marked = [_reliability_label(exp, f) for f in features]
    for ax, labels, curve, what in ((axes[0], emotions, exp.emotion_curve, "emotion"),
                                    (axes[1], marked, exp.midlevel_curve, "mid-level feature")):
        cmap = plt.get_cmap("tab10")
        for j, name in enumerate(labels):
            ax.plot(times, [row[j] for row in curve], label=name, color=cmap(j), marker=".", lw=1.5)
        ax.set_ylabel(f"predicted {what}")
        ax.grid(alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    axes[1].set_xlabel(f"time [s] (centre of each {exp.window_seconds:.1f} s window, "
                       f"hop {exp.hop_seconds:.1f} s)")
    axes[0].set_title("Emotions over time")
    axes[1].set_title("Mid-level features over time")
    return fig


def _draw_effects(exp: Any) -> Any:
    """One window: a panel per emotion, a bar per feature effect and the bias (whiskers: the runs)."""
    import matplotlib.pyplot as plt

    features, emotions = names()
    fig, axes = plt.subplots(2, 4, figsize=(15, 7.5), sharey=True, constrained_layout=True)
    labels = [_reliability_label(exp, f) for f in features] + ["bias"]
    ranges = [(exp.spread[e][f]["min"], exp.spread[e][f]["max"]) if exp.n_runs > 1 else (exp.effects[e][f],) * 2
              for e in emotions for f in features]
    limit = max(max(abs(x) for pair in ranges for x in pair),
                max(abs(exp.bias[e]) for e in emotions), 1e-6) * 1.1
    for ax, e in zip(axes.flat, emotions):
        values = [exp.effects[e][f] for f in features] + [exp.bias[e]]
        colours = ["tab:red" if v > 0 else "tab:blue" for v in values[:-1]] + ["0.6"]
        bars = ax.barh(range(len(labels)), values, color=colours)
        for bar, f in zip(bars, features):
            if f in exp.unreliable:  # faded and hatched: an effect of a feature the model hears poorly
                bar.set_alpha(0.35)
                bar.set_hatch("//")
        if exp.n_runs > 1:  # whiskers: the smallest and largest effect among the runs
            low = [exp.effects[e][f] - exp.spread[e][f]["min"] for f in features]
            high = [exp.spread[e][f]["max"] - exp.effects[e][f] for f in features]
            ax.errorbar([exp.effects[e][f] for f in features], range(len(features)), xerr=[low, high],
                        fmt="none", ecolor="black", elinewidth=1, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlim(-limit, limit)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_title(f"{e} = {exp.emotions[e]:.3f}")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("effect (weight x value)")
    axes.flat[0].invert_yaxis()  # once: the y axis is shared; features top to bottom, bias last
    return fig


def _effects_caption(exp: Any) -> str:
    """The effects chart's title after the file name: how to read it, the runs, the ``*``."""
    title = "  effects on each emotion; effects + bias = prediction"
    if exp.n_runs > 1:
        title += f"\nmean of {exp.n_runs} runs; whiskers: smallest and largest effect among the runs"
    if exp.unreliable:
        title += f"\n* hatched: unreliable (test r below {exp.min_feature_r:.2f})"
    return title
