"""Training loop and prediction over windows (checkpoints: :mod:`midlevel_emotion.learning.checkpoints`).

The loop is the paper's (Section 5): Adam, learning rate 0.0005, batch 8, MSE loss (the Joint
model: mid-level MSE + emotion MSE), one random crop of each clip per epoch, early stopping on
the validation set's mean Pearson r with a patience, keeping the best epoch's weights.

Three switches (``precise_bn``, ``output_init``, ``recenter_output_bias``) adapt the loop to the
embedded default's few hundred steps; the paper profile turns them off (see
:func:`recalibrate_batchnorm`, :func:`init_output_layers` and :func:`recenter_output_bias`).

Evaluation predicts every window of a clip (crop length, hop ``eval_hop_seconds``) and
averages the predictions, so the score uses the whole clip rather than one arbitrary crop.
Clips shorter than a crop are loop-padded (repeated), as the authors' code did.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES, hop_frames, window_frames
from . import precision as amp
from .models import build_model
from ..core.config import OUTPUT_INITS
from ..core.params import section
from .scores import fit_linear, pearson



#: The ``train`` params that become :class:`TrainConfig` fields of the same name.
TRAIN_KEYS = ("crop_seconds", "batch_size", "learning_rate", "max_epochs", "patience", "eval_hop_seconds",
              "last_kernel_size", "width", "dropout", "precise_bn", "precise_bn_clips", "output_init",
              "recenter_output_bias", "precision")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run.

    No field has a default: params.yaml is their only home (its comments explain each one),
    and :meth:`from_params` builds the config from it.
    """

    crop_seconds: float
    fps: float  # spectrogram.fps
    batch_size: int
    learning_rate: float
    max_epochs: int
    patience: int
    eval_hop_seconds: float
    midlevel_loss_weight: float | None  # Joint only (train_joint): weight * MSE(mid) + MSE(emotions)
    last_kernel_size: int
    width: float  # channel multiplier of the trunk (models.trunk_channels; 1.0 = Figure 2)
    dropout: float
    precise_bn: bool  # re-estimate the kept model's BatchNorm statistics with dropout off
    precise_bn_clips: int  # training clips (one crop each) those statistics are estimated from
    output_init: str  # "kaiming" (the paper) or "train_mean" (see init_output_layers)
    recenter_output_bias: bool  # shift the kept model's output biases onto the train targets' mean
    precision: str  # "fp32", "bf16" or "fp16" (midlevel_emotion.learning.precision)

    def __post_init__(self) -> None:
        if self.precise_bn_clips < 1:
            raise ValueError(f"precise_bn_clips must be at least 1, got {self.precise_bn_clips}")
        amp.validate(self.precision)

    @classmethod
    def from_params(cls, params: dict[str, Any], kind: str) -> "TrainConfig":
        """The config for training a ``kind`` model, read from a loaded params.yaml.

        ``train.*`` gives the fields of :data:`TRAIN_KEYS`, ``spectrogram.fps`` the frame rate,
        and for ``kind="joint"`` ``train_joint.midlevel_loss_weight`` the loss weight (None for
        the other kinds, whose stages do not depend on it). A missing key raises
        :class:`~midlevel_emotion.core.errors.ParamsError` naming the file and the key.
        """
        values = {key: section(params, f"train.{key}") for key in TRAIN_KEYS}
        values["fps"] = section(params, "spectrogram.fps")
        values["midlevel_loss_weight"] = (section(params, "train_joint.midlevel_loss_weight")
                                          if kind == "joint" else None)
        return cls(**values)

    @property
    def crop_frames(self) -> int:
        return window_frames(self.crop_seconds, self.fps)

    @property
    def hop_frames(self) -> int:
        return hop_frames(self.eval_hop_seconds, self.fps)


# ---------------------------------------------------------------------------------------
# Crops


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


# ---------------------------------------------------------------------------------------
# Data


@dataclass
class ClipSet:
    """Spectrograms of some clips and their targets.

    ``spectrograms[i]`` is a (frames, 149) array (usually a memory-mapped view) and
    ``targets[i]`` its target vector: 7 mid-level values, 8 emotions, or both concatenated
    (mid-level first) for the Joint model.
    """

    ids: list[str]
    spectrograms: list[np.ndarray]
    targets: np.ndarray

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.spectrograms) == len(self.targets)):
            raise ValueError("ids, spectrograms and targets differ in length")
        if not np.isfinite(self.targets).all():
            raise ValueError("targets contain NaN or infinite values")


