"""``midlevel-emotion``: explain the emotion of your own audio files through mid-level features.

The Joint model (A2Mid2E-Joint) predicts seven mid-level perceptual features from audio and
eight emotions from those seven through one linear layer, so every emotion is exactly a sum
of feature effects (weight x feature value) plus a bias. This command shows that sum.

Commands
--------
``explain FILE``                 table of features, emotions and effects (``--json``, ``--plot``)
``explain DIR_OR_FILES... --csv``  many files, one CSV row each
``compare A B``                  two songs side by side (the paper's Section 7.2 view)
``info [CHECKPOINT]``            what a checkpoint is

Exit status: 0 success; 1 failure (model error, some files of a batch failed, output not
written); 2 usage or input error (bad arguments, missing, unreadable or non-audio input,
missing or incompatible checkpoint); 130 interrupted. Errors are one line on stderr,
``--debug`` adds the traceback.

Heavy imports (torch, matplotlib) happen inside the commands so ``--help`` and
``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import __version__

PROG = "midlevel-emotion"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
AUDIO_SUFFIXES: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg")  # what libsndfile decodes here
PLOT_SUFFIXES: tuple[str, ...] = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
DEFAULT_CHECKPOINT_TEXT = "models/joint/joint_seed_0.pt"  # explanation.DEFAULT_CHECKPOINT, without importing torch
EXPLAINABLE_KINDS = ("joint", "a2mid2e")
KIND_DESCRIPTIONS = {
    "joint": "A2Mid2E-Joint: audio -> 7 mid-level features -> 8 emotions, trained jointly (explainable)",
    "a2mid2e": "A2Mid2E: audio -> 7 mid-level features -> fitted linear regression -> 8 emotions (explainable)",
    "a2mid": "A2Mid: audio -> 7 mid-level features (no emotion output)",
    "a2e": "A2E: audio -> 8 emotions (black box, no mid-level explanation)",
}


class CLIError(Exception):
    """A failure to report as one line on stderr, with an exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(_one_line(message))  # always one line
        self.code = code


# ---------------------------------------------------------------------------------------
# Small helpers


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy arrays and scalars, Paths, NaN -> null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy / torch
        return _jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _dump_json(data: Any) -> None:
    _out(json.dumps(_jsonable(data), indent=2, allow_nan=False))


