"""The training loop (prediction over windows: :mod:`.inference`; checkpoints: :mod:`.checkpoints`).

The loop is the paper's (Section 5): Adam, learning rate 0.0005, batch 8, MSE loss (the Joint
model: mid-level MSE + emotion MSE), one random crop of each clip per epoch, early stopping on
the validation set's mean Pearson r with a patience, keeping the best epoch's weights.

Three switches (``precise_bn``, ``output_init``, ``recenter_output_bias``) adapt the loop to the
embedded default's few hundred steps; the paper profile turns them off (:mod:`.adaptations`).

Validation and test scores predict every window of a clip and average them (:mod:`.inference`
holds that one rule).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..core.constants import MIDLEVEL_FEATURES, hop_frames, window_frames
from . import precision as amp
from .adaptations import init_output_layers, recalibrate_batchnorm, recenter_output_bias
from .clips import ClipSet
from .inference import crop, model_outputs, predict, standardise, to_device
from .models import build_model
from ..core.config import Params
from .scores import pearson



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
    def from_params(cls, params: Params, kind: str) -> "TrainConfig":
        """The config for training a ``kind`` model, from the loaded (checked) params.yaml.

        ``train.*`` gives the fields of :data:`TRAIN_KEYS`, ``spectrogram.fps`` the frame rate,
        and for ``kind="joint"`` ``train_joint.midlevel_loss_weight`` the loss weight (None for
        the other kinds, whose stages do not depend on it).
        """
        values = {key: getattr(params.train, key) for key in TRAIN_KEYS}
        values["fps"] = params.spectrogram.fps
        values["midlevel_loss_weight"] = params.train_joint.midlevel_loss_weight if kind == "joint" else None
        return cls(**values)

    @property
    def crop_frames(self) -> int:
        return window_frames(self.crop_seconds, self.fps)

    @property
    def hop_frames(self) -> int:
        return hop_frames(self.eval_hop_seconds, self.fps)


# ---------------------------------------------------------------------------------------
# Data


def training_batches(train_set: ClipSet, order: np.ndarray, rng: np.random.Generator, *, crop_frames: int,
                     batch_size: int, mean: float, std: float,
                     device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's batches: a random crop of each clip, in ``order``, standardised, on ``device``.

    A last batch of one clip is skipped (BatchNorm cannot train on a single example). Crops are
    drawn from ``rng`` batch by batch, so the crops depend only on the seed. On a GPU the steps
    run asynchronously: while one runs, the host crops and sends the next batch (see
    :func:`.inference.to_device`), so loading never waits for compute nor compute for loading.
    """
    for b in range(0, len(order), batch_size):
        index = order[b:b + batch_size]
        if len(index) < 2:
            continue
        batch = np.stack([crop(train_set.spectrograms[i], crop_frames,
                               int(rng.integers(0, max(1, train_set.spectrograms[i].shape[0] - crop_frames + 1))))
                          for i in index])
        targets = torch.from_numpy(train_set.targets[index].astype(np.float32))
        yield to_device(standardise(batch, mean, std), device), to_device(targets, device)


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
        prediction = model_outputs(model, x)
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
