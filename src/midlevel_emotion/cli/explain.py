"""``explain`` and ``compare``: the commands that run the model on audio.

``explain FILE`` prints one file's table (``--json``, ``--plot``); several files or folders
(or ``--csv``) are a batch: one row per file, going on after a failed file, with a progress
bar and a clips-per-second line. ``compare A B`` explains two files and the features behind
their differences. A file that cannot be used is exit 2, a model that fails on it exit 1.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any

from ..core.constants import MIN_FEATURE_R
from ..core.errors import CLIError, one_line
from . import chart
from . import output as show
from .args import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, PROG
from .checkpoints import checkpoint_paths, corpus_warning, load_models
from .paths import check_input_file, check_outputs, check_plot_path, expand_inputs


# ---------------------------------------------------------------------------------------
# One file


def _min_feature_r(args: argparse.Namespace) -> float:
    return MIN_FEATURE_R if args.min_feature_r is None else float(args.min_feature_r)


def _native_stderr(debug: bool) -> Any:
    """Keep the mp3 decoder's C-level chatter off the terminal: a bad file gets ONE line from us
    (every captured line with ``--debug``; see :func:`midlevel_emotion.signal.audio.native_stderr`)."""
    from ..signal.audio import is_decoder_chatter, native_stderr

    return native_stderr(echo=lambda line: debug or not is_decoder_chatter(line))


def _warn_if_truncated(path: Path, exp: Any) -> None:
    """A damaged file that decoded to a fraction of its stated length says so (it is loop-padded)."""
    from ..signal.audio import truncation_note

    note = truncation_note(path, float(exp.duration_seconds))
    if note:
        show.err(f"{PROG}: warning: {note}")


def _explain_one(path: Path, models: list[tuple[Any, dict]], args: argparse.Namespace) -> Any:
    """Explain one file; AudioError and CheckpointError (non-finite output) -> exit 2, others -> exit 1.

    One checkpoint: :func:`.explanation.explain`; several: their ensemble, the file decoded once.
    """
    from ..core.errors import AudioError
    from ..explanation.song import explain
    from ..explanation.batch import explain_many
    from ..core.errors import CheckpointError

    try:
        with _native_stderr(args.debug):
            if len(models) == 1:
                exp = explain(path, models[0], hop_seconds=args.hop, min_feature_r=_min_feature_r(args))
            else:
                outcome = next(explain_many([path], models, hop_seconds=args.hop, min_feature_r=_min_feature_r(args)))
                if outcome.error is not None:
                    raise outcome.error
                exp = outcome.explanation
        _warn_if_truncated(path, exp)
        return exp
    except (AudioError, CheckpointError) as err:
        raise CLIError(one_line(err), EXIT_USAGE) from err
    except (KeyboardInterrupt, CLIError):
        raise
    except Exception as err:  # noqa: BLE001 - reported as one line, traceback with --debug
        raise CLIError(f"{path}: model failed ({type(err).__name__}: {one_line(err)})", EXIT_FAILURE) from err


# ---------------------------------------------------------------------------------------
# explain


def cmd_explain(args: argparse.Namespace) -> int:
    """``explain``: one file's table, JSON or chart; several files or ``--csv``: the batch."""
    batch = args.csv is not None or len(args.inputs) > 1 or any(Path(p).is_dir() for p in args.inputs)
    if args.plot is not None:
        if batch:
            raise CLIError("--plot draws one file: give a single FILE (for many files use --csv OUT.csv)")
        check_plot_path(Path(args.plot))
    if batch:
        return _explain_batch(args)
    path = Path(args.inputs[0])
    check_input_file(path)
    checkpoints = checkpoint_paths(args)
    check_outputs({"--plot": args.plot}, [path, *checkpoints])
    models = load_models(checkpoints)
    exp = _explain_one(path, models, args)
    warning = corpus_warning(models[0][1], exp)
    note = show.padding_note(exp)
    if note:
        show.err(note)
    if args.json:
        data = exp.to_dict()
        data["warning"] = warning
        show.dump_json(data)
    else:
        show.print_warning(warning)
        show.out(show.format_explanation(exp))
    if args.plot is not None:
        try:
            chart.plot(exp, Path(args.plot), warning)
        except OSError as err:
            raise CLIError(f"{args.plot}: cannot write plot ({err.strerror or err})", EXIT_FAILURE) from err
        show.err(f"wrote {args.plot}")
    return EXIT_OK


def _explain_batch(args: argparse.Namespace) -> int:
    files = expand_inputs(args.inputs, args.recursive)
    if args.csv == "-" and args.json:
        raise CLIError("--csv - and --json both write to stdout; choose one")
    checkpoints = checkpoint_paths(args)
    check_outputs({"--csv": args.csv}, [*files, *checkpoints])
    models = load_models(checkpoints)
    warning = corpus_warning(models[0][1])
    rows, results, notes, throughput = _explain_files(files, models, args)
    failures = [(r["file"], r["error"]) for r in rows if r["status"] == "failed"]
    for note in notes:
        show.err(note)
    show.print_warning(warning)
    _write_batch(rows, results, args, warning, checkpoints)
    done = len(files) - len(failures)
    target = f"wrote {args.csv}: " if args.csv not in (None, "-") else ""
    show.err(f"{target}{len(files)} file{'s' * (len(files) != 1)}, {done} explained, {len(failures)} failed")
    # Batch mode only, next to its summary line: one file's table reports no counts either,
    # and its clips/s would only be the inverse of its latency.
    show.err(throughput)
    if failures:
        show.err(f"{len(failures)} of {len(files)} files failed:")
        for path, reason in failures:
            show.err(f"  {path}: {reason}")
        return EXIT_FAILURE
    return EXIT_OK


