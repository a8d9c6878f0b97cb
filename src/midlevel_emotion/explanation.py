"""Explanations of the explainable models (paper Section 7).

In the Joint model (and A2Mid2E) the emotion layer is a plain ``Linear(7, 8)`` on the
mid-level output, so every emotion prediction is a sum of *feature effects* plus a bias::

    emotion_i = sum_j  w_ij * x_j  +  b_i        effect_ij = w_ij * x_j

where ``x`` is the predicted mid-level vector. This module computes those effects

- for one piece of audio (:func:`explain`, the song-level API behind the user CLI;
  :func:`compare` for the Section 7.2 view of two songs), and
- over the test songs of a run, for the model-level figures and the Section 7.2 song pair
  (:func:`explain_stage`, the ``explain`` DVC stage; drawing is in :mod:`.figures`).

Song-level invariant
--------------------
A song's prediction is the mean of its windows' predictions. Because the emotion layer is
linear, the mean of ``W x_t + b`` over windows ``t`` equals ``W mean(x_t) + b``: the song-level
effects are computed from the song-level mean mid-level vector, and for every emotion
``sum(effects[e].values()) + bias[e] == emotions[e]`` (to 1e-5; the emotion values are
computed in float64 from the network's mid-level output, which matches the network's own
float32 emotion output to rounding; :func:`explain` checks that it does).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import audio
from .corpus import EMOTIONS, MIDLEVEL_FEATURES, load_labels
from .scores import pearson
from .features import log_filtered_spectrogram
from .store import SpectrogramStore
from .training import CheckpointError, crop, load_checkpoint, predict, window_starts

#: The checkpoint :func:`explain` uses by default: the Joint model of the pipeline's first run
#: (``runs.seeds[0] = 0`` in params.yaml). Relative, so it resolves against the current
#: directory: run from the repository root (the user CLI does the same).
DEFAULT_CHECKPOINT = Path("models/joint/joint_seed_0.pt")

#: Model kinds whose emotions are a linear function of a mid-level bottleneck.
EXPLAINABLE_KINDS: tuple[str, ...] = ("joint", "a2mid2e")

SYNTHETIC_WARNING = ("this model was trained on the synthetic corpus: its predictions on real music mean "
                     "nothing until the pipeline has run on the real data")

SIGNAL_SOURCE = "<signal>"

#: Section 7.2 pair selection rules (``explain.pair_selection`` in params.yaml), see :func:`select_pair`.
PAIR_RULES: tuple[str, ...] = ("words", "formula")

_SPECTROGRAM_KEYS = ("sample_rate", "frame_size", "fps", "bands_per_octave", "fmin", "fmax")
_BATCH_SIZE = 16  # windows per forward pass (measured fastest on 2 CPU cores)
_LINEARITY_TOLERANCE = 1e-3


# ---------------------------------------------------------------------------------------
# Effects


def effects(weight: np.ndarray, bias: np.ndarray, midlevel: np.ndarray) -> np.ndarray:
    """Feature effects ``effect_ij = w_ij * x_j`` of a linear mid-level -> emotion layer.

    Parameters
    ----------
    weight : np.ndarray
        (8, 7): one row per emotion, one column per mid-level feature (``Linear.weight``).
    bias : np.ndarray
        (8,). Not part of any effect; it is taken so that callers pass the layer as a whole
        and the shapes are checked: ``effects(...).sum(-1) + bias`` is the emotion prediction.
    midlevel : np.ndarray
        (..., 7) mid-level values (one song, a curve of windows, or many songs).

    Returns
    -------
    np.ndarray
        (..., 8, 7) float64.
    """
    weight = np.asarray(weight, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    midlevel = np.asarray(midlevel, dtype=np.float64)
    n_out, n_in = len(EMOTIONS), len(MIDLEVEL_FEATURES)
    if weight.shape != (n_out, n_in) or bias.shape != (n_out,):
        raise ValueError(f"expected weight {(n_out, n_in)} and bias {(n_out,)}, got {weight.shape} and {bias.shape}")
    if midlevel.shape[-1:] != (n_in,):
        raise ValueError(f"expected mid-level values of shape (..., {n_in}), got {midlevel.shape}")
    return midlevel[..., None, :] * weight


def emotion_layer(model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The (8, 7) weight and (8,) bias of an explainable model's emotion layer, as float64."""
    layer = getattr(model, "emotion_layer", None)
    if not isinstance(layer, torch.nn.Linear):
        raise CheckpointError(f"{type(model).__name__} has no linear emotion layer on a mid-level bottleneck")
    return (layer.weight.detach().cpu().double().numpy().copy(),
            layer.bias.detach().cpu().double().numpy().copy())


