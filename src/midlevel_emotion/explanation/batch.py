"""Explain many files at once: the network is set up once, and windows of several files share
each forward pass.

:func:`midlevel_emotion.explanation.song.explain` sets the network up for every call (two checks
and a BatchNorm-folded copy: about three forward passes of one window) and then runs the
windows of its one file: at the model's evaluation hop 2 windows of a 15 s clip at the paper's
10 s window and 5 s hop, 3 at the embedded 3 s window and 6 s hop. :func:`explain_many` sets the network up once per run
and fills every forward pass with up to ``batch_size`` windows, taken from as many files as
needed, then splits the predictions back per file.

Measured on 2 CPU cores (``benchmarks/explain_folder.py``, 20 clips of 15 s): 1.7-1.9x the
clips/s of explaining file by file at the 10 s window, 1.2-1.5x at the 3 s window. Nearly all
of it is the shared set-up; on this CPU a convolution's cost per window hardly depends on the
batch size, so filling passes across files added between -3 and +23 % over two runs (within
run-to-run noise). It costs nothing here; a machine where small batches leave cores idle
should gain more from it (not measured).

Files are decoded one after the other in this process: decoding and resampling take about
0.03 s of the 0.10-0.13 s a 15 s clip takes, and a fresh pool of 2 worker processes
(:func:`.parallel.map_tasks`) decoded 20 clips 4.6-5.3x slower than this process, its start-up
(importing librosa) included.

Numbers: in eval mode every window's prediction depends on that window alone, so batching
changes them only through the convolution kernels' summation order (measured up to 1e-6
relative; the tests allow 1e-5).

Several checkpoints (the runs of an ensemble, :mod:`.ensemble`) hear the same windows: each
file is decoded once, and each batch of windows goes through every run's network; the runs'
explanations of a file are then combined into one.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

import numpy as np

from ..signal import audio
from . import clip  # prepare_clip looked up through the module: tests intercept each decode
from ..core.constants import MIDLEVEL_FEATURES
from .ensemble import check_same_input, combine
from ..core.errors import CheckpointError
from ..core.constants import MIN_FEATURE_R
from .clip import Clip
from .effects import check_min_feature_r
from .network import MidlevelNetwork, model_and_meta
from .song import BATCH_SIZE, Explanation, build_explanation


@dataclass
class Timings:
    """Where :func:`explain_many` spent its time, in seconds of wall clock.

    Attributes
    ----------
    decode_seconds : float
        Decoding, resampling and the spectrogram (:func:`.clip.prepare_clip`),
        failed files included.
    model_seconds : float
        Setting up the network and its forward passes.
    n_windows : int
        Windows predicted.
    n_batches : int
        Forward passes over them.
    """

    decode_seconds: float = 0.0
    model_seconds: float = 0.0
    n_windows: int = 0
    n_batches: int = 0


@dataclass
class Outcome:
    """What became of one file: its explanation, or the error it failed with.

    Attributes
    ----------
    index : int
        Position of the file in the input sequence (outcomes come in this order).
    source : str
        The file as given.
    explanation : Explanation or None
        Set when the file was explained.
    error : Exception or None
        Set when it failed: an :class:`~midlevel_emotion.core.errors.AudioError` for audio that
        cannot be used, anything else for a model failure on this file.
    """

    index: int
    source: str
    explanation: Explanation | None = None
    error: Exception | None = None


@dataclass(eq=False)  # compared and hashed by identity: one per file
class _Pending:
    """A file whose outcome is not out yet: its clip and the predictions of its windows so far."""

    outcome: Outcome
    clip: Clip | None = None
    midlevel: np.ndarray = field(default_factory=lambda: np.empty((0, 0, len(MIDLEVEL_FEATURES))))  # run, window
    remaining: int = 0

    @property
    def done(self) -> bool:
        return self.outcome.error is not None or self.remaining == 0


def warm_up(meta: dict) -> None:
    """Pay the decoder's one-time start-up now, so that a throughput clock started afterwards
    measures the run itself (as it leaves out importing torch and loading the model).

    The first decode in a process imports librosa's lazily loaded modules and starts soxr:
    about 1.6 s here, against 0.03 s for each later 15 s clip.
    """
    t = np.arange(4410) / 44100
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    audio.normalise(np.stack([tone, tone], axis=1), 44100, int(meta["spectrogram"]["sample_rate"]))


def explain_many(sources: Sequence[str | Path], checkpoint: str | Path | tuple | list, *,
                 hop_seconds: float | None = None, batch_size: int = BATCH_SIZE,
                 timings: Timings | None = None, min_feature_r: float = MIN_FEATURE_R,
                 decode_context: Callable[[], ContextManager] | None = None) -> Iterator[Outcome]:
    """Explain audio files, sharing the network's set-up and its forward passes between them.

    Each file's explanation equals ``song.explain(file, checkpoint, hop_seconds=...)``
    up to float summation order (see the module docstring); with several checkpoints, it is
    :func:`.ensemble.combine` of those of every run. A file that cannot be used fails alone
    and the others go on.

    Parameters
    ----------
    sources : sequence of paths
        Audio files (mp3, wav, flac, ogg).
    checkpoint : path or (model, meta), or a list of them
        As in :func:`.song.explain`; a list is an ensemble whose runs hear the same
        input (:func:`.ensemble.load_models` checks that).
    min_feature_r : float
        Features predicted with a lower test r are marked unreliable.
    hop_seconds : float, optional
        Hop between windows; default the model's evaluation hop (as :func:`.song.explain`).
    batch_size : int
        Windows per forward pass (a pass may hold windows of several files, and a long file's
        windows may span several passes).
    timings : Timings, optional
        Filled in as the run goes (for a throughput report).
    decode_context : callable, optional
        Returns a context manager each file is decoded in (the CLI keeps the mp3 decoder's own
        messages off the terminal with it).

    Yields
    ------
    Outcome
        One per file, in input order, as soon as the file and every file before it are done.

    Raises
    ------
    CheckpointError
        The checkpoint is not explainable, or its output is not finite: every file would fail.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    check_min_feature_r(min_feature_r)
    models = [model_and_meta(c) for c in (checkpoint if isinstance(checkpoint, list) else [checkpoint])]
    check_same_input([meta for _, meta in models])
    meta = models[0][1]  # the input settings every run shares
    timings = timings if timings is not None else Timings()
    context = decode_context or contextlib.nullcontext
    networks: list[MidlevelNetwork] = []
    pending: deque[_Pending] = deque()  # in input order, until yielded
    queue: deque[tuple[_Pending, int]] = deque()  # windows waiting for a forward pass

    def run(batch: list[tuple[_Pending, int]]) -> None:
        start = time.perf_counter()
        try:
            windows = np.concatenate([item.clip.windows(w, w + 1) for item, w in batch])
            if not networks:  # checked on the first window, as explain() does
                try:
                    networks.extend(MidlevelNetwork(m, mt, windows[:1]) for m, mt in models)
                except CheckpointError:
                    raise  # not explainable: every file would fail
                except Exception as err:  # noqa: BLE001 - as explain() would: these files fail, the next try again
                    networks.clear()
                    for item, _ in batch:
                        item.outcome.error = item.outcome.error or err
                    return
            _predict(networks, batch, windows, timings)
        finally:
            timings.model_seconds += time.perf_counter() - start

    for index, source in enumerate(sources):
        item = _Pending(Outcome(index, str(source)))
        pending.append(item)
        start = time.perf_counter()
        try:
            with context():
                item.clip = clip.prepare_clip(source, meta, hop_seconds=hop_seconds)
        except Exception as err:  # noqa: BLE001 - this file fails alone (KeyboardInterrupt is not caught)
            item.outcome.error = err
        finally:
            timings.decode_seconds += time.perf_counter() - start
        if item.clip is not None:
            item.midlevel = np.empty((len(models), item.clip.n_windows, len(MIDLEVEL_FEATURES)))
            item.remaining = item.clip.n_windows
            queue.extend((item, w) for w in range(item.clip.n_windows))
        while len(queue) >= batch_size:
            run([queue.popleft() for _ in range(batch_size)])
        yield from _finished(pending, models, min_feature_r)
    while queue:
        run([queue.popleft() for _ in range(min(batch_size, len(queue)))])
    yield from _finished(pending, models, min_feature_r)


