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
missing, damaged or incompatible checkpoint, an output path that would overwrite an input
or has an audio suffix); 130 interrupted (Ctrl-C: no output file is left half-written).
Errors are one line on stderr, ``--debug`` adds the traceback. Output files are written
atomically with the permissions the user's umask gives; CSV text cells that a spreadsheet
would run as a formula are quoted (:mod:`.csvsafe`).

Heavy imports (torch, matplotlib) happen inside the commands so ``--help`` and
``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

from ..core.constants import MIN_FEATURE_R
from ..core.errors import CLIError, one_line
from . import cli_output as show
from .cli_args import PLOT_SUFFIXES, PROG, build_parser

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
AUDIO_SUFFIXES: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg")  # what libsndfile decodes here
# Never an output name: the inputs' suffixes and those of other audio the user may keep nearby.
PROTECTED_SUFFIXES: tuple[str, ...] = AUDIO_SUFFIXES + (
    ".aac", ".aif", ".aifc", ".aiff", ".alac", ".ape", ".au", ".caf", ".m4a", ".m4b", ".mid", ".midi",
    ".mp2", ".mp4", ".oga", ".opus", ".snd", ".w64", ".wma", ".wv")
EXPLAINABLE_KINDS = ("joint", "a2mid2e")
KIND_DESCRIPTIONS = {
    "joint": "A2Mid2E-Joint: audio -> 7 mid-level features -> 8 emotions, trained jointly (explainable)",
    "a2mid2e": "A2Mid2E: audio -> 7 mid-level features -> fitted linear regression -> 8 emotions (explainable)",
    "a2mid": "A2Mid: audio -> 7 mid-level features (no emotion output)",
    "a2e": "A2E: audio -> 8 emotions (black box, no mid-level explanation)",
}


# ---------------------------------------------------------------------------------------
# Small helpers


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _dump_json(data: Any) -> None:
    _out(json.dumps(show.jsonable(data), indent=2, allow_nan=False))


# ---------------------------------------------------------------------------------------
# Model and inputs


def _checkpoint_path(args: argparse.Namespace) -> Path:
    """``info``'s checkpoint: the one given, else the default one."""
    if args.checkpoint is not None:
        return Path(args.checkpoint)
    from ..explanation.explanation import DEFAULT_CHECKPOINT

    return Path(DEFAULT_CHECKPOINT)


def _checkpoint_paths(args: argparse.Namespace) -> list[Path]:
    """``explain``'s and ``compare``'s checkpoints: those given (folders expanded), else every run."""
    from ..core.errors import CheckpointError
    from ..explanation.ensemble import checkpoint_paths

    try:
        return checkpoint_paths(args.checkpoint or [])
    except CheckpointError as err:
        raise CLIError(str(err), EXIT_USAGE) from err


def _min_feature_r(args: argparse.Namespace) -> float:
    return MIN_FEATURE_R if args.min_feature_r is None else float(args.min_feature_r)


def _check_outputs(outputs: dict[str, str | None], protected: Sequence[Path]) -> None:
    """Refuse an output path that would destroy an input: before any work is done.

    ``outputs`` maps an option (``--csv``) to its path (None: not given; ``-``: stdout).
    Refused: a name with an audio suffix (``--csv song.mp3`` is a typo for an input, and
    writing there would destroy audio), an existing directory, and any file that is one of
    ``protected`` (the inputs and the checkpoint), also through a symlink or a hard link.
    """
    for option, raw in outputs.items():
        if raw is None or raw == "-":
            continue
        path = Path(raw)
        if path.suffix.lower() in PROTECTED_SUFFIXES:
            raise CLIError(f"{path}: refusing to write {option} output to a file with an audio suffix "
                           f"({path.suffix}); it may be someone's audio. Choose another name")
        if path.is_dir():
            raise CLIError(f"{path}: is a directory; {option} needs a file name")
        for other in protected:
            if _same_file(path, other):
                raise CLIError(f"{path}: refusing to write {option} output over the input {other}; "
                               "choose another name")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return a.resolve() == b.resolve()