def _table(header: Sequence[str], rows: Sequence[Sequence[str] | None], indent: str = "",
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


def _num(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None or not math.isfinite(float(x)):
        return "n/a"
    text = f"{float(x):+.{digits}f}" if sign else f"{float(x):.{digits}f}"
    if text.startswith("-") and float(text) == 0:  # no "-0.000"
        text = ("+" if sign else "") + text[1:]
    return text


def _seconds(x: float) -> str:
    return f"{x:.1f} s" if x < 60 else f"{x:.1f} s ({int(x // 60)}:{int(x % 60):02d})"


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Create ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    from .corpus import EMOTIONS, MIDLEVEL_FEATURES

    return MIDLEVEL_FEATURES, EMOTIONS


# ---------------------------------------------------------------------------------------
# Model and inputs


def _checkpoint_path(args: argparse.Namespace) -> Path:
    if args.checkpoint is not None:
        return Path(args.checkpoint)
    from .explanation import DEFAULT_CHECKPOINT

    return Path(DEFAULT_CHECKPOINT)


def _load_model(path: Path) -> tuple[Any, dict]:
    """The model and its metadata; CheckpointError -> exit 2 (missing or incompatible)."""
    from .explanation import load_model
    from .training import CheckpointError

    try:
        return load_model(path)
    except CheckpointError as err:
        message = str(err)
        if not Path(path).exists():
            message += " (train one with `dvc repro`, or pass --checkpoint PATH)"
        raise CLIError(message, EXIT_USAGE) from err


def _check_input_file(path: Path) -> None:
    """Missing, a directory or unreadable: a usage error before any work is done."""
    if not path.exists():
        raise CLIError(f"{path}: file not found")
    if path.is_dir():
        raise CLIError(f"{path}: is a directory (to explain every audio file in it, add --csv OUT.csv)")
    if not os.access(path, os.R_OK):
        raise CLIError(f"{path}: permission denied")


# What the mp3 decoder inside libsndfile (mpg123) writes straight to file descriptor 2 when
# it meets a damaged file ("Note: Illegal Audio-MPEG-Header ...", "[src/libmpg123/...] error:").
_DECODER_CHATTER = re.compile(r"^(Note|Warning|Error):|^\[[^\]]*\] ")


@contextlib.contextmanager
def _native_stderr(debug: bool) -> Iterator[None]:
    """Keep C-level decoder messages off the terminal: a bad file gets ONE line from us.

    File descriptor 2 is redirected to a temporary file while decoding; afterwards every line
    that is not decoder chatter is passed on (all of them with ``--debug``).
    """
    try:
        saved = os.dup(2)
    except OSError:  # no usable descriptor 2 (embedded interpreter): nothing to guard
        yield
        return
    for stream in (sys.stderr, sys.__stderr__):
        _flush(stream)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stderr, sys.__stderr__):
                _flush(stream)
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            keep = [line for line in text.splitlines() if line.strip() and (debug or not _DECODER_CHATTER.match(line))]
            if keep:
                sys.stderr.write("\n".join(keep) + "\n")


def _flush(stream: Any) -> None:
    try:
        if stream is not None:
            stream.flush()
    except (OSError, ValueError):
        pass


def _explain_one(path: Path, model: tuple[Any, dict], hop: float | None, debug: bool = False) -> Any:
    """Explain one file; AudioError -> exit 2, anything else -> exit 1."""
    from .audio import AudioError
    from .explanation import explain

    try:
        with _native_stderr(debug):
            return explain(path, model, hop_seconds=hop)
    except AudioError as err:
        raise CLIError(_one_line(err), EXIT_USAGE) from err
    except (KeyboardInterrupt, CLIError):
        raise
    except Exception as err:  # noqa: BLE001 - reported as one line, traceback with --debug
        raise CLIError(f"{path}: model failed ({type(err).__name__}: {_one_line(err)})", EXIT_FAILURE) from err


def _warning(meta: dict, explanation: Any = None) -> str | None:
    """The synthetic-corpus warning (the Explanation's own text when there is one)."""
    if explanation is not None and getattr(explanation, "warning", None):
        return _one_line(explanation.warning)
    if str(meta.get("corpus", "")).lower() == "synthetic":
        from .explanation import SYNTHETIC_WARNING

        return _one_line(SYNTHETIC_WARNING)
    return None


def _print_warning(text: str | None) -> None:
    if text:
        _err(text if text.lower().startswith("warning") else f"warning: {text}")


def _padding_note(exp: Any) -> str | None:
    if not getattr(exp, "padded", False):
        return None
    return (f"note: {exp.source}: {exp.duration_seconds:.1f} s is shorter than the model's "
            f"{exp.window_seconds:.1f} s window; it was looped to fill the window, as in training")


def _n_windows(exp: Any) -> int:
    return int(len(exp.times))


def _source_name(exp: Any) -> str:
    return str(exp.source)


# ---------------------------------------------------------------------------------------
# Text output


def _format_explanation(exp: Any) -> str:
    features, emotions = _names()
    n = _n_windows(exp)
    ck = exp.checkpoint or {}
    lines = [f"{_source_name(exp)}: {_seconds(exp.duration_seconds)}"]
    if n > 1:
        lines[0] += (f", song-level mean of {n} windows of {exp.window_seconds:.1f} s "
                     f"(hop {exp.hop_seconds:.1f} s)")
    else:
        lines[0] += f", one {exp.window_seconds:.1f} s window" + (" (looped to fill it)" if exp.padded else "")
    trained = str(ck.get("trained_at") or "?")[:10]
    lines.append(f"model: {ck.get('kind', '?')} from {ck.get('path', '?')} "
                 f"(corpus {ck.get('corpus', '?')}, trained {trained})")
    lines.append("")
    lines.append("Effect of each mid-level feature on each emotion (weight x feature value);")
    lines.append("effects + bias = prediction.")
    lines.append("")
    header = ["feature", "value", *emotions]
    rows: list[list[str] | None] = []
    for f in features:
        rows.append([f, _num(exp.midlevel[f]), *(_num(exp.effects[e][f], sign=True) for e in emotions)])
    rows.append(None)
    rows.append(["bias", "", *(_num(exp.bias[e], sign=True) for e in emotions)])
    rows.append(["prediction", "", *(_num(exp.emotions[e]) for e in emotions)])
    lines.append(_table(header, rows))
    # One line per emotion naming its strongest driver: the readable summary.
    lines.append("")
    lines.append("Strongest feature effect per emotion:")
    for e in emotions:
        top = max(features, key=lambda f: abs(exp.effects[e][f]))
        lines.append(f"  {e:<8} {_num(exp.emotions[e]):>7}  mostly {top} ({_num(exp.effects[e][top], sign=True)})")
    if n > 1:
        lines.append("")
        lines.append(_curve_text(exp))
    return "\n".join(lines)


def _curve_text(exp: Any) -> str:
    features, emotions = _names()
    times = [float(t) for t in exp.times]
    lines = [f"Over time (one row per {exp.window_seconds:.1f} s window; time = where it starts, in s):", ""]
    rows = [[f"{t:.1f}", *(_num(v, 2) for v in exp.emotion_curve[i])] for i, t in enumerate(times)]
    lines.append(_table(["time", *emotions], rows, indent="  "))
    lines.append("")
    short = [f.replace("rhythm_", "rhythm ").replace("tonal_", "tonal ") for f in features]
    rows = [[f"{t:.1f}", *(_num(v, 2) for v in exp.midlevel_curve[i])] for i, t in enumerate(times)]
    lines.append(_table(["time", *short], rows, indent="  "))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Plots


def _plot(exp: Any, out: Path, warning: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    features, emotions = _names()
    title = f"{Path(_source_name(exp)).name}  ({_seconds(exp.duration_seconds)})"
    if _n_windows(exp) > 1:
        times = [float(t) + exp.window_seconds / 2 for t in exp.times]
        fig, axes = plt.subplots(2, 1, figsize=(12, 8), sharex=True, constrained_layout=True)
        for ax, names, curve, what in ((axes[0], emotions, exp.emotion_curve, "emotion"),
                                       (axes[1], features, exp.midlevel_curve, "mid-level feature")):
            cmap = plt.get_cmap("tab10")
            for j, name in enumerate(names):
                ax.plot(times, [row[j] for row in curve], label=name, color=cmap(j), marker=".", lw=1.5)
            ax.set_ylabel(f"predicted {what}")
            ax.grid(alpha=0.3)
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
        axes[1].set_xlabel(f"time [s] (centre of each {exp.window_seconds:.1f} s window, "
                           f"hop {exp.hop_seconds:.1f} s)")
        axes[0].set_title("Emotions over time")
        axes[1].set_title("Mid-level features over time")
    else:
        fig, axes = plt.subplots(2, 4, figsize=(15, 7.5), sharey=True, constrained_layout=True)
        labels = [*features, "bias"]
        limit = max(max(abs(exp.effects[e][f]) for e in emotions for f in features),
                    max(abs(exp.bias[e]) for e in emotions), 1e-6) * 1.1
        for ax, e in zip(axes.flat, emotions):
            values = [exp.effects[e][f] for f in features] + [exp.bias[e]]
            colours = ["tab:red" if v > 0 else "tab:blue" for v in values[:-1]] + ["0.6"]
            ax.barh(range(len(labels)), values, color=colours)
            ax.axvline(0, color="black", lw=0.8)
            ax.set_xlim(-limit, limit)
            ax.set_yticks(range(len(labels)), labels)
            ax.set_title(f"{e} = {exp.emotions[e]:.3f}")
            ax.grid(axis="x", alpha=0.3)
            ax.set_xlabel("effect (weight x value)")
        axes.flat[0].invert_yaxis()  # once: the y axis is shared; features top to bottom, bias last
        title += "  effects on each emotion; effects + bias = prediction"
    if warning:
        fig.suptitle(f"{title}\nWARNING: {warning}", color="black", fontsize="medium")
    else:
        fig.suptitle(title, fontsize="medium")
    try:
        _atomic_write(out, lambda tmp: fig.savefig(tmp, format=out.suffix.lstrip(".").lower(), dpi=110))
    finally:
        plt.close(fig)


def _check_plot_path(path: Path) -> None:
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise CLIError(f"{path}: unsupported plot format {path.suffix or '(none)'!r}; "
                       f"use one of {', '.join(PLOT_SUFFIXES)}")


# ---------------------------------------------------------------------------------------
# explain


def _expand_inputs(inputs: Sequence[str], recursive: bool) -> list[Path]:
    """Directories -> their audio files (sorted); files kept in argument order; no duplicates."""
    files: list[Path] = []
    seen: set[Path] = set()
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise CLIError(f"{path}: no {'/'.join(AUDIO_SUFFIXES)} files in this directory"
                               + ("" if recursive else " (add --recursive to look in subdirectories)"))
        elif path.exists():
            found = [path]
        else:
            raise CLIError(f"{path}: file not found")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files


def cmd_explain(args: argparse.Namespace) -> int:
    batch = args.csv is not None or len(args.inputs) > 1 or any(Path(p).is_dir() for p in args.inputs)
    if args.plot is not None:
        if batch:
            raise CLIError("--plot draws one file: give a single FILE (for many files use --csv OUT.csv)")
        _check_plot_path(Path(args.plot))
    if batch:
        return _explain_batch(args)
    path = Path(args.inputs[0])
    _check_input_file(path)
    model = _load_model(_checkpoint_path(args))
    exp = _explain_one(path, model, args.hop, args.debug)
    warning = _warning(model[1], exp)
    note = _padding_note(exp)
    if note:
        _err(note)
    if args.json:
        data = exp.to_dict()
        data["warning"] = warning
        _dump_json(data)
    else:
        _print_warning(warning)
        _out(_format_explanation(exp))
    if args.plot is not None:
        try:
            _plot(exp, Path(args.plot), warning)
        except OSError as err:
            raise CLIError(f"{args.plot}: cannot write plot ({err.strerror or err})", EXIT_FAILURE) from err
        _err(f"wrote {args.plot}")
    return EXIT_OK


def _explain_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .audio import AudioError

    features, emotions = _names()
    files = _expand_inputs(args.inputs, args.recursive)
    if args.csv == "-" and args.json:
        raise CLIError("--csv - and --json both write to stdout; choose one")
    model = _load_model(_checkpoint_path(args))
    warning = _warning(model[1])
    rows: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    failures: list[tuple[Path, str]] = []
    notes: list[str] = []
    bar = tqdm(files, desc="explain", unit="file", file=sys.stderr, dynamic_ncols=True,
               disable=True if args.no_progress else None)
    for path in bar:
        bar.set_postfix_str(path.name[-40:], refresh=False)
        row: dict[str, Any] = {"file": str(path), "status": "ok"}
        try:
            from .explanation import explain

            with _native_stderr(args.debug):
                exp = explain(path, model, hop_seconds=args.hop)
        except AudioError as err:
            reason = err.reason
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - one failed file must not stop the batch
            reason = f"model failed ({type(err).__name__}: {_one_line(err)})"
            if args.debug:
                tqdm.write(traceback.format_exc().rstrip(), file=sys.stderr)
        else:
            reason = None
            row.update({f: exp.midlevel[f] for f in features})
            row.update({e: exp.emotions[e] for e in emotions})
            note = _padding_note(exp)
            if note:
                notes.append(note)
            if args.json:
                results.append({"file": str(path), "status": "ok", "error": None, "explanation": exp.to_dict()})
        if reason is not None:
            reason = _one_line(reason)
            row.update({"status": "failed", "error": reason})
            failures.append((path, reason))
            if args.json:
                results.append({"file": str(path), "status": "failed", "error": reason, "explanation": None})
        rows.append(row)
    bar.close()

    columns = ["file", "status", *features, *emotions, "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (f"{row[c]:.6f}" if isinstance(row.get(c), float) else row.get(c, ""))
                         for c in columns})
    for note in notes:
        _err(note)
    _print_warning(warning)
    if args.csv == "-":
        sys.stdout.write(buffer.getvalue())
    elif args.csv is not None:
        try:
            _atomic_write(Path(args.csv), lambda tmp: tmp.write_text(buffer.getvalue()))
        except OSError as err:
            raise CLIError(f"{args.csv}: cannot write CSV ({err.strerror or err})", EXIT_FAILURE) from err
    if args.json:
        _dump_json({"warning": warning, "checkpoint": str(_checkpoint_path(args)),
                    "n_files": len(files), "n_failed": len(failures), "files": results})
    elif args.csv is None:
        table_rows = [[Path(r["file"]).name if len(files) > 1 else r["file"],
                       *((_num(r[e]) for e in emotions) if r["status"] == "ok" else ["failed"] + [""] * 7)]
                      for r in rows]
        _out(_table(["file", *emotions], table_rows))
    done = len(files) - len(failures)
    target = f"wrote {args.csv}: " if args.csv not in (None, "-") else ""
    _err(f"{target}{len(files)} file{'s' * (len(files) != 1)}, {done} explained, {len(failures)} failed")
    if failures:
        _err(f"{len(failures)} of {len(files)} files failed:")
        for path, reason in failures:
            _err(f"  {path}: {reason}")
        return EXIT_FAILURE
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# compare


def cmd_compare(args: argparse.Namespace) -> int:
    from .explanation import compare

    a_path, b_path = Path(args.a), Path(args.b)
    _check_input_file(a_path)
    _check_input_file(b_path)
    model = _load_model(_checkpoint_path(args))
    a = _explain_one(a_path, model, args.hop, args.debug)
    b = _explain_one(b_path, model, args.hop, args.debug)
    try:
        result = compare(a, b)
    except Exception as err:  # noqa: BLE001
        raise CLIError(f"cannot compare {a_path} and {b_path} ({type(err).__name__}: {_one_line(err)})",
                       EXIT_FAILURE) from err
    warning = _warning(model[1], a)
    for note in (_padding_note(a), _padding_note(b)):
        if note:
            _err(note)
    if args.json:
        _dump_json({"warning": warning, "a": a.to_dict(), "b": b.to_dict(), "comparison": result})
        return EXIT_OK
    _print_warning(warning)
    _out(_format_comparison(a, b, result, args.top))
    return EXIT_OK


def _format_comparison(a: Any, b: Any, result: dict, top: int) -> str:
    """Table 4 style: both emotion profiles, A - B, and the features behind each difference.

    Follows ``explanation.compare``: differences are A minus B, and for each emotion the
    feature differences (effect in A - effect in B) plus the bias difference add up to it.
    """
    features, emotions = _names()
    lines = [f"A = {a.source} ({_seconds(a.duration_seconds)})",
             f"B = {b.source} ({_seconds(b.duration_seconds)})", ""]
    lines.append("Emotions of A and B, and the mid-level features that make them differ")
    lines.append("(feature's share = its effect in A - its effect in B = weight x (A value - B value);")
    lines.append(" the shares of all seven features add up to A - B).")
    lines.append("")
    rows = []
    for e in emotions:
        entry = result["emotions"][e]
        ranked = entry["features"][:top]
        text = ", ".join(f"{r['feature']} {_num(r['difference'], sign=True)}" for r in ranked)
        if abs(float(entry.get("bias_difference", 0.0))) > 5e-4:
            text += f", bias {_num(entry['bias_difference'], sign=True)}"
        rows.append([e, _num(entry["a"]), _num(entry["b"]), _num(entry["difference"], sign=True), text])
    lines.append(_table(["emotion", "A", "B", "A - B", f"main drivers of A - B (top {top})"], rows,
                        align="lrrrl"))
    lines.append("")
    lines.append("Mid-level features:")
    lines.append("")
    rows = [[f, _num(a.midlevel[f]), _num(b.midlevel[f]), _num(a.midlevel[f] - b.midlevel[f], sign=True)]
            for f in features]
    lines.append(_table(["feature", "A", "B", "A - B"], rows))
    if not result.get("same_model", True):
        lines.append("")
        lines.append("note: A and B were explained by different models; bias differences are listed.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# info


def cmd_info(args: argparse.Namespace) -> int:
    from .models import count_parameters
    from .training import CheckpointError, load_checkpoint

    raw = args.checkpoint_path if args.checkpoint_path is not None else args.checkpoint
    path = Path(raw) if raw is not None else _checkpoint_path(args)
    try:
        model, meta = load_checkpoint(path)
    except CheckpointError as err:
        raise CLIError(str(err), EXIT_USAGE) from err
    kind = str(meta.get("kind"))
    info = {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "kind": kind,
        "description": KIND_DESCRIPTIONS.get(kind, kind),
        "explainable": kind in EXPLAINABLE_KINDS,
        "n_parameters": count_parameters(model),
        **{k: v for k, v in meta.items() if k not in ("kind",)},
    }
    warning = _warning(meta)
    if args.json:
        info["warning"] = warning
        _dump_json(info)
        return EXIT_OK
    _print_warning(warning)
    _out(_format_info(info))
    return EXIT_OK


def _format_info(info: dict) -> str:
    features, emotions = _names()
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
    lines.append(_table(["target", "r"], [[n, _num(_float(pearson[n]))] for n in order], indent="  "))
    for group, names in (("mid-level", features), ("emotion", emotions)):
        values = [_float(pearson[n]) for n in names if n in pearson]
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


# ---------------------------------------------------------------------------------------
# Parser


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


HONESTY = """\
A checkpoint trained on the synthetic corpus (what `dvc repro` builds by default) says so on
every output: its predictions on real music mean nothing until the pipeline has run on the
real data."""

EXIT_TEXT = """\
exit status: 0 ok; 1 failure (model error, some files of a batch failed); 2 usage or input
error (bad arguments, missing/unreadable/non-audio file, missing or incompatible checkpoint)."""

MAIN_EPILOG = f"""\
examples:
  {PROG} explain song.mp3                       table: features, emotions, effects
  {PROG} explain song.mp3 --json > song.json    the same for machines
  {PROG} explain song.mp3 --plot song.png       bar chart (or time curves for a long song)
  {PROG} explain music/ --csv emotions.csv      every audio file in a folder
  {PROG} compare a.mp3 b.mp3                    two songs side by side
  {PROG} info models/joint/joint_seed_0.pt      what a checkpoint is

Run `{PROG} COMMAND --help` for each command's options.

{HONESTY}

{EXIT_TEXT}
"""

EXPLAIN_DESCRIPTION = """\
Predict the seven mid-level features (melodiousness, articulation, rhythm stability, rhythm
complexity, dissonance, tonal stability, minorness) and the eight emotions (valence, energy,
tension, anger, fear, happy, sad, tender) of audio files, and explain every emotion as a sum
of feature effects: effect = weight x feature value, and effects + bias = prediction exactly.

The model hears one window of the checkpoint's length (10 s in the paper). A longer file is
covered by sliding that window (--hop) and reported as the song-level mean plus a curve over
time. A clip shorter than the window is looped to fill it, as in training (noted on stderr).

One FILE: a table on stdout (or --json, and --plot). Several files or directories (expanded
to their .mp3/.wav/.flac/.ogg files, sorted): one row per file (--csv OUT.csv, or a table /
--json on stdout) with a progress bar; files that fail are listed with their reason at the
end and in the CSV, the others are still processed; exit status 1 if any failed."""

EXPLAIN_EPILOG = f"""\
examples:
  {PROG} explain song.mp3
  {PROG} explain song.mp3 --hop 2.5 --plot song_curves.png
  {PROG} explain song.mp3 --json | jq '.emotions'
  {PROG} explain clip.wav --checkpoint models/joint/joint_seed_3.pt
  {PROG} explain ~/Music/album/ --csv album.csv
  {PROG} explain a.mp3 b.flac c.ogg --csv - > table.csv

CSV columns: file, status (ok|failed), the 7 features, the 8 emotions, error.

{HONESTY}

{EXIT_TEXT}
"""

COMPARE_DESCRIPTION = """\
Explain two songs side by side (the paper's Section 7.2 / Table 4 view): both emotion
profiles, their difference, and which mid-level features drive each difference
(contribution = weight x difference of the feature values)."""

COMPARE_EPILOG = f"""\
examples:
  {PROG} compare soundtrack_153.mp3 soundtrack_322.mp3
  {PROG} compare a.wav b.wav --top 5 --json > comparison.json

{HONESTY}

{EXIT_TEXT}
"""

INFO_DESCRIPTION = """\
Show what a checkpoint is: model kind, the corpus it was trained on, training date, params
hash, seed, the window the model hears, the spectrogram settings, and the Pearson correlation
on its held-out test split for each target."""

INFO_EPILOG = f"""\
examples:
  {PROG} info models/joint/joint_seed_0.pt
  {PROG} info                                   (the default checkpoint)
  {PROG} info models/a2e/a2e_seed_0.pt --json

{EXIT_TEXT}
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


CHECK_DESCRIPTION = """\
Print a Markdown verdict on the pipeline's results; exit status 1 when it fails.

Without --against: every headline value (metrics/headline.json) against the paper's value
with its band (reference/checks.json says why each band is what it is); on the synthetic
corpus, against the embedded run's own expectations and the planted truth instead.
With --against REV: which headline numbers changed beyond run-to-run noise since the
results committed at REV, run by run (same seeds, same splits); a regression fails."""


def cmd_check(args: argparse.Namespace) -> int:
    from .check import CheckError, run

    try:
        verdict = run(args)
    except CheckError as err:
        raise CLIError(str(err), EXIT_USAGE) from None
    text = verdict.markdown()
    _out(text.rstrip("\n"))
    if args.out is not None:
        from .fileio import write_text
        write_text(args.out, text)
    return EXIT_OK if verdict.passed else EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("-c", "--checkpoint", metavar="PATH", default=None,
                       help=f"trained explainable checkpoint (default: {DEFAULT_CHECKPOINT_TEXT}, "
                            "relative to the current directory)")
    model.add_argument("--hop", metavar="SECONDS", type=_positive_seconds, default=None,
                       help="slide the window by this much over a long file "
                            "(default: half the window, e.g. 5 s for the paper's 10 s window)")

    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter, epilog=MAIN_EPILOG,
        description="Explainable music emotion recognition via mid-level perceptual features\n"
                    "(Chowdhury et al., ISMIR 2019): which emotions a piece of music conveys, and why.")
    parser.add_argument("-V", "--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    p = sub.add_parser("explain", parents=[common, model], formatter_class=_Formatter,
                       help="features, emotions and their explanation for audio files",
                       description=EXPLAIN_DESCRIPTION, epilog=EXPLAIN_EPILOG)
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="audio file(s) or directories")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="JSON on stdout instead of the table")
    out.add_argument("--plot", metavar="OUT.png", default=None,
                     help="save a chart: effects per emotion, or the curves over time for a long file "
                          f"({', '.join(s.lstrip('.') for s in PLOT_SUFFIXES)})")
    out.add_argument("--csv", metavar="OUT.csv", default=None,
                     help="batch mode: one row per file, written atomically ('-' for stdout)")
    out.add_argument("-r", "--recursive", action="store_true", help="look for audio in subdirectories too")
    out.add_argument("--no-progress", action="store_true", help="no progress bar in batch mode")
    p.set_defaults(handler=cmd_explain)

    p = sub.add_parser("compare", parents=[common, model], formatter_class=_Formatter,
                       help="two songs side by side and the features behind their differences",
                       description=COMPARE_DESCRIPTION, epilog=COMPARE_EPILOG)
    p.add_argument("a", metavar="A", help="first audio file")
    p.add_argument("b", metavar="B", help="second audio file")
    p.add_argument("--top", metavar="N", type=_positive_int, default=3,
                   help="how many driving features to name per emotion (default: 3)")
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of the table")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("info", parents=[common], formatter_class=_Formatter,
                       help="what a checkpoint is: model, corpus, date, test correlations",
                       description=INFO_DESCRIPTION, epilog=INFO_EPILOG)
    p.add_argument("checkpoint_path", nargs="?", metavar="CHECKPOINT", default=None,
                   help=f"checkpoint file (default: {DEFAULT_CHECKPOINT_TEXT})")
    p.add_argument("-c", "--checkpoint", metavar="PATH", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("check", parents=[common], formatter_class=_Formatter,
                       help="a verdict on the run: against the paper, or against another revision",
                       description=CHECK_DESCRIPTION)
    from .check import add_arguments
    add_arguments(p)
    p.set_defaults(handler=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        code = exit_.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_USAGE)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.handler(args))
    except CLIError as err:
        if debug:
            traceback.print_exc()
        _err(f"{PROG}: error: {err}")
        return err.code
    except KeyboardInterrupt:
        _err(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `... --csv - | head`: stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_FAILURE
    except Exception as err:  # noqa: BLE001 - one line unless --debug
        if debug:
            traceback.print_exc()
        _err(f"{PROG}: error: {type(err).__name__}: {_one_line(err)} (run with --debug for the traceback)")
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
