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
``check``                        a verdict on the run (against the paper or another revision)

Exit status: 0 success; 1 failure (model error, some files of a batch failed, output not
written); 2 usage or input error (bad arguments, missing, unreadable or non-audio input,
missing, damaged or incompatible checkpoint, an output path that would overwrite an input
or has an audio suffix); 130 interrupted (Ctrl-C: no output file is left half-written).
Errors are one line on stderr, ``--debug`` adds the traceback. Output files are written
atomically with the permissions the user's umask gives; CSV text cells that a spreadsheet
would run as a formula are quoted (:mod:`.csvsafe`).

Heavy imports (torch, matplotlib) happen inside the commands so ``--help`` and
``--version`` answer at once.

This module is the entry point: it parses the arguments, runs the command, turns errors into
exit statuses, and holds ``info`` and ``check``. The rest of the folder: :mod:`.args` (the
arguments, help texts and exit statuses), :mod:`.explain` (``explain`` and ``compare``),
:mod:`.paths` (input and output files, checked first), :mod:`.checkpoints` (which runs, loaded),
:mod:`.output` (what is printed) and :mod:`.chart` (what ``--plot`` draws).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from ..core.errors import CLIError, one_line
from . import output as show
from .args import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, build_parser
from .checkpoints import checkpoint_path, corpus_warning
from .explain import cmd_compare, cmd_explain

EXPLAINABLE_KINDS = ("joint", "a2mid2e")
KIND_DESCRIPTIONS = {
    "joint": "A2Mid2E-Joint: audio -> 7 mid-level features -> 8 emotions, trained jointly (explainable)",
    "a2mid2e": "A2Mid2E: audio -> 7 mid-level features -> fitted linear regression -> 8 emotions (explainable)",
    "a2mid": "A2Mid: audio -> 7 mid-level features (no emotion output)",
    "a2e": "A2E: audio -> 8 emotions (black box, no mid-level explanation)",
}


# ---------------------------------------------------------------------------------------
# check


def cmd_check(args: argparse.Namespace) -> int:
    """``check``: the Markdown verdict on stdout (and ``--out``); exit 1 when it fails."""
    from ..evaluation.check import run
    from ..core.errors import CheckError
    from ..core.fileio import write_text

    try:
        verdict = run(args)
    except CheckError as err:
        raise CLIError(str(err), EXIT_USAGE) from None
    text = verdict.markdown()
    show.out(text.rstrip("\n"))
    if args.out is not None:
        write_text(args.out, text)
    return EXIT_OK if verdict.passed else EXIT_FAILURE


# ---------------------------------------------------------------------------------------
# info


def cmd_info(args: argparse.Namespace) -> int:
    """``info``: what a checkpoint is, as a table or ``--json``."""
    from ..learning.models import count_parameters
    from ..learning.checkpoints import load_checkpoint
    from ..core.errors import CheckpointError

    raw = args.checkpoint_path if args.checkpoint_path is not None else args.checkpoint
    path = Path(raw) if raw is not None else checkpoint_path(args)
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
    warning = corpus_warning(meta)
    if args.json:
        info["warning"] = warning
        show.dump_json(info)
        return EXIT_OK
    show.print_warning(warning)
    show.out(show.format_info(info))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it).

    Ctrl-C anywhere (parsing, imports, decoding, writing) ends with one line and status 130;
    output files are written atomically, so none is left half-written.
    """
    try:
        return _run(argv)
    except KeyboardInterrupt:
        show.err(f"{PROG}: interrupted")
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
        show.err(f"{PROG}: error: {err}")
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
        show.err(f"{PROG}: error: {type(err).__name__}: {one_line(err)} (run with --debug for the traceback)")
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