def _load_models(paths: Sequence[Path]) -> list[tuple[Any, dict]]:
    """Every run's model and metadata; CheckpointError -> exit 2 (missing, incompatible or unlike the others)."""
    from ..core.errors import CheckpointError
    from ..explanation.ensemble import load_models

    try:
        return load_models(paths)
    except CheckpointError as err:
        message = str(err)
        missing = [p for p in paths if not Path(p).exists()]
        if missing:
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
        _err(f"{PROG}: warning: {note}")


def _explain_one(path: Path, models: list[tuple[Any, dict]], args: argparse.Namespace) -> Any:
    """Explain one file; AudioError and CheckpointError (non-finite output) -> exit 2, others -> exit 1.

    One checkpoint: :func:`.explanation.explain`; several: their ensemble, the file decoded once.
    """
    from ..core.errors import AudioError
    from ..explanation.explanation import explain
    from ..explanation.explanation_batch import explain_many
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


def _warning(meta: dict, explanation: Any = None) -> str | None:
    """The synthetic-corpus warning (the Explanation's own text when there is one)."""
    if explanation is not None and getattr(explanation, "warning", None):
        return one_line(explanation.warning)
    if str(meta.get("corpus", "")).lower() == "synthetic":
        from ..explanation.explanation import SYNTHETIC_WARNING

        return one_line(SYNTHETIC_WARNING)
    return None


def _print_warning(text: str | None) -> None:
    if text:
        _err(text if text.lower().startswith("warning") else f"warning: {text}")


# ---------------------------------------------------------------------------------------
# Text output


# ---------------------------------------------------------------------------------------
# Plots


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
    checkpoints = _checkpoint_paths(args)
    _check_outputs({"--plot": args.plot}, [path, *checkpoints])
    models = _load_models(checkpoints)
    exp = _explain_one(path, models, args)
    warning = _warning(models[0][1], exp)
    note = show.padding_note(exp)
    if note:
        _err(note)
    if args.json:
        data = exp.to_dict()
        data["warning"] = warning
        _dump_json(data)
    else:
        _print_warning(warning)
        _out(show.format_explanation(exp))
    if args.plot is not None:
        try:
            show.plot(exp, Path(args.plot), warning)
        except OSError as err:
            raise CLIError(f"{args.plot}: cannot write plot ({err.strerror or err})", EXIT_FAILURE) from err
        _err(f"wrote {args.plot}")
    return EXIT_OK


def _explain_batch(args: argparse.Namespace) -> int:
    files = _expand_inputs(args.inputs, args.recursive)
    if args.csv == "-" and args.json:
        raise CLIError("--csv - and --json both write to stdout; choose one")
    checkpoints = _checkpoint_paths(args)
    _check_outputs({"--csv": args.csv}, [*files, *checkpoints])
    models = _load_models(checkpoints)
    warning = _warning(models[0][1])
    rows, results, notes, throughput = _explain_files(files, models, args)
    failures = [(r["file"], r["error"]) for r in rows if r["status"] == "failed"]
    for note in notes:
        _err(note)
    _print_warning(warning)
    _write_batch(rows, results, args, warning, checkpoints)
    done = len(files) - len(failures)
    target = f"wrote {args.csv}: " if args.csv not in (None, "-") else ""
    _err(f"{target}{len(files)} file{'s' * (len(files) != 1)}, {done} explained, {len(failures)} failed")
    # Batch mode only, next to its summary line: one file's table reports no counts either,
    # and its clips/s would only be the inverse of its latency.
    _err(throughput)
    if failures:
        _err(f"{len(failures)} of {len(files)} files failed:")
        for path, reason in failures:
            _err(f"  {path}: {reason}")
        return EXIT_FAILURE
    return EXIT_OK


