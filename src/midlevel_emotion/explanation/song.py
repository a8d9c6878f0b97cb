"""Why a model predicts what it predicts for one song (paper Section 7): :func:`explain`, the
song-level API behind the command line, and :func:`compare`, the Section 7.2 view of two songs.

:func:`explain` is three steps that :mod:`.batch` reuses to share forward passes between files:
:func:`.clip.prepare_clip` (decode, resample, spectrogram, windows), :class:`.network.MidlevelNetwork`
(the checked, fused network) and :func:`build_explanation` (effects, :mod:`.effects`, from the
windows' mid-level predictions). The model-level view over the test songs of a run is the
``explain`` DVC stage (:mod:`.explain_stage`; the song pair is chosen in :mod:`.pairs`, drawing is in
:mod:`.figures`).

Song-level invariant
--------------------
A song's prediction is the mean of its windows' predictions. Because the emotion layer is
linear, the mean of ``W x_t + b`` over windows ``t`` equals ``W mean(x_t) + b``: the song-level
effects are computed from the song-level mean mid-level vector, and for every emotion
``sum(effects[e].values()) + bias[e] == emotions[e]`` (to 1e-5; the emotion values are
computed in float64 from the network's mid-level output, which matches the network's own
float32 emotion output to rounding; :class:`.network.MidlevelNetwork` checks that it does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES, MIN_FEATURE_R
from ..core.errors import CheckpointError
from .clip import Clip, prepare_clip
from .effects import check_min_feature_r, effects, emotion_layer, feature_reliability, spread
from .network import DEFAULT_CHECKPOINT, MidlevelNetwork, model_and_meta

SYNTHETIC_WARNING = ("this model was trained on the synthetic corpus: its predictions on real music mean "
                     "nothing until the pipeline has run on the real data")

BATCH_SIZE = 16  # windows per forward pass (measured fastest on 2 CPU cores)


@dataclass
class Explanation:
    """Why a model predicts the emotions it predicts for one piece of audio.

    Attributes
    ----------
    source : str
        The audio file's path, or ``"<signal>"`` for an array.
    duration_seconds : float
        Length of the audio.
    padded : bool
        True when the audio is shorter than the model's window and was loop-padded
        (repeated end to start, as in training) to fill one window.
    window_seconds, hop_seconds : float
        Window the model hears and the hop between windows (both as frames / fps).
    times : np.ndarray
        (n_windows,) window start times in seconds.
    midlevel : dict[str, float]
        Song-level predicted mid-level features (mean over windows).
    emotions : dict[str, float]
        Song-level predicted emotions (mean over windows = emotion layer of ``midlevel``).
    effects : dict[str, dict[str, float]]
        emotion -> feature -> ``weight * midlevel[feature]``.
    bias : dict[str, float]
        emotion -> bias of the emotion layer.
    midlevel_curve : np.ndarray
        (n_windows, 7) per-window mid-level predictions.
    emotion_curve : np.ndarray
        (n_windows, 8) per-window emotion predictions.
    checkpoint : dict
        ``path, kind, corpus, trained_at, params_hash, test_pearson`` of the model used
        (an ensemble: ``paths`` and ``seeds`` of its runs, see :mod:`.ensemble`).
    warning : str or None
        Set when the model was trained on the synthetic corpus.
    reliability : dict[str, float or None]
        feature -> test Pearson r of the model's prediction of it, on the model's own
        held-out test split (the mean over runs for an ensemble); None where not recorded.
    min_feature_r : float
        The r below which a feature's effects are marked unreliable (:data:`MIN_FEATURE_R`).
    n_runs : int
        How many runs' models the explanation averages (1: one checkpoint).
    spread : dict[str, dict[str, dict[str, float]]]
        Ensembles only: emotion -> feature -> ``std, min, max`` of the effect over runs and
        ``sign_agreement``, the share of runs whose effect has the mean effect's sign.
    emotion_spread : dict[str, dict[str, float]]
        Ensembles only: emotion -> ``std, min, max`` of the prediction over runs.
    runs : list of dict
        Ensembles only: every run's ``checkpoint, midlevel, emotions, effects, bias``.

    Invariant: for every emotion ``e``,
    ``sum(effects[e].values()) + bias[e] == emotions[e]`` to 1e-5 (for an ensemble, of the
    means over runs: the map is linear).
    Values are on the paper's scale (ratings and annotations divided by 10).
    """

    source: str
    duration_seconds: float
    padded: bool
    window_seconds: float
    hop_seconds: float
    times: np.ndarray
    midlevel: dict[str, float]
    emotions: dict[str, float]
    effects: dict[str, dict[str, float]]
    bias: dict[str, float]
    midlevel_curve: np.ndarray
    emotion_curve: np.ndarray
    checkpoint: dict = field(default_factory=dict)
    warning: str | None = None
    reliability: dict[str, float | None] = field(default_factory=dict)
    min_feature_r: float = MIN_FEATURE_R
    n_runs: int = 1
    spread: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    emotion_spread: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def unreliable(self) -> list[str]:
        """The features whose test r is below :attr:`min_feature_r`, in model output order."""
        return [f for f in MIDLEVEL_FEATURES
                if self.reliability.get(f) is not None and self.reliability[f] < self.min_feature_r]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (arrays as nested lists, numbers as Python floats)."""
        data = self._core_dict()
        data["n_runs"] = int(self.n_runs)
        data["reliability"] = {
            "test_pearson": {f: _jsonable(r) for f, r in self.reliability.items()},
            "min_feature_r": float(self.min_feature_r),
            "unreliable": self.unreliable,
            "source": reliability_source(self),
        }
        if self.n_runs > 1:
            data["spread"] = _jsonable(self.spread)
            data["emotion_spread"] = _jsonable(self.emotion_spread)
            data["runs"] = _jsonable(self.runs)
        return data

    def _core_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "duration_seconds": float(self.duration_seconds),
            "padded": bool(self.padded),
            "window_seconds": float(self.window_seconds),
            "hop_seconds": float(self.hop_seconds),
            "times": [float(t) for t in self.times],
            "midlevel": {k: float(v) for k, v in self.midlevel.items()},
            "emotions": {k: float(v) for k, v in self.emotions.items()},
            "effects": {e: {f: float(v) for f, v in row.items()} for e, row in self.effects.items()},
            "bias": {k: float(v) for k, v in self.bias.items()},
            "midlevel_curve": np.asarray(self.midlevel_curve, dtype=float).tolist(),
            "emotion_curve": np.asarray(self.emotion_curve, dtype=float).tolist(),
            "checkpoint": _jsonable(self.checkpoint),
            "warning": self.warning,
        }


