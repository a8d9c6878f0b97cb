"""What the stage scripts share: one way to end, and the training stages' arguments.

Every stage script ends through :func:`run`, so every stage behaves the same:

- a bad input (one of the package's errors, :mod:`midlevel_emotion.core.errors`, such as
  ``CorpusError``, ``AudioError``, ``ParamsError``, ``DownloadError`` or ``CheckpointError``;
  a ``ValueError``, which is how the package's validators speak; an ``OSError`` such as a
  missing file or a full disk) prints ONE line, ``<stage>: error: <message>``, and exits 1;
- Ctrl-C prints one line and exits 130, as shells report an interrupted command;
- anything else is a bug and keeps its traceback.

``MIDLEVEL_EMOTION_DEBUG=1`` shows the traceback of every error.
"""

import argparse
import gc
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable, NoReturn

from midlevel_emotion.core.determinism import configure_cpu, pin_numpy
from midlevel_emotion.core.errors import MidlevelError, ParamsError, one_line
from midlevel_emotion.core.config import Params
from midlevel_emotion.core.params import load_params

# Every stage imports this module first, before anything imports numpy: numpy's loops are
# pinned here for all stages (midlevel_emotion.core.determinism.NUMPY_PINS explains why).
pin_numpy()

EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT
DEBUG_VARIABLE = "MIDLEVEL_EMOTION_DEBUG"


def is_input_error(err: BaseException) -> bool:
    """Whether ``err`` reports a bad input or a failure the user can act on (one line is
    enough) rather than a bug: the package's own errors (:mod:`midlevel_emotion.core.errors`), a
    ``ValueError`` (how validators speak) or an ``OSError`` (a missing file, a full disk)."""
    return isinstance(err, (MidlevelError, OSError, ValueError))


def run(main: Callable[[], int | None], name: str) -> NoReturn:
    """Run a stage's ``main`` and exit: 0 (or what it returns), 1 for a bad input, 130 for Ctrl-C.

    Parameters
    ----------
    main : callable
        The stage's work; returns an exit status or None.
    name : str
        The stage's name, first word of every line it prints.
    """
    debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    set_source_date()
    interrupted = _note_ctrl_c()
    bug: list[str] | None = None
    try:
        status = main()
    except KeyboardInterrupt:
        _say(f"{name}: interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - sorted below: input errors one line, bugs with their traceback
        if interrupted.came and not debug:
            # A library can turn the KeyboardInterrupt into another error (numpy's
            # ndarray.tofile raises TypeError when Ctrl-C lands in its path check); it is
            # still the user's Ctrl-C.
            _say(f"{name}: interrupted")
            sys.exit(EXIT_INTERRUPTED)
        if not debug and is_input_error(err):
            _say(f"{name}: error: {one_line(err) or type(err).__name__}")
            sys.exit(EXIT_FAILURE)
        bug = traceback.format_exception(err)
        traceback.clear_frames(err.__traceback__)
    if bug is not None:
        # Printed here, with the frames of the failed work freed and collected while the
        # interpreter still runs: objects they held (DVC's git packs, opened for the training
        # curves) would otherwise be finalised at shutdown, each printing "Exception ignored".
        sys.stderr.write("".join(bug))
        gc.collect()
        sys.exit(EXIT_FAILURE)
    sys.exit(status or 0)


#: What a stage's results depend on in the repository: the date of the last commit that changed
#: one of them dates the checkpoints (a commit of the README alone changes no checkpoint).
SOURCE_PATHS = ("src", "stages", "params.yaml", "dvc.yaml", "pyproject.toml", "constraints.txt")


def set_source_date() -> None:
    """Date the stage's checkpoints by the commit of the code they come from (``SOURCE_DATE_EPOCH``).

    A checkpoint records when its code and params were last committed (:data:`SOURCE_PATHS`),
    not the wall clock, so retraining the same code gives the same bytes
    (``checkpoints.source_date``). A ``SOURCE_DATE_EPOCH`` already set is kept; outside git, or
    where git fails, the checkpoint records the time of saving.
    """
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return
    try:
        done = subprocess.run(["git", "log", "-1", "--format=%ct", "--", *SOURCE_PATHS], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return
    if done.returncode == 0 and done.stdout.strip().isdigit():
        os.environ["SOURCE_DATE_EPOCH"] = done.stdout.strip()


class _Flag:
    """Whether Ctrl-C came (set by the signal handler, read by :func:`run`)."""

    came = False


def _note_ctrl_c() -> _Flag:
    """Raise KeyboardInterrupt on SIGINT as Python does, and remember that it came.

    A SIGINT that the process inherited ignored (a background job of a non-interactive shell)
    stays ignored.
    """
    flag = _Flag()
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return flag

    def on_sigint(signum: int, frame: object) -> None:
        flag.came = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    return flag


def _say(line: str) -> None:
    """Print to stderr after what the stage printed to stdout, so the two keep their order."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout closed or a broken pipe: the line still goes out
        pass
    print(line, file=sys.stderr, flush=True)


def parse(description: str, *outputs: str) -> tuple[argparse.Namespace, Params]:
    """The training stages' arguments (``--raw``, ``--spectrograms``, ``--params`` and ``outputs``)
    and the params file they name, read and checked (:func:`midlevel_emotion.core.params.load_params`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--spectrograms", default="data/spectrograms")
    parser.add_argument("--params", default="params.yaml")
    for name in outputs:
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    return args, read_params(args.params)


#: The params files this process has read, by path: a training stage reads its file once,
#: for :func:`configure_cpu_from_params` (before numpy and torch load) and :func:`parse`.
_READ: dict[str, Params] = {}


def read_params(path: str) -> Params:
    """The params file at ``path``, read and checked once per process
    (:func:`midlevel_emotion.core.params.load_params`)."""
    if path not in _READ:
        _READ[path] = load_params(path)
    return _READ[path]


def configure_cpu_from_params() -> None:
    """Apply ``train.reproducible`` (``midlevel_emotion.core.determinism``) from the ``--params`` file.

    Stage scripts call this before importing anything that imports numpy or torch: the kernels
    and threads it pins are read when those libraries load.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--params", default="params.yaml")
    path = parser.parse_known_args()[0].params
    try:
        reproducible = read_params(path).train.reproducible  # a bool: checked as the file is read
    except ParamsError as err:
        sys.exit(f"{Path(sys.argv[0]).stem}: error: {err}")
    configure_cpu(reproducible)
