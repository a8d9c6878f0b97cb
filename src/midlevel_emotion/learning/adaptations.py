"""The short-schedule adaptations: three switches that let the paper's loop (:mod:`.training`)
reach a useful model in the embedded default's few hundred steps.

- ``precise_bn`` (:func:`recalibrate_batchnorm`; the training loop's ``inference_model`` applies
  it): BatchNorm statistics re-estimated with dropout off, as the model is used;
- ``output_init: train_mean`` (:func:`init_output_layers`): output layers that start at the
  training targets' mean instead of a random offset;
- ``recenter_output_bias`` (:func:`recenter_output_bias`): the kept model's output biases moved
  onto the training targets' mean.

The paper profile turns all three off (docs/decisions.md says why each exists).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.config import OUTPUT_INITS
from . import precision as amp
from .clips import ClipSet
from .inference import crop, predict, standardise, to_device
from .scores import fit_linear


def _centre_crop_batches(spectrograms: list[np.ndarray], crop_frames: int, *, mean: float, std: float,
                         batch_size: int = 32, device: str | torch.device = "cpu"):
    """Standardised model inputs, one crop from the middle of each clip, in batches."""
    for b in range(0, len(spectrograms), batch_size):
        batch = np.stack([crop(spec, crop_frames, max(0, (spec.shape[0] - crop_frames) // 2))
                          for spec in spectrograms[b:b + batch_size]])
        yield to_device(standardise(batch, mean, std), torch.device(device))


def recalibrate_batchnorm(model: torch.nn.Module, spectrograms: list[np.ndarray], *, mean: float, std: float,
                          crop_frames: int, batch_size: int = 32,
                          device: str | torch.device = "cpu", precision: str = "fp32") -> None:
    """Re-estimate every BatchNorm layer's running mean and variance as the model is used.

    During training the running statistics are exponential averages over batches of 8 taken
    with dropout on. Dropout inflates the variance of the activations it feeds (the trunk has
    a conv + BatchNorm right after each Dropout), so at inference, with dropout off, those
    layers normalise by a variance that is too large and the error grows through the trunk
    into an offset of the outputs ("variance shift", Li et al. 2019). Recomputing the
    statistics in inference conditions ("precise BN", Wu & Johnson 2021) removes it. The
    weights are untouched, so this is not training: it only fixes what ``eval()`` uses.

    Parameters
    ----------
    spectrograms : list of np.ndarray
        Training clips, (frames, 149) each; one crop from the middle of each is used.
    crop_frames : int
        Crop length the model trains on.
    precision : str
        Autocast precision of the forward passes (:mod:`midlevel_emotion.learning.precision`).
    """
    if not spectrograms:
        raise ValueError("recalibrate_batchnorm needs at least one clip")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches below, not an exponential one
    model.eval()
    for m in norms:
        m.train()  # only the BatchNorm layers collect statistics; dropout stays off
    with torch.no_grad(), amp.autocast(precision, torch.device(device)):
        for x in _centre_crop_batches(spectrograms, crop_frames, mean=mean, std=std, batch_size=batch_size,
                                      device=device):
            model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def _like(values: np.ndarray, parameter: torch.Tensor) -> torch.Tensor:
    """``values`` as a tensor of the parameter's dtype and device."""
    return torch.as_tensor(values, dtype=parameter.dtype, device=parameter.device)



