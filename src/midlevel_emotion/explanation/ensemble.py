"""Explanations by every run at once: the mean effect, its spread between runs, and the runs'
agreement on its sign.

The pipeline trains one Joint model per seed (``runs.seeds``), and their 7 -> 8 emotion layers
differ: another seed gives another split, another mid-level trunk and another weight for, say,
minorness -> sad. An effect that every run agrees on can be trusted more than one that flips
sign from seed to seed, so an ensemble explanation reports, per emotion and feature:

- the mean effect over runs (the prediction is the mean of the runs' predictions, and because
  every run's map is linear, mean effects + mean bias = mean prediction exactly);
- its spread: standard deviation (``ddof=1``: the runs are a sample of seeds), minimum, maximum;
- ``sign_agreement``: the share of runs whose effect has the mean effect's sign.

Every run hears the same input (the checkpoints must agree on the spectrogram and the window),
so a file is decoded and turned into windows once, and each batch of windows goes through
every run's network (:mod:`.batch`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..core.errors import CheckpointError
from .effects import spread
from .network import DEFAULT_CHECKPOINT, load_model
from .song import Explanation

#: The runs of the Joint model that the pipeline trains (``models/joint/joint_seed_<s>.pt``).
JOINT_RUNS = DEFAULT_CHECKPOINT.parent


def checkpoint_paths(given: Sequence[str | Path]) -> list[Path]:
    """The checkpoint files named by files and folders (a folder: its ``*.pt``, by seed).

    Parameters
    ----------
    given : sequence of paths
        Checkpoint files and folders of them, e.g. ``["models/joint"]``. Empty: every run
        of the Joint model in ``models/joint/`` when there is one, else
        :data:`midlevel_emotion.explanation.network.DEFAULT_CHECKPOINT` (whose absence the loader
        reports).

    Raises
    ------
    CheckpointError
        A folder without ``*.pt`` files.
    """
    if not given:
        found = _sorted_by_seed(JOINT_RUNS.glob("*.pt")) if JOINT_RUNS.is_dir() else []
        return found or [DEFAULT_CHECKPOINT]
    paths: list[Path] = []
    for raw in given:
        path = Path(raw)
        if path.is_dir():
            found = _sorted_by_seed(path.glob("*.pt"))
            if not found:
                raise CheckpointError(f"{path}: no checkpoint (*.pt) in this folder")
            paths += found
        else:
            paths.append(path)
    return list(dict.fromkeys(paths))  # a file named twice is one run


def _sorted_by_seed(paths: Any) -> list[Path]:
    """``joint_seed_2.pt`` before ``joint_seed_10.pt``: by the numbers in the name, then the name."""
    def key(path: Path) -> tuple[list[int], str]:
        return [int(n) for n in re.findall(r"\d+", path.stem)], path.name

    return sorted((p for p in paths if p.is_file()), key=key)


def load_models(paths: Sequence[str | Path]) -> list[tuple[Any, dict]]:
    """Load explainable checkpoints that hear the same input (:func:`check_same_input`).

    Raises
    ------
    CheckpointError
        One line naming the file: missing, not explainable, or hearing another input.
    """
    models = [load_model(path) for path in paths]
    if not models:
        raise CheckpointError("no checkpoint given")
    check_same_input([meta for _, meta in models])
    return models


def check_same_input(metas: Sequence[dict]) -> None:
    """Refuse runs whose spectrogram settings, window, kind or corpus differ from the first's.

    One set of windows serves every run of an ensemble, and the mean of a Joint and an
    A2Mid2E model, or of a synthetic and a real-data model, would mean nothing.

    Raises
    ------
    CheckpointError
        Naming the first checkpoint that differs and what differs.
    """
    def shared(meta: dict) -> dict[str, Any]:
        return {"spectrogram": meta.get("spectrogram"), "window": (meta.get("input") or {}).get("crop_frames"),
                "kind": meta.get("kind"), "corpus": meta.get("corpus")}

    first = shared(metas[0])
    for meta in metas[1:]:
        own = shared(meta)
        differs = [key for key in first if own[key] != first[key]]
        if differs:
            raise CheckpointError(f"{meta.get('path', 'checkpoint')}: its {' and '.join(differs)} differ from that "
                                  f"of {metas[0].get('path', 'the first checkpoint')}; the runs of an ensemble must "
                                  "be of one kind and corpus and hear the same input (explain them one at a time)")


def combine(runs: Sequence[Explanation]) -> Explanation:
    """One explanation from the explanations of one piece of audio by several runs.

    A single run is returned as it is. For several, every number is the mean over runs, and
    :attr:`Explanation.spread` and :attr:`Explanation.emotion_spread` say how far the runs
    are apart; the reliability of a feature is the mean of the runs' test r (None when a run
    recorded none).
    """
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise ValueError("combine() needs at least one explanation")
    first = runs[0]
    midlevel = np.array([[run.midlevel[f] for f in MIDLEVEL_FEATURES] for run in runs])
    emotions = np.array([[run.emotions[e] for e in EMOTIONS] for run in runs])
    bias = np.array([[run.bias[e] for e in EMOTIONS] for run in runs])
    effects = np.array([[[run.effects[e][f] for f in MIDLEVEL_FEATURES] for e in EMOTIONS] for run in runs])
    mean_effects = effects.mean(axis=0)
    reliability = {f: (None if any(run.reliability.get(f) is None for run in runs)
                       else float(np.mean([run.reliability[f] for run in runs]))) for f in MIDLEVEL_FEATURES}
    checkpoints = [run.checkpoint for run in runs]
    return Explanation(
        source=first.source,
        duration_seconds=first.duration_seconds,
        padded=first.padded,
        window_seconds=first.window_seconds,
        hop_seconds=first.hop_seconds,
        times=first.times,
        midlevel=dict(zip(MIDLEVEL_FEATURES, map(float, midlevel.mean(axis=0)))),
        emotions=dict(zip(EMOTIONS, map(float, emotions.mean(axis=0)))),
        effects={e: dict(zip(MIDLEVEL_FEATURES, map(float, mean_effects[i]))) for i, e in enumerate(EMOTIONS)},
        bias=dict(zip(EMOTIONS, map(float, bias.mean(axis=0)))),
        midlevel_curve=np.mean([run.midlevel_curve for run in runs], axis=0),
        emotion_curve=np.mean([run.emotion_curve for run in runs], axis=0),
        checkpoint={"paths": [c.get("path") for c in checkpoints], "seeds": [c.get("seed") for c in checkpoints],
                    "kind": first.checkpoint.get("kind"), "corpus": first.checkpoint.get("corpus"),
                    "trained_at": max(str(c.get("trained_at")) for c in checkpoints),
                    "params_hash": sorted({str(c.get("params_hash")) for c in checkpoints})},
        warning=first.warning,
        reliability=reliability,
        min_feature_r=first.min_feature_r,
        n_runs=len(runs),
        spread={e: {f: spread(effects[:, i, j]) for j, f in enumerate(MIDLEVEL_FEATURES)}
                for i, e in enumerate(EMOTIONS)},
        emotion_spread={e: {k: v for k, v in spread(emotions[:, i]).items() if k != "sign_agreement"}
                        for i, e in enumerate(EMOTIONS)},
        runs=[{"checkpoint": run.checkpoint, "midlevel": run.midlevel, "emotions": run.emotions,
               "effects": run.effects, "bias": run.bias} for run in runs],
    )


__all__ = ["JOINT_RUNS", "check_same_input", "checkpoint_paths", "combine", "load_models"]
