"""What ``midlevel-emotion`` prints: text tables, numbers, JSON-ready values, and the lines on
stdout and stderr.

Kept apart from the commands (:mod:`.main`, :mod:`.explain`) and from the chart
(:mod:`.chart`) so each file holds one concern. No torch or matplotlib import.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence


def out(text: str = "") -> None:
    """One line (or block) on stdout: the result."""
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    """One line on stderr: notes, warnings, errors and progress, never the result."""
    sys.stderr.write(text + "\n")


def dump_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (NaN -> null, see :func:`jsonable`)."""
    out(json.dumps(jsonable(data), indent=2, allow_nan=False))


def print_warning(text: str | None) -> None:
    """The corpus warning on stderr, prefixed ``warning:`` unless it says so already."""
    if text:
        err(text if text.lower().startswith("warning") else f"warning: {text}")


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy arrays and scalars, Paths, NaN -> null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy / torch
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[str] | None], indent: str = "",
          align: str | None = None) -> str:
    """Aligned text table: by default the first column left-aligned, the rest right-aligned.

    ``align`` gives one letter per column ("l" or "r"). A ``None`` row draws a rule (used
    before the bias/prediction rows).
    """
    align = align or "l" + "r" * (len(header) - 1)
    cells = [list(header)] + [list(r) for r in rows if r is not None]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)]
        return (indent + "  ".join(parts)).rstrip()

    rule = indent + "  ".join("-" * w for w in widths)
    out = [line(header), rule]
    out += [rule if row is None else line(row) for row in rows]
    return "\n".join(out)


def num(x: float | None, digits: int = 3, sign: bool = False) -> str:
    """A number for a table (``n/a`` for a missing or non-finite one, never ``-0.000``)."""
    if x is None or not math.isfinite(float(x)):
        return "n/a"
    text = f"{float(x):+.{digits}f}" if sign else f"{float(x):.{digits}f}"
    if text.startswith("-") and float(text) == 0:  # no "-0.000"
        text = ("+" if sign else "") + text[1:]
    return text


def seconds(x: float) -> str:
    """A duration: ``12.3 s``, or ``185.0 s (3:05)`` from a minute up."""
    return f"{x:.1f} s" if x < 60 else f"{x:.1f} s ({int(x // 60)}:{int(x % 60):02d})"