def init_output_layers(model: torch.nn.Module, train_set: ClipSet, how: str = "train_mean", *, mean: float,
                       std: float, crop_frames: int, device: str | torch.device = "cpu") -> None:
    """Start the output layers so that the untrained model predicts the training targets' mean.

    ``how="kaiming"`` leaves the paper's initialisation (Kaiming-normal weights, zero biases).
    ``how="train_mean"`` keeps the Kaiming-normal weights of the output layer and sets its
    biases so that the untrained model's mean prediction over the training clips is the
    training targets' mean. In the Joint model the 7->8 emotion layer starts at the
    least-squares map from the training split's annotated mid-level values to its emotions
    (the Mid2E fit), which sends the mean mid-level profile to the mean emotions.

    Why: Adam moves each parameter by about the learning rate per step, so in the embedded
    default's ~150 steps a parameter moves at most ~0.08. An output bias that starts at 0
    stays far from targets at 0.1-0.9, and the Joint model's 7->8 weights, Kaiming-normal with
    std 0.53, stay unrelated to the emotions (the planted ones are at most 0.35). The paper's
    thousands of steps absorb either start.

    The BatchNorm statistics are first set from the same crops (see
    :func:`recalibrate_batchnorm`), so the averages are those of the model in inference mode.

    Parameters
    ----------
    train_set : ClipSet
        Training clips; targets in the model's output order (Joint: 7 mid-level, 8 emotions).
    how : {"kaiming", "train_mean"}
    """
    if how not in OUTPUT_INITS:
        raise ValueError(f"output_init must be one of {OUTPUT_INITS}, got {how!r}")
    if how == "kaiming":
        return
    recalibrate_batchnorm(model, train_set.spectrograms, mean=mean, std=std, crop_frames=crop_frames,
                          device=device)
    with torch.no_grad():
        f = torch.cat([model.trunk(x) for x in _centre_crop_batches(train_set.spectrograms, crop_frames, mean=mean,
                                                                    std=std, device=device)]).mean(0)
        targets = np.asarray(train_set.targets, dtype=np.float64)
        t = torch.as_tensor(targets.mean(axis=0), dtype=f.dtype, device=f.device)
        first, *rest = model.output_layers().values()  # trunk -> first [-> 7->8 emotion layer (Joint)]
        n_first = first.out_features
        first.bias.copy_(t[:n_first] - first.weight @ f)
        for emotion_layer in rest:
            weight, bias = fit_linear(targets[:, :n_first], targets[:, n_first:])
            emotion_layer.weight.copy_(_like(weight, emotion_layer.weight))
            emotion_layer.bias.copy_(_like(bias, emotion_layer.bias))


def recenter_output_bias(model: torch.nn.Module, train_set: ClipSet, *, mean: float, std: float,
                         crop_frames: int, hop_frames: int, device: str | torch.device = "cpu") -> np.ndarray:
    """Shift the output biases so the model's mean prediction over the training clips is their targets' mean.

    The kept model, in inference mode, can be offset from the training targets by a constant:
    dropout and BatchNorm behave differently in training and inference, and ~150 steps do not
    wash that out. Only the biases move, by a constant per output, so every Pearson r (and so
    early stopping) is unchanged, and for the Joint model the emotions stay a linear function
    of the mid-level outputs (the mid-level shift is passed through the 7->8 layer first).

    Parameters
    ----------
    train_set : ClipSet
        Training clips and targets (Joint: 7 mid-level then 8 emotion columns).
    crop_frames, hop_frames : int
        The windows :func:`predict` averages, so the shift is measured as the model is used.

    Returns
    -------
    np.ndarray
        The shift added to the model's outputs (Joint: mid-level then emotions).
    """
    prediction = predict(model, train_set.spectrograms, mean=mean, std=std, crop_frames=crop_frames,
                         hop_frames=hop_frames, device=device)
    delta = np.asarray(train_set.targets, dtype=np.float64).mean(axis=0) - prediction.mean(axis=0)
    first, *rest = model.output_layers().values()  # trunk -> first [-> 7->8 emotion layer (Joint)]
    n_first = first.out_features
    with torch.no_grad():
        first.bias.add_(_like(delta[:n_first], first.bias))
        for emotion_layer in rest:
            # what the mid-level shift already does to the emotions is passed through the 7->8 layer
            weight = emotion_layer.weight.detach().cpu().numpy().astype(np.float64)
            emotion_layer.bias.add_(_like(delta[n_first:] - weight @ delta[:n_first], emotion_layer.bias))
    return delta


__all__ = ["init_output_layers", "recalibrate_batchnorm", "recenter_output_bias"]