def _normalise(batch: np.ndarray, mean: float, std: float) -> torch.Tensor:
    return torch.from_numpy(((batch - mean) / std).astype(np.float32)).unsqueeze(1)


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; to a GPU from pinned memory and without waiting for the copy,
    so the host goes on preparing the next batch while the GPU computes."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def training_batches(train_set: ClipSet, order: np.ndarray, rng: np.random.Generator, *, crop_frames: int,
                     batch_size: int, mean: float, std: float,
                     device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's batches: a random crop of each clip, in ``order``, standardised, on ``device``.

    A last batch of one clip is skipped (BatchNorm cannot train on a single example). Crops are
    drawn from ``rng`` batch by batch, so the crops depend only on the seed. On a GPU the steps
    run asynchronously: while one runs, the host crops and sends the next batch (see
    :func:`_to_device`), so loading never waits for compute nor compute for loading.
    """
    for b in range(0, len(order), batch_size):
        index = order[b:b + batch_size]
        if len(index) < 2:
            continue
        batch = np.stack([crop(train_set.spectrograms[i], crop_frames,
                               int(rng.integers(0, max(1, train_set.spectrograms[i].shape[0] - crop_frames + 1))))
                          for i in index])
        targets = torch.from_numpy(train_set.targets[index].astype(np.float32))
        yield _to_device(_normalise(batch, mean, std), device), _to_device(targets, device)


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
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
            results.append(_outputs(model, _to_device(_normalise(batch, mean, std), device)).float())
            owner.extend(i for i, _ in chunk)
    flat = torch.cat(results).cpu().numpy()  # one copy back, after the last batch (no per-batch sync)
    owner_arr = np.asarray(owner)
    return np.stack([flat[owner_arr == i].mean(axis=0) for i in range(len(spectrograms))])


def _centre_crop_batches(spectrograms: list[np.ndarray], crop_frames: int, *, mean: float, std: float,
                         batch_size: int = 32, device: str | torch.device = "cpu"):
    """Standardised model inputs, one crop from the middle of each clip, in batches."""
    for b in range(0, len(spectrograms), batch_size):
        batch = np.stack([crop(spec, crop_frames, max(0, (spec.shape[0] - crop_frames) // 2))
                          for spec in spectrograms[b:b + batch_size]])
        yield _to_device(_normalise(batch, mean, std), torch.device(device))


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


def inference_model(model: torch.nn.Module, train_set: ClipSet, config: TrainConfig, *, mean: float, std: float,
                     device: str | torch.device) -> torch.nn.Module:
    """The model as it would be kept if this epoch were the best one.

    With ``precise_bn`` the kept model gets re-estimated BatchNorm statistics, so validation
    must score a copy with those statistics: the running averages are what makes validation
    scores jump from epoch to epoch, and early stopping would otherwise pick an epoch for
    statistics that are then thrown away.
    """
    if not config.precise_bn:
        return model
    # An evenly spaced, fixed subset: every epoch is scored with statistics from the same clips,
    # and the cost per epoch stays bounded on the 5000-clip mid-level set.
    n = len(train_set.spectrograms)
    index = np.unique(np.linspace(0, n - 1, min(n, config.precise_bn_clips)).round().astype(int))
    copied = copy.deepcopy(model)
    recalibrate_batchnorm(copied, [train_set.spectrograms[i] for i in index], mean=mean, std=std,
                          crop_frames=config.crop_frames, device=device, precision=config.precision)
    return copied


def _loss(kind: str, prediction: torch.Tensor, target: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    if kind == "joint":
        if config.midlevel_loss_weight is None:
            raise ValueError("the Joint model needs midlevel_loss_weight (params.yaml: train_joint)")
        n_mid = len(MIDLEVEL_FEATURES)
        return (config.midlevel_loss_weight * F.mse_loss(prediction[:, :n_mid], target[:, :n_mid])
                + F.mse_loss(prediction[:, n_mid:], target[:, n_mid:]))
    return F.mse_loss(prediction, target)


def _mean_r(targets: np.ndarray, predictions: np.ndarray) -> float:
    r = pearson(targets, predictions)
    return float(np.nan_to_num(r, nan=0.0).mean())  # a constant output counts as r = 0 here


def train_step(kind: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               x: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """One optimisation step on a batch (autocast and loss scaling per ``config.precision``).

    Returns the batch's loss as a detached tensor on the model's device, not a Python
    number: ``.item()`` here would make the host wait for every GPU step.
    """
    optimizer.zero_grad()
    with amp.autocast(config.precision, x.device):
        prediction = _outputs(model, x)
    loss = _loss(kind, prediction.float(), y, config)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def make_optimizer(model: torch.nn.Module, learning_rate: float) -> torch.optim.Optimizer:
    """The paper's Adam, as the fused kernel.

    Fused, not torch's default per-tensor Adam: that one takes ``torch.sqrt`` of the second
    moments, which on the CPU runs through MKL's vector math library, whose results depended
    on the CPU (an emulated Intel Haswell gave other bits than this AMD EPYC with the same
    pinned kernels; ``tests/test_cross_cpu.py``). The fused kernel is ATen's own vectorised
    code, chosen by ``ATEN_CPU_CAPABILITY`` like the rest of the step, and it is one pass
    instead of five. Same algorithm and hyperparameters; the last bits differ from the
    per-tensor Adam.
    """
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) so a fixed seed on CPU reproduces a run exactly."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool


def train(kind: str, train_set: ClipSet, validation_set: ClipSet, *, mean: float, std: float,
          config: TrainConfig, seed: int, device: torch.device | None = None,
          description: str = "train", progress: bool = True,
          on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train one model from scratch and return it with the best validation epoch's weights.

    Parameters
    ----------
    kind : {"a2e", "a2mid", "joint"}
        Which network (see :func:`midlevel_emotion.learning.models.build_model`).
    train_set, validation_set : ClipSet
        Targets matching ``kind`` (Joint: 7 mid-level then 8 emotion columns).
    mean, std : float
        Spectrogram standardisation (dataset-wide scalars).
    seed : int
        Seeds the weights, the crops and the batch order.
    config : TrainConfig
        ``config.precision`` autocasts the training steps and the validation scoring; the
        kept model is fp32 (:mod:`midlevel_emotion.learning.precision`).
    on_epoch : callable, optional
        Called after each epoch with its history row (``epoch``, ``train_loss``, ``val_loss``,
        ``val_mean_r``), e.g. to log training curves while training runs.
    """
    device = device or default_device()
    seed_everything(seed)
    model = build_model(kind, last_kernel_size=config.last_kernel_size, dropout=config.dropout,
                        width=config.width).to(device)
    init_output_layers(model, train_set, config.output_init, mean=mean, std=std,
                       crop_frames=config.crop_frames, device=device)
    optimizer = make_optimizer(model, config.learning_rate)
    scaler = amp.grad_scaler(config.precision, device)
    rng = np.random.default_rng(seed)
    n_frames = config.crop_frames
    best_r, best_epoch, best_state = -np.inf, 0, copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    bar = tqdm(range(1, config.max_epochs + 1), desc=description, unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = rng.permutation(len(train_set.ids))
        losses = []
        for x, y in training_batches(train_set, order, rng, crop_frames=n_frames, batch_size=config.batch_size,
                                     mean=mean, std=std, device=device):
            losses.append(train_step(kind, model, optimizer, scaler, x, y, config))
        # float64 mean of the float32 losses: the same number per-step .item() calls gave
        train_loss = float(np.mean(torch.stack(losses).cpu().numpy().astype(np.float64))) if losses else float("nan")
        scored = inference_model(model, train_set, config, mean=mean, std=std, device=device)
        val_pred = predict(scored, validation_set.spectrograms, mean=mean, std=std, crop_frames=n_frames,
                           hop_frames=config.hop_frames, device=device, precision=config.precision)
        val_r = _mean_r(validation_set.targets, val_pred)
        val_loss = float(np.mean((val_pred - validation_set.targets) ** 2))
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_mean_r": val_r})
        if on_epoch is not None:
            on_epoch(dict(history[-1]))
        if val_r > best_r:
            # the state that was scored: with precise_bn, its re-estimated statistics are kept
            best_r, best_epoch, best_state = val_r, epoch, copy.deepcopy(scored.state_dict())
        bar.set_postfix(loss=f"{history[-1]['train_loss']:.4f}", val_r=f"{val_r:.3f}", best=best_epoch)
        if epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    if config.recenter_output_bias:
        recenter_output_bias(model, train_set, mean=mean, std=std, crop_frames=n_frames,
                             hop_frames=config.hop_frames, device=device)
    model.eval()
    return TrainResult(model, history, best_epoch, stopped_early=len(history) < config.max_epochs)