def _predict(networks: list[MidlevelNetwork], batch: list[tuple[_Pending, int]], windows: np.ndarray,
             timings: Timings) -> None:
    """Run one batch through every run's network and file its predictions. When a pass fails,
    each file's windows run alone, so the error lands on the file that causes it and the others
    still get results."""
    live = [k for k, (item, _) in enumerate(batch) if item.outcome.error is None]
    if not live:
        return
    try:
        groups = [(live, np.stack([network(windows[live]) for network in networks]))]
        timings.n_batches += 1
    except Exception:  # noqa: BLE001 - retried per file below
        groups = []
        for item in dict.fromkeys(batch[k][0] for k in live):
            rows = [k for k in live if batch[k][0] is item]
            try:
                groups.append((rows, np.stack([network(windows[rows]) for network in networks])))
                timings.n_batches += 1
            except Exception as err:  # noqa: BLE001 - this file fails alone
                item.outcome.error = err
    for rows, midlevel in groups:  # midlevel: (run, window, feature)
        for column, k in enumerate(rows):
            item, w = batch[k]
            item.midlevel[:, w] = midlevel[:, column]
            item.remaining -= 1
            timings.n_windows += 1


def _finished(pending: deque[_Pending], models: list[tuple[Any, dict]],
              min_feature_r: float) -> Iterator[Outcome]:
    """Pop and yield the outcomes at the head of ``pending`` that are complete, in order."""
    while pending and pending[0].done:
        item = pending.popleft()
        if item.outcome.error is None and item.clip is not None:
            try:
                item.outcome.explanation = combine([
                    build_explanation(item.clip, item.midlevel[r], model, meta, min_feature_r=min_feature_r)
                    for r, (model, meta) in enumerate(models)])
            except CheckpointError:
                raise  # a non-finite output: the checkpoint is damaged, every file would fail
            except Exception as err:  # noqa: BLE001 - this file fails alone
                item.outcome.error = err
        yield item.outcome


__all__ = ["Outcome", "Timings", "explain_many", "warm_up"]