def _explain_files(files: list[Path], models: list[tuple[Any, dict]],
                   args: argparse.Namespace) -> tuple[list[dict], list[dict], list[str], str]:
    """Explain every file, going on after a failed one: CSV rows, JSON results, padding notes
    and the throughput line.

    The windows of several files share each forward pass (:mod:`midlevel_emotion.explanation.batch`). A file
    that cannot be used fails alone; a model whose output is not finite (a damaged
    checkpoint) would fail them all, so it stops the batch with one line (exit 2).
    """
    import time

    from tqdm import tqdm

    from ..core.errors import AudioError
    from ..core.errors import CheckpointError
    from ..explanation.batch import Timings, explain_many, warm_up

    features, emotions = show.names()
    rows: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    timings = Timings()
    bar = tqdm(total=len(files), desc="explain", unit="file", file=sys.stderr, dynamic_ncols=True,
               disable=True if args.no_progress else None)
    warm_up(models[0][1])  # librosa's imports stay out of the clips/s, like torch's and the model's loading
    start = time.perf_counter()
    outcomes = explain_many(files, models, hop_seconds=args.hop, timings=timings,
                            min_feature_r=_min_feature_r(args), decode_context=lambda: _native_stderr(args.debug))
    try:
        for outcome in outcomes:
            path, exp, err = files[outcome.index], outcome.explanation, outcome.error
            bar.set_postfix_str(path.name[-40:], refresh=False)
            bar.update(1)
            row: dict[str, Any] = {"file": str(path), "status": "ok", "error": None, "n_runs": len(models)}
            if isinstance(err, AudioError):
                row.update({"status": "failed", "error": one_line(err.reason)})
            elif err is not None:  # one failed file must not stop the batch
                row.update({"status": "failed", "error": f"model failed ({type(err).__name__}: {one_line(err)})"})
                if args.debug:
                    tqdm.write("".join(traceback.format_exception(err)).rstrip(), file=sys.stderr)
            if exp is not None:
                _warn_if_truncated(path, exp)
                row.update({f: exp.midlevel[f] for f in features})
                row.update({e: exp.emotions[e] for e in emotions})
                row.update({f"r_{f}": exp.reliability.get(f) for f in features})
                row["unreliable"] = ";".join(exp.unreliable)
                note = show.padding_note(exp)
                if note:
                    notes.append(note)
            if args.json:
                results.append({"file": str(path), "status": row["status"], "error": row["error"],
                                "explanation": exp.to_dict() if exp is not None else None})
            rows.append(row)
    except CheckpointError as err:
        raise CLIError(one_line(err), EXIT_USAGE) from err
    finally:
        bar.close()
    explained = sum(r["status"] == "ok" for r in rows)
    throughput = show.throughput(explained, time.perf_counter() - start, timings.decode_seconds,
                                 timings.model_seconds)
    return rows, results, notes, throughput


def _write_batch(rows: list[dict], results: list[dict], args: argparse.Namespace, warning: str | None,
                 checkpoints: list[Path]) -> None:
    """The batch's output: the CSV (atomically, or on stdout), the JSON, or a table on stdout."""
    from ..core.csvsafe import rows_text

    features, emotions = show.names()
    text = rows_text(["file", "status", *features, *emotions, "error", "n_runs", *(f"r_{f}" for f in features),
                      "unreliable"], rows)
    if args.csv == "-":
        sys.stdout.write(text)
    elif args.csv is not None:
        from ..core.fileio import write_text

        try:
            write_text(args.csv, text)
        except OSError as err:
            raise CLIError(f"{args.csv}: cannot write CSV ({err.strerror or err})", EXIT_FAILURE) from err
    if args.json:
        n_failed = sum(r["status"] == "failed" for r in rows)
        show.dump_json({"warning": warning, "checkpoint": str(checkpoints[0]) if len(checkpoints) == 1 else None,
                        "checkpoints": [str(c) for c in checkpoints], "n_files": len(rows),
                        "n_failed": n_failed, "files": results})
    elif args.csv is None:
        table_rows = [[Path(r["file"]).name if len(rows) > 1 else r["file"],
                       *((show.num(r[e]) for e in emotions) if r["status"] == "ok" else ["failed"] + [""] * 7)]
                      for r in rows]
        show.out(show.table(["file", *emotions], table_rows))


# ---------------------------------------------------------------------------------------
# compare


def cmd_compare(args: argparse.Namespace) -> int:
    """``compare A B``: both files explained by the same model(s), side by side."""
    from ..explanation.song import compare

    a_path, b_path = Path(args.a), Path(args.b)
    check_input_file(a_path)
    check_input_file(b_path)
    models = load_models(checkpoint_paths(args))
    a = _explain_one(a_path, models, args)
    b = _explain_one(b_path, models, args)
    try:
        result = compare(a, b)
    except Exception as err:  # noqa: BLE001
        raise CLIError(f"cannot compare {a_path} and {b_path} ({type(err).__name__}: {one_line(err)})",
                       EXIT_FAILURE) from err
    warning = corpus_warning(models[0][1], a)
    for note in (show.padding_note(a), show.padding_note(b)):
        if note:
            show.err(note)
    if args.json:
        show.dump_json({"warning": warning, "a": a.to_dict(), "b": b.to_dict(), "comparison": result})
        return EXIT_OK
    show.print_warning(warning)
    show.out(show.format_comparison(a, b, result, args.top))
    return EXIT_OK