def reliability_source(exp: Explanation) -> str:
    """Where :attr:`Explanation.reliability` comes from, in words (for the JSON)."""
    runs = exp.runs or [{"checkpoint": exp.checkpoint}]
    names = ", ".join(str(run["checkpoint"].get("path")) for run in runs)
    what = "the mean over these runs of " if len(runs) > 1 else ""
    return (f"{what}the test Pearson r that each checkpoint recorded when it was trained, on its own run's "
            f"held-out test split (the clips in the checkpoint's extra.test_ids): {names}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def build_explanation(clip: Clip, mid_curve: np.ndarray, model: torch.nn.Module, meta: dict, *,
                      min_feature_r: float = MIN_FEATURE_R) -> Explanation:
    """The :class:`Explanation` of a clip, given its windows' mid-level predictions (n_windows, 7).

    ``min_feature_r`` marks the features the model predicts worse than that (test r) as unreliable.

    Raises
    ------
    CheckpointError
        The model's output is not finite (a damaged checkpoint).
    """
    weight, bias = emotion_layer(model)
    with np.errstate(all="ignore"):  # checked on the next line
        emotion_curve = mid_curve @ weight.T + bias
    if not (np.isfinite(mid_curve).all() and np.isfinite(emotion_curve).all()):
        raise CheckpointError(f"{meta.get('path', 'checkpoint')}: the model's output for {clip.source} is not "
                              "finite (NaN or infinite); the checkpoint is damaged")
    song_mid = mid_curve.mean(axis=0)
    song_emotions = song_mid @ weight.T + bias
    song_effects = effects(weight, bias, song_mid)
    fps = clip.fps
    return Explanation(
        source=clip.source,
        duration_seconds=clip.duration_seconds,
        padded=bool(len(clip.normalised) < clip.crop_frames),
        window_seconds=clip.crop_frames / fps,
        hop_seconds=clip.hop_frames / fps,
        times=clip.starts / fps,
        midlevel=dict(zip(MIDLEVEL_FEATURES, map(float, song_mid))),
        emotions=dict(zip(EMOTIONS, map(float, song_emotions))),
        effects={e: dict(zip(MIDLEVEL_FEATURES, map(float, song_effects[i]))) for i, e in enumerate(EMOTIONS)},
        bias=dict(zip(EMOTIONS, map(float, bias))),
        midlevel_curve=mid_curve,
        emotion_curve=emotion_curve,
        checkpoint={"path": meta.get("path"), "seed": meta.get("seed"), "kind": meta.get("kind"),
                    "corpus": meta.get("corpus"),
                    "trained_at": meta.get("trained_at"), "params_hash": meta.get("params_hash"),
                    "test_pearson": dict(meta.get("test_pearson") or {})},
        warning=SYNTHETIC_WARNING if meta.get("corpus") == "synthetic" else None,
        reliability=feature_reliability(meta),
        min_feature_r=check_min_feature_r(min_feature_r),
    )