def names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The mid-level feature and emotion names, in model output order."""
    from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES

    return MIDLEVEL_FEATURES, EMOTIONS


def padding_note(exp: Any) -> str | None:
    """The stderr note for a clip shorter than the window (looped to fill it), or None."""
    if not getattr(exp, "padded", False):
        return None
    return (f"note: {exp.source}: {exp.duration_seconds:.1f} s is shorter than the model's "
            f"{exp.window_seconds:.1f} s window; it was looped to fill the window, as in training")


def throughput(clips: int, seconds: float, decode_seconds: float, model_seconds: float) -> str:
    """The batch's stderr line: ``explain: 120 clips in 14.2 s (8.5 clips/s; decode 31 %, model 62 %)``.

    ``clips`` counts the files explained; ``seconds`` is the wall time of the whole loop
    (failed files included, model loading not); decode is decoding, resampling and the
    spectrogram, model the network's set-up and forward passes; the rest (to 100 %) is output
    bookkeeping.
    """
    seconds = max(seconds, 1e-9)  # a clock that did not tick must not divide by zero
    return (f"explain: {clips} clip{'s' * (clips != 1)} in {seconds:.1f} s ({clips / seconds:.1f} clips/s; "
            f"decode {100 * decode_seconds / seconds:.0f} %, model {100 * model_seconds / seconds:.0f} %)")


def n_windows(exp: Any) -> int:
    """How many windows explained ``exp``: 1 for a clip, more for a song."""
    return int(len(exp.times))


def source_name(exp: Any) -> str:
    """The audio file ``exp`` explains, as given."""
    return str(exp.source)


# ---------------------------------------------------------------------------------------
# explain


def _model_line(exp: Any) -> str:
    """Which model explains: one checkpoint, or the runs of an ensemble."""
    ck = exp.checkpoint or {}
    trained = str(ck.get("trained_at") or "?")[:10]
    if getattr(exp, "n_runs", 1) > 1:
        seeds = ", ".join(str(s) for s in ck.get("seeds") or [])
        where = sorted({str(Path(p).parent) for p in ck.get("paths") or []})
        return (f"model: {ck.get('kind', '?')}, the mean of {exp.n_runs} runs (seeds {seeds}) from "
                f"{', '.join(where)} (corpus {ck.get('corpus', '?')}, trained {trained})")
    return (f"model: {ck.get('kind', '?')} from {ck.get('path', '?')} "
            f"(corpus {ck.get('corpus', '?')}, trained {trained})")


def reliability_note(exp: Any) -> str:
    """What the ``test r`` column and the ``*`` mean, with where the numbers come from."""
    runs = getattr(exp, "n_runs", 1)
    where = f"mean over the {runs} runs" if runs > 1 else "recorded by the checkpoint"
    text = (f"test r: how well the model predicts the feature (Pearson r on its held-out test split, {where}); "
            f"* below {exp.min_feature_r:.2f}: unreliable, the model hears this feature too poorly for its "
            "effects to explain much.")
    if not any(v is not None for v in exp.reliability.values()):
        text = "test r: not recorded in the checkpoint; no feature can be marked unreliable."
    return text


def _mark(exp: Any, feature: str, text: str) -> str:
    return text + "*" if feature in exp.unreliable else text + " "


def format_explanation(exp: Any) -> str:
    """The ``explain FILE`` table: features, effects per emotion, bias and prediction (+ curves).

    Every feature shows its test r, and the effects of a feature below the threshold carry a
    ``*``. An ensemble adds the spread of every effect between its runs.
    """
    features, emotions = names()
    n = n_windows(exp)
    lines = [f"{source_name(exp)}: {seconds(exp.duration_seconds)}"]
    if n > 1:
        lines[0] += (f", song-level mean of {n} windows of {exp.window_seconds:.1f} s "
                     f"(hop {exp.hop_seconds:.1f} s)")
    else:
        lines[0] += f", one {exp.window_seconds:.1f} s window" + (" (looped to fill it)" if exp.padded else "")
    lines.append(_model_line(exp))
    lines.append("")
    lines.append("Effect of each mid-level feature on each emotion (weight x feature value);")
    lines.append("effects + bias = prediction" + (" (means over runs)." if exp.n_runs > 1 else "."))
    lines.append("")
    header = ["feature", "value", "test r ", *(e + " " for e in emotions)]  # the space: a column for the *
    rows: list[list[str] | None] = []
    for f in features:
        rows.append([f, num(exp.midlevel[f]), _mark(exp, f, num(exp.reliability.get(f), 2)),
                     *(_mark(exp, f, num(exp.effects[e][f], sign=True)) for e in emotions)])
    rows.append(None)
    rows.append(["bias", "", "", *(num(exp.bias[e], sign=True) + " " for e in emotions)])
    rows.append(["prediction", "", "", *(num(exp.emotions[e]) + " " for e in emotions)])
    if exp.n_runs > 1:
        rows.append(["  +/- (std)", "", "", *(num(exp.emotion_spread[e]["std"]) + " " for e in emotions)])
    lines.append(table(header, rows))
    lines.append("")
    lines.append(reliability_note(exp))
    if exp.n_runs > 1:
        lines.append("")
        lines.append(_spread_text(exp))
    # One line per emotion naming its strongest driver: the readable summary.
    lines.append("")
    lines.append("Strongest feature effect per emotion:")
    for e in emotions:
        top = max(features, key=lambda f: abs(exp.effects[e][f]))
        notes = []
        if exp.n_runs > 1:
            agree = exp.spread[e][top]["sign_agreement"]
            notes.append(f"{round(agree * exp.n_runs)} of {exp.n_runs} runs agree on its sign")
        if top in exp.unreliable:
            notes.append("unreliable feature")
        note = f"; {', '.join(notes)}" if notes else ""
        lines.append(f"  {e:<8} {num(exp.emotions[e]):>7}  mostly {top} ({num(exp.effects[e][top], sign=True)}{note})")
    if n > 1:
        lines.append("")
        lines.append(_curve_text(exp))
    return "\n".join(lines)


def _spread_text(exp: Any) -> str:
    """The ensemble's second table: each effect's standard deviation between runs, and how many
    runs agree on its sign where not all do."""
    features, emotions = names()
    runs = exp.n_runs
    lines = [f"Spread of each effect between the {runs} runs: standard deviation, and [k/{runs}] where only "
             f"k of the {runs} runs agree on its sign.", ""]
    rows = []
    for f in features:
        cells = []
        for e in emotions:
            cell = exp.spread[e][f]
            agree = round(cell["sign_agreement"] * runs)
            cells.append(num(cell["std"]) + (f" [{agree}/{runs}]" if agree < runs else ""))
        rows.append([f, *cells])
    lines.append(table(["feature", *emotions], rows))
    return "\n".join(lines)


def _curve_text(exp: Any) -> str:
    features, emotions = names()
    times = [float(t) for t in exp.times]
    lines = [f"Over time (one row per {exp.window_seconds:.1f} s window; time = where it starts, in s):", ""]
    rows = [[f"{t:.1f}", *(num(v, 2) for v in exp.emotion_curve[i])] for i, t in enumerate(times)]
    lines.append(table(["time", *emotions], rows, indent="  "))
    lines.append("")
    short = [f.replace("rhythm_", "rhythm ").replace("tonal_", "tonal ") for f in features]
    rows = [[f"{t:.1f}", *(num(v, 2) for v in exp.midlevel_curve[i])] for i, t in enumerate(times)]
    lines.append(table(["time", *short], rows, indent="  "))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# compare and info


def format_comparison(a: Any, b: Any, result: dict, top: int) -> str:
    """Table 4 style: both emotion profiles, A - B, and the features behind each difference.

    Follows ``explanation.compare``: differences are A minus B, and for each emotion the
    feature differences (effect in A - effect in B) plus the bias difference add up to it.
    """
    features, emotions = names()
    lines = [f"A = {a.source} ({seconds(a.duration_seconds)})",
             f"B = {b.source} ({seconds(b.duration_seconds)})", _model_line(a), ""]
    lines.append("Emotions of A and B, and the mid-level features that make them differ")
    lines.append("(feature's share = its effect in A - its effect in B = weight x (A value - B value);")
    lines.append(" the shares of all seven features add up to A - B).")
    lines.append("")
    rows = []
    for e in emotions:
        entry = result["emotions"][e]
        ranked = entry["features"][:top]
        text = ", ".join(f"{r['feature']}{'*' if r.get('unreliable') else ''} {num(r['difference'], sign=True)}"
                         + _agreement(r.get("spread"), a.n_runs) for r in ranked)
        if abs(float(entry.get("bias_difference", 0.0))) > 5e-4:
            text += f", bias {num(entry['bias_difference'], sign=True)}"
        rows.append([e, num(entry["a"]), num(entry["b"]), num(entry["difference"], sign=True), text])
    lines.append(table(["emotion", "A", "B", "A - B", f"main drivers of A - B (top {top})"], rows,
                        align="lrrrl"))
    lines.append("")
    lines.append("Mid-level features:")
    lines.append("")
    rows = [[f, num(a.midlevel[f]), num(b.midlevel[f]), num(a.midlevel[f] - b.midlevel[f], sign=True),
             _mark(a, f, num(a.reliability.get(f), 2))] for f in features]
    lines.append(table(["feature", "A", "B", "A - B", "test r"], rows))
    lines.append("")
    lines.append(reliability_note(a))
    if a.n_runs > 1:
        lines.append(f"[k/{a.n_runs}]: only k of the {a.n_runs} runs agree on the sign of that feature's share.")
    if not result.get("same_model", True):
        lines.append("")
        lines.append("note: A and B were explained by different models; bias differences are listed.")
    return "\n".join(lines)


def _agreement(spread: dict | None, runs: int) -> str:
    """`` [2/3]`` when only 2 of 3 runs agree on the sign, else nothing."""
    if not spread:
        return ""
    agree = round(spread["sign_agreement"] * runs)
    return f" [{agree}/{runs}]" if agree < runs else ""


def format_info(info: dict) -> str:
    """The ``info`` table: what the checkpoint is, and its recorded test correlations."""
    features, emotions = names()
    spec = info.get("spectrogram") or {}
    window = info.get("input") or {}
    rows = [
        ("checkpoint", f"{info['path']} ({info['size_bytes'] / 1e6:.1f} MB)"),
        ("model", info["description"]),
        ("explainable", "yes: `explain` shows effects of mid-level features" if info["explainable"]
         else "no: `explain` needs a joint or a2mid2e checkpoint"),
        ("corpus", str(info.get("corpus", "?"))),
        ("trained", str(info.get("trained_at", "?"))),
        ("params hash", str(info.get("params_hash", "?"))),
        ("seed", str(info.get("seed", "?"))),
        ("window", f"{float(window.get('crop_seconds', float('nan'))):.2f} s "
                   f"({window.get('crop_frames', '?')} frames at {spec.get('fps', '?')} fps), "
                   f"evaluation hop {window.get('eval_hop_seconds', '?')} s"),
        ("spectrogram", ", ".join(f"{k} {_fmt_value(spec[k])}" for k in spec)),
        ("parameters", f"{info['n_parameters']:,} trainable"),
        ("format", f"{info.get('format', '?')} v{info.get('version', '?')}"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    pearson = info.get("test_pearson") or {}
    lines.append("")
    if not pearson:
        lines.append("test Pearson r: not recorded in this checkpoint")
        return "\n".join(lines)
    lines.append("test Pearson r (held-out test split):")
    order = [n for n in (*features, *emotions) if n in pearson] + sorted(set(pearson) - {*features, *emotions})
    lines.append(table(["target", "r"], [[n, num(_float(pearson[n]))] for n in order], indent="  "))
    for group, group_names in (("mid-level", features), ("emotion", emotions)):
        values = [_float(pearson[n]) for n in group_names if n in pearson]
        values = [v for v in values if v is not None and math.isfinite(v)]
        if values:
            lines.append(f"  mean {group} r: {sum(values) / len(values):.3f} over {len(values)} targets")
    return "\n".join(lines)


def _float(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _fmt_value(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)
