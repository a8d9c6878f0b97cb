"""The arguments, help texts and exit statuses of ``midlevel-emotion`` (see :mod:`.main` for
what the commands do).

Nothing heavy is imported here, so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

from .. import __version__
from ..evaluation.check import add_arguments as add_check_arguments
from ..core.constants import DEFAULT_CHECKPOINT, MIN_FEATURE_R

PROG = "midlevel-emotion"
PLOT_SUFFIXES: tuple[str, ...] = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
DEFAULT_CHECKPOINT_TEXT = str(DEFAULT_CHECKPOINT)
DEFAULT_RUNS_TEXT = str(DEFAULT_CHECKPOINT.parent)  # ensemble.JOINT_RUNS
MIN_FEATURE_R_TEXT = f"{MIN_FEATURE_R:g}"  # constants.MIN_FEATURE_R's comment says why


def _float_in(what: str, fits: Callable[[float], bool], must: str) -> Callable[[str], float]:
    """An argparse type: a float that ``fits``, else ``not a number of <what>`` / ``must be <must>``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number{what}: {text!r}") from None
        if not fits(value):
            raise argparse.ArgumentTypeError(f"must be {must}, got {text!r}")
        return value
    return parse


_positive_seconds = _float_in(" of seconds", lambda v: math.isfinite(v) and v > 0, "a positive number of seconds")
_pearson_r = _float_in("", lambda v: -1.0 <= v <= 1.0, "a Pearson r from -1 to 1")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


HONESTY = f"""\
A checkpoint trained on the synthetic corpus (what `dvc repro` builds by default) says so on
every output: its predictions on real music mean nothing until the pipeline has run on the
real data.

By default every run of the Joint model that the pipeline trained ({DEFAULT_RUNS_TEXT}/*.pt)
explains together: each number is the mean over runs, with its spread between runs and the
share of runs that agree on each effect's sign. A feature the model predicts with a test r
below {MIN_FEATURE_R_TEXT} (--min-feature-r) is marked unreliable (*): its effects explain little."""

# The exit statuses, next to the help text that promises them to the user.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TEXT = """\
exit status: 0 ok; 1 failure (model error, some files of a batch failed); 2 usage or input
error (bad arguments, missing/unreadable/non-audio file, missing, damaged or incompatible
checkpoint, an output path that is an input or has an audio suffix); 130 interrupted."""

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
end and in the CSV, the others are still processed; exit status 1 if any failed. The windows
of several files share each forward pass, and a last line on stderr reports clips per second
and the share of decoding and of the model."""

EXPLAIN_EPILOG = f"""\
examples:
  {PROG} explain song.mp3
  {PROG} explain song.mp3 --hop 2.5 --plot song_curves.png
  {PROG} explain song.mp3 --json | jq '.emotions'
  {PROG} explain clip.wav --checkpoint models/joint/joint_seed_3.pt     (one run)
  {PROG} explain clip.wav -c models/joint                            (every run in the folder)
  {PROG} explain ~/Music/album/ --csv album.csv
  {PROG} explain a.mp3 b.flac c.ogg --csv - > table.csv

CSV columns: file, status (ok|failed), the 7 features, the 8 emotions, error, then n_runs,
r_<feature> for the 7 features (their test r) and unreliable (those below --min-feature-r,
separated by ';').

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("-c", "--checkpoint", metavar="PATH", action="append", default=None,
                       help="a trained explainable checkpoint, or a folder of them; repeat for several runs "
                            f"(default: every run in {DEFAULT_RUNS_TEXT}/, else {DEFAULT_CHECKPOINT_TEXT}; "
                            "relative to the current directory)")
    model.add_argument("--min-feature-r", metavar="R", type=_pearson_r, default=None,
                       help="mark the effects of features predicted with a test r below R as unreliable "
                            f"(default: {MIN_FEATURE_R_TEXT})")
    model.add_argument("--hop", metavar="SECONDS", type=_positive_seconds, default=None,
                       help="slide the window by this much over a long file "
                            "(default: the hop the model was scored with, train.eval_hop_seconds: "
                            "5 s in the paper profile, 6 s in the embedded run)")

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
    p.set_defaults(command="explain")

    p = sub.add_parser("compare", parents=[common, model], formatter_class=_Formatter,
                       help="two songs side by side and the features behind their differences",
                       description=COMPARE_DESCRIPTION, epilog=COMPARE_EPILOG)
    p.add_argument("a", metavar="A", help="first audio file")
    p.add_argument("b", metavar="B", help="second audio file")
    p.add_argument("--top", metavar="N", type=_positive_int, default=3,
                   help="how many driving features to name per emotion (default: 3)")
    p.add_argument("--json", action="store_true", help="JSON on stdout instead of the table")
    p.set_defaults(command="compare")

    p = sub.add_parser("info", parents=[common], formatter_class=_Formatter,
                       help="what a checkpoint is: model, corpus, date, test correlations",
                       description=INFO_DESCRIPTION, epilog=INFO_EPILOG)
    p.add_argument("checkpoint_path", nargs="?", metavar="CHECKPOINT", default=None,
                   help=f"checkpoint file (default: {DEFAULT_CHECKPOINT_TEXT})")
    p.add_argument("-c", "--checkpoint", metavar="PATH", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(command="info")

    p = sub.add_parser("check", parents=[common], formatter_class=_Formatter,
                       help="a verdict on the run: against the paper, or against another revision",
                       description=CHECK_DESCRIPTION)
    add_check_arguments(p)
    p.set_defaults(command="check")
    return parser
