"""Prediction over windows: how every model hears a whole clip.

One rule, used by training's validation and test scoring (:mod:`.training`), the A2Mid2E fit
and the ``explain`` stage (:func:`predict_checkpoint`) and the command line
(:func:`midlevel_emotion.explanation.clip.prepare_clip`): a clip is cut into windows of the
crop length the model trained on, one every ``train.eval_hop_seconds`` (recorded in each
checkpoint as ``input.eval_hop_seconds``; the CLI's ``--hop`` may override it), the last window
ending at the clip's end (:func:`window_starts`); a clip shorter than a window is loop-padded
(:func:`crop`), as the authors' code did. A clip's prediction is the mean of its windows'
predictions, so a score uses the whole clip rather than one arbitrary crop.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..core.constants import hop_frames
from ..core.errors import CheckpointError
from . import precision as amp


def crop(spectrogram: np.ndarray, n_frames: int, start: int = 0) -> np.ndarray:
    """Frames ``start .. start + n_frames`` of a (frames, bins) spectrogram, loop-padded.

    A clip shorter than ``n_frames`` is repeated end to start until long enough (what the
    authors did for short clips), so every crop has exactly ``n_frames`` frames.
    """
    length = spectrogram.shape[0]
    if length == 0:
        raise ValueError("cannot crop an empty spectrogram")
    if start + n_frames <= length:
        return spectrogram[start:start + n_frames]
    index = (start + np.arange(n_frames)) % length
    return spectrogram[index]


def window_starts(length: int, n_frames: int, hop_frames: int) -> np.ndarray:
    """Start frames of the evaluation windows; the last window ends at the clip's end."""
    if length <= n_frames:
        return np.zeros(1, dtype=int)
    starts = np.arange(0, length - n_frames + 1, hop_frames)
    if starts[-1] != length - n_frames:
        starts = np.append(starts, length - n_frames)
    return starts


def standardise(batch: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """A (n, frames, bins) batch as the network's float32 input (n, 1, frames, bins), standardised
    with the training set's spectrogram ``mean`` and ``std``."""
    return torch.from_numpy(((batch - mean) / std).astype(np.float32)).unsqueeze(1)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; to a GPU from pinned memory and without waiting for the copy,
    so the host goes on preparing the next batch while the GPU computes."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def model_outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """All outputs as one tensor (Joint/A2Mid2E: mid-level then emotions)."""
    out = model(x)
    return torch.cat(out, dim=1) if isinstance(out, tuple) else out


def predict(model: torch.nn.Module, spectrograms: list[np.ndarray], *, mean: float, std: float,
            crop_frames: int, hop_frames: int, batch_size: int = 32,
            device: str | torch.device = "cpu", precision: str = "fp32") -> np.ndarray:
    """Predict each clip as the mean of its windows' predictions (``precision``: autocast, see
    :mod:`midlevel_emotion.learning.precision`).

    Returns
    -------
    np.ndarray
        (n_clips, n_outputs); for two-output models mid-level columns come first.
    """
    model.eval()
    windows, owner = [], []
    for i, spec in enumerate(spectrograms):
        for start in window_starts(spec.shape[0], crop_frames, hop_frames):
            windows.append((i, int(start)))
    results: list[torch.Tensor] = []
    device = torch.device(device)
    with torch.no_grad(), amp.autocast(precision, device):
        for b in range(0, len(windows), batch_size):
            chunk = windows[b:b + batch_size]
            batch = np.stack([crop(spectrograms[i], crop_frames, s) for i, s in chunk])
            results.append(model_outputs(model, to_device(standardise(batch, mean, std), device)).float())
            owner.extend(i for i, _ in chunk)
    flat = torch.cat(results).cpu().numpy()  # one copy back, after the last batch (no per-batch sync)
    owner_arr = np.asarray(owner)
    return np.stack([flat[owner_arr == i].mean(axis=0) for i in range(len(spectrograms))])


def checkpoint_hop_frames(meta: dict, hop_seconds: float | None = None) -> int:
    """The hop between a checkpoint's windows, in frames: ``hop_seconds`` when given, else the
    evaluation hop the model was scored with (``input.eval_hop_seconds``).

    Raises
    ------
    ValueError
        ``hop_seconds`` is not a positive number.
    CheckpointError
        The checkpoint records no evaluation hop.
    """
    if hop_seconds is None:
        hop_seconds = (meta.get("input") or {}).get("eval_hop_seconds")
        if hop_seconds is None:
            raise CheckpointError(f"{meta.get('path', 'checkpoint')}: checkpoint lacks input.eval_hop_seconds")
    elif isinstance(hop_seconds, bool) or not hop_seconds > 0 or not math.isfinite(hop_seconds):
        raise ValueError(f"hop_seconds must be a positive number, got {hop_seconds!r}")
    return hop_frames(float(hop_seconds), float(meta["spectrogram"]["fps"]))


def predict_checkpoint(model: torch.nn.Module, meta: dict, spectrograms: list[np.ndarray]) -> np.ndarray:
    """:func:`predict` with the input settings a checkpoint recorded: its spectrogram's mean and
    std, its crop length and its evaluation hop (:func:`checkpoint_hop_frames`).

    Raises
    ------
    CheckpointError
        The predictions are not finite (a damaged checkpoint).
    """
    spectrogram = meta["spectrogram"]
    outputs = predict(model, spectrograms, mean=float(spectrogram["mean"]), std=float(spectrogram["std"]),
                      crop_frames=int(meta["input"]["crop_frames"]), hop_frames=checkpoint_hop_frames(meta))
    if not np.isfinite(outputs).all():
        raise CheckpointError(f"{meta.get('path', 'checkpoint')}: the model's predictions are not finite "
                              "(NaN or infinite); the checkpoint is damaged")
    return outputs


__all__ = ["checkpoint_hop_frames", "crop", "model_outputs", "predict", "predict_checkpoint", "standardise",
           "to_device", "window_starts"]