def _explain_files(files: list[Path], models: list[tuple[Any, dict]],
                   args: argparse.Namespace) -> tuple[list[dict], list[dict], list[str], str]:
    """Explain every file, going on after a failed one: CSV rows, JSON results, padding notes
    and the throughput line.

    The windows of several files share each forward pass (:mod:`.explanation_batch`). A file
    that cannot be used fails alone; a model whose output is not finite (a damaged
    checkpoint) would fail them all, so it stops the batch with one line (exit 2).
    """
    import time

    from tqdm import tqdm

    from ..core.errors import AudioError
    from ..core.errors import CheckpointError
    from ..explanation.explanation_batch import Timings, explain_many, warm_up

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
        _dump_json({"warning": warning, "checkpoint": str(checkpoints[0]) if len(checkpoints) == 1 else None,
                    "checkpoints": [str(c) for c in checkpoints], "n_files": len(rows),
                    "n_failed": n_failed, "files": results})
    elif args.csv is None:
        table_rows = [[Path(r["file"]).name if len(rows) > 1 else r["file"],
                       *((show.num(r[e]) for e in emotions) if r["status"] == "ok" else ["failed"] + [""] * 7)]
                      for r in rows]
        _out(show.table(["file", *emotions], table_rows))


# ---------------------------------------------------------------------------------------
# compare


def cmd_compare(args: argparse.Namespace) -> int:
    from ..explanation.explanation import compare

    a_path, b_path = Path(args.a), Path(args.b)
    _check_input_file(a_path)
    _check_input_file(b_path)
    models = _load_models(_checkpoint_paths(args))
    a = _explain_one(a_path, models, args)
    b = _explain_one(b_path, models, args)
    try:
        result = compare(a, b)
    except Exception as err:  # noqa: BLE001
        raise CLIError(f"cannot compare {a_path} and {b_path} ({type(err).__name__}: {one_line(err)})",
                       EXIT_FAILURE) from err
    warning = _warning(models[0][1], a)
    for note in (show.padding_note(a), show.padding_note(b)):
        if note:
            _err(note)
    if args.json:
        _dump_json({"warning": warning, "a": a.to_dict(), "b": b.to_dict(), "comparison": result})
        return EXIT_OK
    _print_warning(warning)
    _out(show.format_comparison(a, b, result, args.top))
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# check


def cmd_check(args: argparse.Namespace) -> int:
    from ..evaluation.check import run
    from ..core.errors import CheckError
    from ..core.fileio import write_text

    try:
        verdict = run(args)
    except CheckError as err:
        raise CLIError(str(err), EXIT_USAGE) from None
    text = verdict.markdown()
    _out(text.rstrip("\n"))
    if args.out is not None:
        write_text(args.out, text)
    return EXIT_OK if verdict.passed else EXIT_FAILURE


# ---------------------------------------------------------------------------------------
# info


def cmd_info(args: argparse.Namespace) -> int:
    from ..learning.models import count_parameters
    from ..learning.checkpoints import load_checkpoint
    from ..core.errors import CheckpointError

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
    _out(show.format_info(info))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it).

    Ctrl-C anywhere (parsing, imports, decoding, writing) ends with one line and status 130;
    output files are written atomically, so none is left half-written.
    """
    try:
        return _run(argv)
    except KeyboardInterrupt:
        _err(f"{PROG}: interrupted")
        return EXIT_INTERRUPTED


def _run(argv: Sequence[str] | None) -> int:
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
    handler = {"explain": cmd_explain, "compare": cmd_compare, "info": cmd_info, "check": cmd_check}[args.command]
    try:
        return int(handler(args))
    except CLIError as err:
        if debug:
            traceback.print_exc()
        _err(f"{PROG}: error: {err}")
        return err.code
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
        _err(f"{PROG}: error: {type(err).__name__}: {one_line(err)} (run with --debug for the traceback)")
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