# ---------------------------------------------------------------------------------------
# Song level


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
        ``path, kind, corpus, trained_at, params_hash, test_pearson`` of the model used.
    warning : str or None
        Set when the model was trained on the synthetic corpus.

    Invariant: for every emotion ``e``,
    ``sum(effects[e].values()) + bias[e] == emotions[e]`` to 1e-5.
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (arrays as nested lists, numbers as Python floats)."""
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


def load_model(checkpoint: Path | str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Load an explainable checkpoint (Joint or A2Mid2E).

    Wraps :func:`midlevel_emotion.training.load_checkpoint` and adds ``meta["path"]``.

    Raises
    ------
    CheckpointError
        One line naming the file: missing, unreadable, incompatible, or a kind (a2e, a2mid)
        without a mid-level bottleneck, whose predictions cannot be explained as effects.
    """
    path = Path(checkpoint)
    model, meta = load_checkpoint(path, device=device)
    meta = {**meta, "path": str(path)}
    _check_explainable(meta)
    return model, meta


def _check_explainable(meta: dict) -> None:
    kind = meta.get("kind")
    where = meta.get("path", "checkpoint")
    if kind not in EXPLAINABLE_KINDS:
        raise CheckpointError(f"{where}: a {kind} model has no mid-level bottleneck, so its predictions cannot be "
                              f"explained as mid-level feature effects; use a joint or a2mid2e checkpoint "
                              f"(e.g. {DEFAULT_CHECKPOINT})")
    spectrogram = meta.get("spectrogram") or {}
    missing = [k for k in _SPECTROGRAM_KEYS + ("mean", "std") if k not in spectrogram]
    if missing or "crop_frames" not in (meta.get("input") or {}):
        what = ", ".join(missing) if missing else "input.crop_frames"
        raise CheckpointError(f"{where}: checkpoint lacks {what}; it cannot turn audio into model input")


def _prepare_signal(source: str | Path | np.ndarray, sample_rate: int | None,
                    target_rate: int) -> tuple[str, np.ndarray]:
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ValueError("explain() needs sample_rate for a signal given as an array")
        if source.ndim != 1:
            raise ValueError(f"a signal must be 1-D (mono), got shape {source.shape}; downmix it first")
        if len(source) == 0:
            raise audio.AudioError(SIGNAL_SOURCE, "no samples")
        if not np.issubdtype(source.dtype, np.number):
            raise ValueError(f"a signal must be numeric, got dtype {source.dtype}")
        if not np.isfinite(source).all():
            raise audio.AudioError(SIGNAL_SOURCE, "contains non-finite samples")
        signal = audio.resample(np.asarray(source, dtype=np.float32), int(sample_rate), target_rate)
        peak = float(np.max(np.abs(signal))) if len(signal) else 0.0
        if peak < audio.SILENCE_PEAK:
            raise audio.AudioError(SIGNAL_SOURCE, f"silent (peak amplitude {peak:.1e})")
        return SIGNAL_SOURCE, (signal / peak).astype(np.float32)
    if sample_rate is not None:
        raise ValueError("sample_rate is only for signals given as arrays; files are decoded at their own rate")
    return str(source), audio.load(source, sample_rate=target_rate)


