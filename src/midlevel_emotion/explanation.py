"""Explanations of the explainable models (paper Section 7).

In the Joint model (and A2Mid2E) the emotion layer is a plain ``Linear(7, 8)`` on the
mid-level output, so every emotion prediction is a sum of *feature effects* plus a bias::

    emotion_i = sum_j  w_ij * x_j  +  b_i        effect_ij = w_ij * x_j

where ``x`` is the predicted mid-level vector. This module computes those effects

for one piece of audio (:func:`explain`, the song-level API behind the user CLI, and
:func:`compare` for the Section 7.2 view of two songs). The model-level view over the test
songs of a run is the ``explain`` DVC stage (:mod:`.explain_stage`; the song pair is chosen in
:mod:`.pairs`, drawing is in :mod:`.figures`).

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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import audio
from . import constants
from .constants import EMOTIONS, MIDLEVEL_FEATURES
from .constants import SpectrogramSettings
from .features import log_filtered_spectrogram
from .checkpoints import CheckpointError, load_checkpoint
from .training import crop, window_starts

#: The checkpoint :func:`explain` uses by default: the Joint model of the pipeline's first run
#: (``runs.seeds[0] = 0`` in params.yaml). Relative, so it resolves against the current
#: directory: run from the repository root (the user CLI does the same).
DEFAULT_CHECKPOINT = Path("models/joint/joint_seed_0.pt")

#: Model kinds whose emotions are a linear function of a mid-level bottleneck.
EXPLAINABLE_KINDS: tuple[str, ...] = ("joint", "a2mid2e")

SYNTHETIC_WARNING = ("this model was trained on the synthetic corpus: its predictions on real music mean "
                     "nothing until the pipeline has run on the real data")

SIGNAL_SOURCE = "<signal>"

SPECTROGRAM_KEYS = tuple(f.name for f in fields(SpectrogramSettings))
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

    Wraps :func:`midlevel_emotion.checkpoints.load_checkpoint` and adds ``meta["path"]``.

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
    missing = [k for k in SPECTROGRAM_KEYS + ("mean", "std") if k not in spectrogram]
    if missing or "crop_frames" not in (meta.get("input") or {}):
        what = ", ".join(missing) if missing else "input.crop_frames"
        raise CheckpointError(f"{where}: checkpoint lacks {what}; it cannot turn audio into model input")
    try:  # the spectrogram's own validation: fmin < fmax < Nyquist, a hop of at least one sample, ...
        SpectrogramSettings.from_mapping(spectrogram)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: damaged or incompatible checkpoint: spectrogram settings: "
                              f"{' '.join(str(err).split())}") from None


def _prepare_signal(source: str | Path | np.ndarray, sample_rate: int | None,
                    target_rate: int) -> tuple[str, np.ndarray]:
    """The name and the mono, resampled, peak-normalised signal of a file or an array.

    An array goes through :func:`midlevel_emotion.audio.normalise`, the same checks,
    resampling and normalisation a decoded file gets (no samples, non-finite samples,
    silence), with its errors naming ``<signal>``.
    """
    if not isinstance(source, np.ndarray):
        if sample_rate is not None:
            raise ValueError("sample_rate is only for signals given as arrays; files are decoded at their own rate")
        return str(source), audio.load(source, sample_rate=target_rate)
    if sample_rate is None:
        raise ValueError("explain() needs sample_rate for a signal given as an array")
    if isinstance(sample_rate, bool) or not float(sample_rate).is_integer() or int(sample_rate) <= 0:
        raise ValueError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    if source.ndim != 1:
        raise ValueError(f"a signal must be 1-D (mono), got shape {source.shape}; downmix it first")
    if not np.issubdtype(source.dtype, np.number) or np.issubdtype(source.dtype, np.complexfloating):
        raise ValueError(f"a signal must be real numbers, got dtype {source.dtype}")
    return SIGNAL_SOURCE, audio.normalise(source, int(sample_rate), target_rate, source=SIGNAL_SOURCE)


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
        The checkpoint is missing, incompatible or not explainable, or its output is not finite.
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
    spectrogram = log_filtered_spectrogram(signal, **SpectrogramSettings.from_mapping(spec_params).kwargs())

    crop_frames = int(meta["input"]["crop_frames"])
    if hop_seconds is None:
        hop_frames = max(1, crop_frames // 2)
    else:
        if not hop_seconds > 0 or not math.isfinite(hop_seconds):
            raise ValueError(f"hop_seconds must be a positive number, got {hop_seconds!r}")
        hop_frames = constants.hop_frames(hop_seconds, fps)
    starts = window_starts(len(spectrogram), crop_frames, hop_frames)

    mean, std = float(spec_params["mean"]), float(spec_params["std"])
    normalised = ((spectrogram - mean) / std).astype(np.float32)  # exactly as training standardises
    weight, bias = emotion_layer(model)
    mid_curve = _midlevel_windows(model, normalised, starts, crop_frames, meta)
    with np.errstate(all="ignore"):  # checked on the next line
        emotion_curve = mid_curve @ weight.T + bias
    if not (np.isfinite(mid_curve).all() and np.isfinite(emotion_curve).all()):
        raise CheckpointError(f"{meta.get('path', 'checkpoint')}: the model's output for {name} is not finite "
                              "(NaN or infinite); the checkpoint is damaged")
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
        with np.errstate(all="ignore"):  # a non-finite output is reported by explain(), naming the audio
            deviation = float(np.max(np.abs(mid @ weight.T + bias - emo)))
        if deviation > _LINEARITY_TOLERANCE * max(1.0, float(np.max(np.abs(emo)))):
            raise CheckpointError(f"{where}: the network's emotions differ from its emotion layer applied to its "
                                  f"mid-level output by {deviation:.2g}; it cannot be explained as feature effects")
        network = _fused_midlevel_network(model)
        if network is not None:
            network = network.to(device)
            check = network(first).double().cpu().numpy()
            with np.errstate(all="ignore"):
                limit = _LINEARITY_TOLERANCE * max(1.0, float(np.max(np.abs(mid))))
                differs = not float(np.max(np.abs(check - mid))) <= limit
            if differs:  # NaN counts as different: the model itself then runs
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


__all__ = ["DEFAULT_CHECKPOINT", "EXPLAINABLE_KINDS", "SYNTHETIC_WARNING", "Explanation", "effects",
           "emotion_layer", "load_model", "explain", "compare"]