def explain(source: str | Path | np.ndarray, checkpoint: str | Path | tuple = DEFAULT_CHECKPOINT, *,
            sample_rate: int | None = None, hop_seconds: float | None = None,
            min_feature_r: float = MIN_FEATURE_R) -> Explanation:
    """Predict and explain the emotions of one piece of audio.

    Parameters
    ----------
    source : path or np.ndarray
        An audio file (mp3, wav, flac, ogg; decoded with :func:`midlevel_emotion.signal.audio.load`)
        or a 1-D signal (then ``sample_rate`` is required; it is resampled and
        peak-normalised like a file).
    checkpoint : path or (model, meta)
        A Joint or A2Mid2E checkpoint, or what :func:`load_model` returned (load once,
        explain many songs; :func:`midlevel_emotion.explanation.batch.explain_many` also
        shares the network's set-up and forward passes between files).
    sample_rate : int, optional
        Rate of an array ``source`` in Hz.
    hop_seconds : float, optional
        Hop between windows; default the hop the model was scored with
        (``train.eval_hop_seconds``, :mod:`midlevel_emotion.learning.inference`), so the song-level
        prediction is the one the pipeline's test scores were computed from.
    min_feature_r : float
        Features the model predicts with a lower test r are marked unreliable.

    Returns
    -------
    Explanation

    Raises
    ------
    AudioError
        The file cannot be used (missing, undecodable, silent, too short), or the array is
        empty, non-finite or silent.
    CheckpointError
        The checkpoint is missing, incompatible or not explainable, or its output is not finite.
    """
    model, meta = model_and_meta(checkpoint)
    clip = prepare_clip(source, meta, sample_rate=sample_rate, hop_seconds=hop_seconds)
    network = MidlevelNetwork(model, meta, clip.windows(0, 1))
    mid_curve = np.concatenate([network(clip.windows(b, b + BATCH_SIZE))
                                for b in range(0, clip.n_windows, BATCH_SIZE)])
    return build_explanation(clip, mid_curve, model, meta, min_feature_r=min_feature_r)


def compare(a: Explanation, b: Explanation) -> dict[str, Any]:
    """The Section 7.2 view of two songs: why their emotion predictions differ.

    Returns
    -------
    dict
        JSON-ready::

            {"a": {"source", "checkpoint"}, "b": {...},
             "same_model": bool,            # same checkpoint path, hash and training time
             "emotions": {emotion: {
                 "a": float, "b": float,
                 "difference": a - b,
                 "bias_difference": bias_a - bias_b,   # 0 for the same model
                 "features": [                          # largest |difference| first
                     {"feature", "effect_a", "effect_b", "difference": effect_a - effect_b,
                      "unreliable": bool,               # the feature's test r is below the threshold
                      "spread": {...}}, ...]}}}         # ensembles: the difference over runs

        (``spread`` as in :attr:`Explanation.spread`, of each run's difference.)

        For every emotion ``sum(f["difference"] for f in features) + bias_difference ==
        difference`` (to 1e-5): the ranking says which features make the two predictions
        differ, and in which direction.
    """
    keys = ("path", "paths", "params_hash", "trained_at")
    same = all(a.checkpoint.get(k) == b.checkpoint.get(k) for k in keys)
    per_run = same and a.n_runs > 1 and len(a.runs) == len(b.runs) == a.n_runs
    unreliable = set(a.unreliable) | set(b.unreliable)
    result: dict[str, Any] = {
        "a": {"source": a.source, "checkpoint": _jsonable(a.checkpoint)},
        "b": {"source": b.source, "checkpoint": _jsonable(b.checkpoint)},
        "same_model": same,
        "emotions": {},
    }
    for emotion in EMOTIONS:
        rows = [{"feature": f, "effect_a": float(a.effects[emotion][f]), "effect_b": float(b.effects[emotion][f]),
                 "difference": float(a.effects[emotion][f] - b.effects[emotion][f]), "unreliable": f in unreliable}
                for f in MIDLEVEL_FEATURES]
        if per_run:  # how the runs of the ensemble differ on each feature's share
            for row in rows:
                f = row["feature"]
                row["spread"] = spread(np.array([ra["effects"][emotion][f] - rb["effects"][emotion][f]
                                                 for ra, rb in zip(a.runs, b.runs)]))
        rows.sort(key=lambda r: -abs(r["difference"]))
        result["emotions"][emotion] = {
            "a": float(a.emotions[emotion]),
            "b": float(b.emotions[emotion]),
            "difference": float(a.emotions[emotion] - b.emotions[emotion]),
            "bias_difference": float(a.bias[emotion] - b.bias[emotion]),
            "features": rows,
        }
    return result


__all__ = ["BATCH_SIZE", "SYNTHETIC_WARNING", "Explanation", "build_explanation", "compare", "explain", "reliability_source"]