def explain(source: str | Path | np.ndarray, checkpoint: str | Path | tuple = DEFAULT_CHECKPOINT, *,
            sample_rate: int | None = None, hop_seconds: float | None = None) -> Explanation:
    """Predict and explain the emotions of one piece of audio.

    Parameters
    ----------
    source : path or np.ndarray
        An audio file (mp3, wav, flac, ogg; decoded with :func:`midlevel_emotion.audio.load`)
        or a 1-D signal (then ``sample_rate`` is required; it is resampled and
        peak-normalised like a file).
    checkpoint : path or (model, meta)
        A Joint or A2Mid2E checkpoint, or what :func:`load_model` returned (load once,
        explain many songs).
    sample_rate : int, optional
        Rate of an array ``source`` in Hz.
    hop_seconds : float, optional
        Hop between windows; default half the model's window.

    Returns
    -------
    Explanation

    Raises
    ------
    AudioError
        The file cannot be used (missing, undecodable, silent, too short), or the array is
        empty, non-finite or silent.
    CheckpointError
        The checkpoint is missing, incompatible, or not explainable.
    """
    if isinstance(checkpoint, tuple):
        model, meta = checkpoint
        _check_explainable(meta)
    else:
        model, meta = load_model(checkpoint)
    spec_params = meta["spectrogram"]
    fps = float(spec_params["fps"])
    target_rate = int(spec_params["sample_rate"])
    name, signal = _prepare_signal(source, sample_rate, target_rate)
    duration = len(signal) / target_rate
    hop_length = target_rate / fps
    if len(signal) < hop_length:
        raise audio.AudioError(name, f"too short ({duration * 1000:.0f} ms, less than one spectrogram frame)")
    spectrogram = log_filtered_spectrogram(signal, **{k: spec_params[k] for k in _SPECTROGRAM_KEYS})

    crop_frames = int(meta["input"]["crop_frames"])
    if hop_seconds is None:
        hop_frames = max(1, crop_frames // 2)
    else:
        if not hop_seconds > 0 or not math.isfinite(hop_seconds):
            raise ValueError(f"hop_seconds must be a positive number, got {hop_seconds!r}")
        hop_frames = max(1, int(round(hop_seconds * fps)))
    starts = window_starts(len(spectrogram), crop_frames, hop_frames)

    mean, std = float(spec_params["mean"]), float(spec_params["std"])
    normalised = ((spectrogram - mean) / std).astype(np.float32)  # exactly as training standardises
    weight, bias = emotion_layer(model)
    mid_curve = _midlevel_windows(model, normalised, starts, crop_frames, meta)
    emotion_curve = mid_curve @ weight.T + bias
    song_mid = mid_curve.mean(axis=0)
    song_emotions = song_mid @ weight.T + bias
    song_effects = effects(weight, bias, song_mid)

    return Explanation(
        source=name,
        duration_seconds=float(duration),
        padded=bool(len(spectrogram) < crop_frames),
        window_seconds=crop_frames / fps,
        hop_seconds=hop_frames / fps,
        times=starts / fps,
        midlevel=dict(zip(MIDLEVEL_FEATURES, map(float, song_mid))),
        emotions=dict(zip(EMOTIONS, map(float, song_emotions))),
        effects={e: dict(zip(MIDLEVEL_FEATURES, map(float, song_effects[i]))) for i, e in enumerate(EMOTIONS)},
        bias=dict(zip(EMOTIONS, map(float, bias))),
        midlevel_curve=mid_curve,
        emotion_curve=emotion_curve,
        checkpoint={"path": meta.get("path"), "kind": meta.get("kind"), "corpus": meta.get("corpus"),
                    "trained_at": meta.get("trained_at"), "params_hash": meta.get("params_hash"),
                    "test_pearson": dict(meta.get("test_pearson") or {})},
        warning=SYNTHETIC_WARNING if meta.get("corpus") == "synthetic" else None,
    )


def _batches(normalised: np.ndarray, starts: np.ndarray, crop_frames: int, device: torch.device):
    for b in range(0, len(starts), _BATCH_SIZE):
        batch = np.stack([crop(normalised, crop_frames, int(s)) for s in starts[b:b + _BATCH_SIZE]])
        x = torch.from_numpy(batch).unsqueeze(1).to(device)
        yield x.contiguous(memory_format=torch.channels_last) if device.type == "cpu" else x


def _fused_midlevel_network(model: torch.nn.Module) -> torch.nn.Module | None:
    """An inference-only copy of the audio -> mid-level path with BatchNorm folded into the convs.

    Eval-mode BatchNorm is an affine map per channel, so folding it into the preceding
    convolution's weights gives the same function with one pass less over every feature
    map; Dropout (identity in eval mode) is dropped and ReLU works in place. With channels-last tensors this runs
    about 20-25 % faster on CPU. Returns None for a network of another shape.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if getattr(model, "kind", None) == "joint":
        trunk, head = getattr(model, "trunk", None), getattr(model, "midlevel_layer", None)
    elif getattr(model, "kind", None) == "a2mid2e":
        trunk, head = getattr(model.a2mid, "trunk", None), getattr(model.a2mid, "head", None)
    else:
        return None
    features = getattr(trunk, "features", None)
    if not isinstance(features, torch.nn.Sequential) or not isinstance(head, torch.nn.Linear):
        return None
    layers, out, i = list(features), [], 0
    while i < len(layers):
        layer = layers[i]
        following = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, torch.nn.Conv2d) and isinstance(following, torch.nn.BatchNorm2d):
            out.append(fuse_conv_bn_eval(layer, following))
            i += 2
        elif isinstance(layer, torch.nn.Dropout):
            i += 1
        elif isinstance(layer, torch.nn.ReLU):
            out.append(torch.nn.ReLU(inplace=True))  # no new tensor per layer
            i += 1
        else:
            out.append(layer)
            i += 1
    pool = getattr(trunk, "pool", torch.nn.AdaptiveAvgPool2d(1))
    network = torch.nn.Sequential(*out, pool, torch.nn.Flatten(1), head).eval()
    return network.to(memory_format=torch.channels_last)


def _midlevel_windows(model: torch.nn.Module, normalised: np.ndarray, starts: np.ndarray, crop_frames: int,
                      meta: dict) -> np.ndarray:
    """Mid-level predictions of every window, float64 (n_windows, 7).

    Runs a BatchNorm-folded copy of the network (:func:`_fused_midlevel_network`) after
    checking on the first window that it reproduces the model itself (otherwise the model
    runs as it is), and checks there that the model's emotion output is its emotion layer
    applied to its mid-level output, which the explanation relies on.
    """
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    weight, bias = emotion_layer(model)
    where = meta.get("path", "checkpoint")
    with torch.inference_mode():
        first = next(_batches(normalised, starts[:1], crop_frames, device))
        mid, emo = (t.double().cpu().numpy() for t in model(first))
        deviation = float(np.max(np.abs(mid @ weight.T + bias - emo)))
        if deviation > _LINEARITY_TOLERANCE * max(1.0, float(np.max(np.abs(emo)))):
            raise CheckpointError(f"{where}: the network's emotions differ from its emotion layer applied to its "
                                  f"mid-level output by {deviation:.2g}; it cannot be explained as feature effects")
        network = _fused_midlevel_network(model)
        if network is not None:
            network = network.to(device)
            check = network(first).double().cpu().numpy()
            if float(np.max(np.abs(check - mid))) > _LINEARITY_TOLERANCE * max(1.0, float(np.max(np.abs(mid)))):
                network = None
        run = network if network is not None else (lambda x: model(x)[0])
        return np.concatenate([run(x).double().cpu().numpy()
                               for x in _batches(normalised, starts, crop_frames, device)])


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
                     {"feature", "effect_a", "effect_b", "difference": effect_a - effect_b}, ...]}}}

        For every emotion ``sum(f["difference"] for f in features) + bias_difference ==
        difference`` (to 1e-5): the ranking says which features make the two predictions
        differ, and in which direction.
    """
    keys = ("path", "params_hash", "trained_at")
    same = all(a.checkpoint.get(k) == b.checkpoint.get(k) for k in keys)
    result: dict[str, Any] = {
        "a": {"source": a.source, "checkpoint": _jsonable(a.checkpoint)},
        "b": {"source": b.source, "checkpoint": _jsonable(b.checkpoint)},
        "same_model": same,
        "emotions": {},
    }
    for emotion in EMOTIONS:
        rows = [{"feature": f, "effect_a": float(a.effects[emotion][f]), "effect_b": float(b.effects[emotion][f]),
                 "difference": float(a.effects[emotion][f] - b.effects[emotion][f])} for f in MIDLEVEL_FEATURES]
        rows.sort(key=lambda r: -abs(r["difference"]))
        result["emotions"][emotion] = {
            "a": float(a.emotions[emotion]),
            "b": float(b.emotions[emotion]),
            "difference": float(a.emotions[emotion] - b.emotions[emotion]),
            "bias_difference": float(a.bias[emotion] - b.bias[emotion]),
            "features": rows,
        }
    return result


# ---------------------------------------------------------------------------------------
# Model level: correlations, effects over songs, the Section 7.2 pair


def correlation_matrix(midlevel: np.ndarray, emotions: np.ndarray) -> np.ndarray:
    """(7, 8) Pearson r between each mid-level column and each emotion column (Figure 4)."""
    midlevel = np.asarray(midlevel, dtype=np.float64)
    emotions = np.asarray(emotions, dtype=np.float64)
    if len(midlevel) != len(emotions):
        raise ValueError(f"{len(midlevel)} mid-level rows but {len(emotions)} emotion rows")
    return np.stack([pearson(np.repeat(midlevel[:, [j]], emotions.shape[1], axis=1), emotions)
                     for j in range(midlevel.shape[1])])


def scaled_distances(points: np.ndarray) -> np.ndarray:
    """Pairwise Euclidean distances, min-max scaled to [0, 1] over the distinct pairs.

    The closest pair of different songs gets 0, the farthest 1; the diagonal is 0.
    (Only the scale factor matters for :func:`select_pair`: a shift adds the same
    constant to every pair's score.)
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) < 2:
        raise ValueError(f"need at least two points as an (n, dims) array, got shape {points.shape}")
    diff = points[:, None, :] - points[None, :, :]
    distances = np.sqrt((diff ** 2).sum(axis=-1))
    upper = distances[np.triu_indices(len(points), k=1)]
    low, high = float(upper.min()), float(upper.max())
    scaled = (distances - low) / (high - low) if high > low else np.zeros_like(distances)
    np.fill_diagonal(scaled, 0.0)
    return scaled


def pair_scores(d_emotion: np.ndarray, d_midlevel: np.ndarray, rule: str = "words") -> np.ndarray:
    """The score :func:`select_pair` maximises, for every pair (n, n).

    - ``words`` (default): ``d_Mid - d_E``. The paper wants "two songs with similar
      emotional but different mid-level profiles": small d_E and large d_Mid. This equals
      ``(1 - d_E) + d_Mid - 1``, i.e. the paper's formula with the complement moved from
      d_Mid to d_E, and maximising it is minimising ``d_E - d_Mid``.
    - ``formula``: the paper's literal ``d_comb = d_E - (1 - d_Mid) = d_E + d_Mid - 1``,
      maximised as the paper says; it favours pairs that differ in *both* spaces, which
      contradicts the paper's own words.
    """
    d_emotion = np.asarray(d_emotion, dtype=np.float64)
    d_midlevel = np.asarray(d_midlevel, dtype=np.float64)
    if d_emotion.shape != d_midlevel.shape or d_emotion.ndim != 2 or d_emotion.shape[0] != d_emotion.shape[1]:
        raise ValueError(f"expected two square distance matrices of one shape, got {d_emotion.shape} and "
                         f"{d_midlevel.shape}")
    if rule == "words":
        return d_midlevel - d_emotion
    if rule == "formula":
        return d_emotion - (1.0 - d_midlevel)
    raise ValueError(f"pair selection rule must be one of {PAIR_RULES}, got {rule!r}")


def select_pair(d_emotion: np.ndarray, d_midlevel: np.ndarray, rule: str = "words") -> tuple[int, int, float]:
    """The Section 7.2 song pair: indices ``(i, j)`` with ``i < j`` and its score.

    The paper writes ``d_comb = d_E - (1 - d_Mid)`` and picks the pair that *maximises* it,
    but asks in words for "similar emotional but different mid-level profiles". Maximising
    the formula selects pairs far apart in both spaces, so the default rule ``words``
    implements the words: maximise ``d_Mid - d_E`` (equivalently minimise ``d_E - d_Mid``).
    ``rule="formula"`` gives the literal reading. See :func:`pair_scores`. Ties go to the
    first pair in row-major order.
    """
    scores = pair_scores(d_emotion, d_midlevel, rule)
    n = scores.shape[0]
    if n < 2:
        raise ValueError("need at least two songs to select a pair")
    rows, cols = np.triu_indices(n, k=1)
    best = int(np.argmax(scores[rows, cols]))
    return int(rows[best]), int(cols[best]), float(scores[rows[best], cols[best]])


def effects_frame(song_ids: list[str], midlevel: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                  examples: dict[str, str] | None = None) -> pd.DataFrame:
    """Effects of many songs in long format (the data of Figure 3).

    Columns ``song, emotion, feature, effect, example`` (``example`` names the highlighted
    songs, e.g. ``"A (#153)"``; empty for the others). Rows: songs x emotions x features.
    """
    all_effects = effects(weight, bias, midlevel)  # (n, 8, 7)
    examples = examples or {}
    n = len(song_ids)
    return pd.DataFrame({
        "song": np.repeat(song_ids, len(EMOTIONS) * len(MIDLEVEL_FEATURES)),
        "emotion": np.tile(np.repeat(EMOTIONS, len(MIDLEVEL_FEATURES)), n),
        "feature": np.tile(MIDLEVEL_FEATURES, n * len(EMOTIONS)),
        "effect": all_effects.reshape(-1),
        "example": np.repeat([examples.get(s, "") for s in song_ids], len(EMOTIONS) * len(MIDLEVEL_FEATURES)),
    })


def matrix_frame(matrix: np.ndarray, value: str) -> pd.DataFrame:
    """A (7, 8) feature x emotion matrix in long format: ``feature, emotion, <value>``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (len(MIDLEVEL_FEATURES), len(EMOTIONS)):
        raise ValueError(f"expected a (7, 8) matrix, got {matrix.shape}")
    return pd.DataFrame({"feature": np.repeat(MIDLEVEL_FEATURES, len(EMOTIONS)),
                         "emotion": np.tile(EMOTIONS, len(MIDLEVEL_FEATURES)),
                         value: matrix.reshape(-1)})


def song_pair_frame(predicted_a: np.ndarray, predicted_b: np.ndarray, annotated_a: np.ndarray,
                    annotated_b: np.ndarray) -> pd.DataFrame:
    """Table 4: ``emotion, predicted_a, predicted_b, annotated_a, annotated_b``."""
    return pd.DataFrame({"emotion": list(EMOTIONS), "predicted_a": predicted_a, "predicted_b": predicted_b,
                         "annotated_a": annotated_a, "annotated_b": annotated_b})


def song_pair_markdown(frame: pd.DataFrame, id_a: str, id_b: str, rule: str, score: float,
                       d_emotion: float, d_midlevel: float, n_songs: int, checkpoint: str) -> str:
    """``reports/song_pair.md``: the pair, the rule that chose it, and Table 4."""
    rule_text = {
        "words": "`words`: maximise d_Mid - d_E (similar emotions, different mid-level profiles, as the "
                 "paper's text asks)",
        "formula": "`formula`: maximise the paper's literal d_comb = d_E - (1 - d_Mid) (favours pairs "
                   "that differ in both spaces)",
    }[rule]
    lines = [
        f"# Song-level explanation (Section 7.2): songs #{id_a} and #{id_b}",
        "",
        f"- Model: `{checkpoint}` (A2Mid2E-Joint, first run); songs: its {n_songs} test clips.",
        f"- Selection rule (`explain.pair_selection`): {rule_text}.",
        "- d_E, d_Mid: Euclidean distances between the songs' annotated emotion and annotated mid-level "
        "vectors, each min-max scaled to [0, 1] over all pairs of test songs.",
        f"- This pair: d_E = {d_emotion:.3f}, d_Mid = {d_midlevel:.3f}, score = {score:.3f}.",
        f"- Song A = #{id_a} (red square in plots/effects.png), song B = #{id_b} (blue dot).",
        "",
        "Table 4: emotion prediction profiles (paper scale: ratings / 10).",
        "",
        f"| emotion | predicted #{id_a} | predicted #{id_b} | annotated #{id_a} | annotated #{id_b} |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in frame.itertuples(index=False):
        lines.append(f"| {row.emotion} | {row.predicted_a:.2f} | {row.predicted_b:.2f} | "
                     f"{row.annotated_a:.2f} | {row.annotated_b:.2f} |")
    lines += ["", "Per-feature effects of both songs: plots/song_pair_effects.png.", ""]
    return "\n".join(lines)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temporary file, then rename), world-readable as usual."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    """Write a CSV atomically (floats with 6 significant digits)."""
    write_text(Path(path), frame.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


# ---------------------------------------------------------------------------------------
# The `explain` stage


#: Everything the stage writes (relative to --plots / --reports); all always exist after a run.
PLOT_OUTPUTS = ("effects.png", "effects.csv", "correlation_heatmap.png", "correlation.csv", "joint_weights.png",
                "joint_weights.csv", "song_pair.csv", "song_pair_effects.png")
REPORT_OUTPUTS = ("song_pair.md",)


def explain_stage(raw_dir: Path, spectrogram_dir: Path, models_dir: Path, plots_dir: Path, reports_dir: Path,
                  params: dict[str, Any], *, log: Any = print) -> dict[str, Any]:
    """The ``explain`` stage: Figures 3-5, Table 4 and their data.

    Uses the Joint model of the first run (``models/joint/joint_seed_<runs.seeds[0]>.pt``) and
    that run's test clips (``extra.test_ids`` in the checkpoint). Every output in
    :data:`PLOT_OUTPUTS` / :data:`REPORT_OUTPUTS` is written: a figure that cannot be made
    (no Joint model, no mid-level annotations) becomes an image stating why, its CSV has the
    header only, and ``song_pair.md`` says what was not run.

    Returns
    -------
    dict
        ``{"written": [...], "not_run": {output: reason}, "pair": {...} or None}``.
    """
    from . import figures  # matplotlib is only needed here

    raw_dir, spectrogram_dir, models_dir = Path(raw_dir), Path(spectrogram_dir), Path(models_dir)
    plots_dir, reports_dir = Path(plots_dir), Path(reports_dir)
    rule = str(params.get("explain", {}).get("pair_selection", "words"))
    if rule not in PAIR_RULES:
        raise ValueError(f"{params.get('_path', 'params.yaml')}: explain.pair_selection must be one of "
                         f"{PAIR_RULES}, got {rule!r}")
    seed = int(params["runs"]["seeds"][0])
    summary: dict[str, Any] = {"written": [], "not_run": {}, "pair": None}

    def not_run(name: str, title: str, reason: str, columns: list[str] | None = None) -> None:
        path = plots_dir / name
        if name.endswith(".png"):
            figures.not_run_figure(path, title, reason)
        else:
            write_csv(path, pd.DataFrame(columns=columns or []))
        summary["not_run"][name] = reason

    labels = load_labels(raw_dir)

    # Figure 4: correlations between the annotations (needs no model)
    if labels.soundtracks_midlevel is not None and labels.emotions is not None:
        ids = [i for i in labels.emotions.index if i in labels.soundtracks_midlevel.index]
        mid = labels.soundtracks_midlevel.loc[ids, list(MIDLEVEL_FEATURES)].to_numpy()
        emo = labels.emotions.loc[ids, list(EMOTIONS)].to_numpy()
        r = correlation_matrix(mid, emo)
        figures.heatmap_figure(r, plots_dir / "correlation_heatmap.png", row_labels=MIDLEVEL_FEATURES,
                               col_labels=EMOTIONS, title=f"Pearson correlation between annotated mid-level "
                               f"features and emotions ({len(ids)} Soundtracks clips)",
                               colorbar_label="Pearson r", limit=1.0)
        write_csv(plots_dir / "correlation.csv", matrix_frame(r, "r"))
        summary["written"] += ["correlation_heatmap.png", "correlation.csv"]
    else:
        reason = ("No mid-level annotations for the Soundtracks clips in data/raw: the correlation needs both "
                  "the mid-level annotations and the emotion ratings.")
        not_run("correlation_heatmap.png", "Figure 4 (correlations) not available", reason)
        not_run("correlation.csv", "", reason, ["feature", "emotion", "r"])

    # Figures 3 and 5, Table 4: the Joint model of the first run
    checkpoint = models_dir / "joint" / f"joint_seed_{seed}.pt"
    not_run_file = models_dir / "joint" / "NOT_RUN.md"
    model_outputs = {"effects.png": "Figure 3 (effects)", "effects.csv": None,
                     "joint_weights.png": "Figure 5 (Joint weights)", "joint_weights.csv": None,
                     "song_pair.csv": None, "song_pair_effects.png": "Song pair effects"}
    columns = {"effects.csv": ["song", "emotion", "feature", "effect", "example"],
               "joint_weights.csv": ["feature", "emotion", "weight"],
               "song_pair.csv": ["emotion", "predicted_a", "predicted_b", "annotated_a", "annotated_b"]}
    reason = None
    if not_run_file.is_file():
        detail = " ".join(not_run_file.read_text(encoding="utf-8").split("\n", 1)[-1].split())
        reason = f"The Joint model was not run ({not_run_file}): {detail}"
    elif not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: checkpoint not found (run the train_joint stage first; "
                              f"runs.seeds[0] = {seed})")
    if reason is not None:
        for name, title in model_outputs.items():
            not_run(name, f"{title} not available" if title else "", reason, columns.get(name))
        write_text(reports_dir / "song_pair.md",
                          f"# Song-level explanation (Section 7.2): not run\n\n{reason}\n")
        summary["not_run"]["song_pair.md"] = reason
        return summary

    model, meta = load_model(checkpoint)
    weight, bias = emotion_layer(model)
    test_ids = [str(i) for i in (meta.get("extra") or {}).get("test_ids", [])]
    if len(test_ids) < 2:
        raise CheckpointError(f"{checkpoint}: records {len(test_ids)} test clip(s) (extra.test_ids); "
                              "the song-level explanation needs at least two")
    if labels.emotions is None or labels.soundtracks_midlevel is None:
        raise ValueError(f"{checkpoint} exists but {raw_dir} has no emotion ratings and mid-level annotations for "
                         "the Soundtracks clips: the model is stale; re-run the pipeline (dvc repro)")
    unlabelled = [i for i in test_ids if i not in labels.emotions.index or i not in labels.soundtracks_midlevel.index]
    if unlabelled:
        raise ValueError(f"{checkpoint}: test clips {unlabelled[:5]} have no labels in {raw_dir}: the model is "
                         "stale; re-run the pipeline (dvc repro)")
    store = SpectrogramStore.open(spectrogram_dir / "soundtracks")
    spec = meta["spectrogram"]
    hop_frames = max(1, int(round(float(meta["input"]["eval_hop_seconds"]) * float(spec["fps"]))))
    started = time.perf_counter()
    outputs = predict(model, [store.clip(i) for i in test_ids], mean=float(spec["mean"]), std=float(spec["std"]),
                      crop_frames=int(meta["input"]["crop_frames"]), hop_frames=hop_frames)
    log(f"explain: predicted {len(test_ids)} test clips in {time.perf_counter() - started:.1f} s")
    n_mid = len(MIDLEVEL_FEATURES)
    predicted_mid, predicted_emo = outputs[:, :n_mid], outputs[:, n_mid:]

    # Section 7.2: the pair, on the annotations of the test songs
    annotated_emo = labels.emotions.loc[test_ids, list(EMOTIONS)].to_numpy()
    annotated_mid = labels.soundtracks_midlevel.loc[test_ids, list(MIDLEVEL_FEATURES)].to_numpy()
    d_e, d_mid = scaled_distances(annotated_emo), scaled_distances(annotated_mid)
    i, j, score = select_pair(d_e, d_mid, rule)
    id_a, id_b = test_ids[i], test_ids[j]
    label_a, label_b = f"A: song #{id_a}", f"B: song #{id_b}"

    all_effects = effects(weight, bias, predicted_mid)
    figures.effects_figure(all_effects, plots_dir / "effects.png", example_a=i, example_b=j,
                           label_a=label_a, label_b=label_b,
                           title=f"Effects of the mid-level features on the emotion predictions "
                                 f"(A2Mid2E-Joint, {len(test_ids)} test songs)")
    write_csv(plots_dir / "effects.csv", effects_frame(test_ids, predicted_mid, weight, bias,
                                                       {id_a: label_a, id_b: label_b}))
    figures.heatmap_figure(weight.T, plots_dir / "joint_weights.png", row_labels=MIDLEVEL_FEATURES,
                           col_labels=EMOTIONS, title="Weights of the A2Mid2E-Joint emotion layer "
                           "(mid-level feature -> emotion)", colorbar_label="weight (emotion per unit feature)")
    write_csv(plots_dir / "joint_weights.csv", matrix_frame(weight.T, "weight"))
    pair = song_pair_frame(predicted_emo[i], predicted_emo[j], annotated_emo[i], annotated_emo[j])
    write_csv(plots_dir / "song_pair.csv", pair)
    figures.song_pair_effects_figure(all_effects[i], all_effects[j], plots_dir / "song_pair_effects.png",
                                     label_a=f"song #{id_a}", label_b=f"song #{id_b}",
                                     predicted_a=predicted_emo[i], predicted_b=predicted_emo[j], bias=bias,
                                     title=f"Song-level explanation: feature effects of songs #{id_a} (A) and "
                                           f"#{id_b} (B), A2Mid2E-Joint")
    write_text(reports_dir / "song_pair.md",
                      song_pair_markdown(pair, id_a, id_b, rule, score, float(d_e[i, j]), float(d_mid[i, j]),
                                         len(test_ids), str(checkpoint)))
    summary["written"] += list(model_outputs) + ["song_pair.md"]
    summary["pair"] = {"a": id_a, "b": id_b, "rule": rule, "score": score,
                       "d_emotion": float(d_e[i, j]), "d_midlevel": float(d_mid[i, j])}
    return summary


__all__ = ["DEFAULT_CHECKPOINT", "EXPLAINABLE_KINDS", "SYNTHETIC_WARNING", "PAIR_RULES", "Explanation", "effects",
           "emotion_layer", "load_model", "explain", "compare", "correlation_matrix", "scaled_distances",
           "pair_scores", "select_pair", "effects_frame", "matrix_frame", "song_pair_frame", "explain_stage"]
