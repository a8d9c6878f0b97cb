"""The networks of Figure 2: one VGG-style trunk, four heads.

Every model reads a log-frequency spectrogram of shape (batch, 1, frames, 149)
(time x frequency; 313 frames = 10 s at 31.25 fps) and shares the same trunk up to
the adaptive average pooling, which turns any number of frames into 256 features.
``width`` scales every convolution's channels (1.0, the default, is Figure 2; narrower
trunks serve only the embedded default, see :func:`trunk_channels`).

- ``A2E``          trunk -> Linear(256, 8)                        emotions (black box)
- ``A2Mid``        trunk -> Linear(256, 7)                        mid-level features
- ``A2Mid2E``      an A2Mid, then Linear(7, 8) whose weights come from a linear
                   regression fitted afterwards (``set_linear``)  (mid-level, emotions)
- ``A2Mid2EJoint`` trunk -> Linear(256, 7) -> Linear(7, 8), both outputs supervised
                                                                  (mid-level, emotions)

In the two explainable models nothing sits between the mid-level output and the
emotion layer, so ``emotions = mid @ W.T + b`` exactly, and each emotion is a sum of
feature effects ``W[i, j] * mid[j]`` plus a bias. Both expose that layer as
``model.emotion_layer`` (weight shape (8, 7)) so explanation code treats them alike.

Every model names its output layers with ``model.output_layers()``: the Linear layers
after the trunk, in forward order, keyed ``"midlevel"`` and/or ``"emotions"`` (the order
in which two-output models concatenate their outputs). Training code that sets output
biases uses this instead of probing attribute names.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES, N_BINS

N_FREQ_BINS = N_BINS  # logarithmic filterbank bins (SPEC "Preprocessing")
TRUNK_FEATURES = 256  # width after AdaptiveAvgPool2d(1), at the paper's width
#: Output channels of the trunk's nine convolutions in Figure 2 (width 1.0).
PAPER_CHANNELS: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 384, 512, TRUNK_FEATURES)
MODEL_KINDS: tuple[str, ...] = ("a2e", "a2mid", "a2mid2e", "joint")


def min_frames(last_kernel_size: int = 3) -> int:
    """Shortest input (in frames) the trunk accepts.

    The time axis shrinks as ceil(T / 2) (strided conv), then halves twice (max pools,
    rounding down), then loses ``k - 1`` frames in the unpadded last conv, which must
    leave at least one frame: floor(floor(ceil(T / 2) / 2) / 2) >= k, i.e. T >= 8k - 1.
    That is 23 frames (0.74 s) for k = 3 and 7 frames for k = 1.

    Parameters
    ----------
    last_kernel_size : int
        Kernel size of the trunk's last convolution.

    Returns
    -------
    int
        Minimum number of frames.
    """
    return 8 * last_kernel_size - 1


def trunk_channels(width: float = 1.0) -> tuple[int, ...]:
    """Output channels of the nine convolutions: Figure 2's, times ``width``, rounded.

    ``width`` 1.0 is the paper's network. Narrower trunks (``train.width`` in params.yaml)
    only serve the embedded default, whose few hundred CPU steps cannot use the paper's
    capacity: a convolution's cost grows with the product of its input and output channels,
    so width 0.5 costs about a quarter per step (docs/performance.md).

    Raises
    ------
    ValueError
        When ``width`` is not in (0, 1] or leaves a layer without channels.
    """
    if not (isinstance(width, (int, float)) and not isinstance(width, bool) and 0.0 < width <= 1.0):
        raise ValueError(f"width must be a number in (0, 1], got {width!r}")
    channels = tuple(int(round(c * width)) for c in PAPER_CHANNELS)
    if min(channels) < 1:
        raise ValueError(f"width {width} leaves a convolution with no channels")
    return channels


def conv_bn_relu(c_in: int, c_out: int, kernel_size: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    """Conv2d -> BatchNorm2d -> ReLU, as a list of layers."""
    return [
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal weights and zero biases for conv/linear; BatchNorm to identity.

    Use as ``model.apply(init_weights)``.
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Trunk(nn.Module):
    """The shared VGG-style trunk of Figure 2: spectrogram -> 256 features.

    Parameters
    ----------
    last_kernel_size : int
        Kernel of the last (256-channel, unpadded) convolution. 3 follows the paper's
        Figure 2; the same lab's later re-implementation used 1 (a 1x1 conv).
    dropout : float
        Probability of the two Dropout layers that follow the max pools (paper: 0.3).
    width : float
        Channel multiplier (:func:`trunk_channels`); 1.0 is Figure 2.
    """

    def __init__(self, last_kernel_size: int = 3, dropout: float = 0.3, width: float = 1.0) -> None:
        super().__init__()
        if last_kernel_size < 1:
            raise ValueError(f"last_kernel_size must be >= 1, got {last_kernel_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        c1, c2, c3, c4, c5, c6, c7, c8, c9 = trunk_channels(width)
        self.last_kernel_size = last_kernel_size
        self.min_frames = min_frames(last_kernel_size)
        self.out_features = c9
        self.features = nn.Sequential(
            *conv_bn_relu(1, c1, 5, stride=2, padding=2),  # 1: 64 channels at width 1
            *conv_bn_relu(c1, c2, 3, padding=1),  # 2: 64
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            *conv_bn_relu(c2, c3, 3, padding=1),  # 3: 128
            *conv_bn_relu(c3, c4, 3, padding=1),  # 4: 128
            nn.MaxPool2d(2),
            nn.Dropout(dropout),
            *conv_bn_relu(c4, c5, 3, padding=1),  # 5: 256
            *conv_bn_relu(c5, c6, 3, padding=1),  # 6: 256
            *conv_bn_relu(c6, c7, 3, padding=1),  # 7: 384
            *conv_bn_relu(c7, c8, 3, padding=1),  # 8: 512
            # 9: 256; Figure 2 has a 3x3 conv without padding here; the lab's later code uses 1x1.
            *conv_bn_relu(c8, c9, last_kernel_size, padding=0),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.apply(init_weights)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is (batch, 1, frames >= min_frames, 149)."""
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[3] != N_FREQ_BINS:
            raise ValueError(
                f"expected input of shape (batch, 1, frames, {N_FREQ_BINS}), got {tuple(x.shape)}"
            )
        if x.shape[2] < self.min_frames:
            raise ValueError(
                f"input has {x.shape[2]} frames; the trunk needs at least {self.min_frames} "
                f"(last_kernel_size={self.last_kernel_size})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1, frames, 149) -> (batch, out_features): 256 at width 1."""
        self.check_input(x)
        return self.pool(self.features(x)).flatten(1)


class _TrunkAndHead(nn.Module):
    """The trunk and one linear output layer: A2E and A2Mid differ only in their outputs."""

    kind: str
    group: str  # "emotions" or "midlevel": the name output_layers() gives the head
    output_names: tuple[str, ...]

    def __init__(self, last_kernel_size: int = 3, dropout: float = 0.3, width: float = 1.0) -> None:
        super().__init__()
        self.trunk = Trunk(last_kernel_size, dropout, width)
        self.head = nn.Linear(self.trunk.out_features, len(self.output_names))
        init_weights(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))

    def output_layers(self) -> dict[str, nn.Linear]:
        """``{group: head}``."""
        return {self.group: self.head}


class A2E(_TrunkAndHead):
    """Audio to emotions directly: the black-box baseline. Output (batch, 8)."""

    kind, group, output_names = "a2e", "emotions", EMOTIONS


class A2Mid(_TrunkAndHead):
    """Audio to the seven mid-level features. Output (batch, 7)."""

    kind, group, output_names = "a2mid", "midlevel", MIDLEVEL_FEATURES


class A2Mid2E(nn.Module):
    """An A2Mid network followed by a linear regression from mid-level to emotions.

    The A2Mid part is trained on mid-level labels (``model.a2mid``); the emotion layer
    is not trained by gradient descent but set from a fitted regression with
    ``set_linear``. Its parameters therefore have ``requires_grad=False`` (they still
    live in the state dict). Forward returns ``(midlevel, emotions)`` like the Joint model.
    """

    kind = "a2mid2e"
    output_names: tuple[tuple[str, ...], tuple[str, ...]] = (MIDLEVEL_FEATURES, EMOTIONS)

    def __init__(self, last_kernel_size: int = 3, dropout: float = 0.3, width: float = 1.0) -> None:
        super().__init__()
        self.a2mid = A2Mid(last_kernel_size, dropout, width)
        self.emotion_layer = nn.Linear(len(MIDLEVEL_FEATURES), len(EMOTIONS))
        init_weights(self.emotion_layer)
        self.emotion_layer.requires_grad_(False)

    @property
    def trunk(self) -> Trunk:
        return self.a2mid.trunk

    def set_linear(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Load a fitted regression ``emotions = weight @ mid + bias``.

        Parameters
        ----------
        weight : np.ndarray
            Shape (8, 7): one row per emotion, one column per mid-level feature.
        bias : np.ndarray
            Shape (8,).
        """
        weight = np.asarray(weight, dtype=np.float64)
        bias = np.asarray(bias, dtype=np.float64)
        n_out, n_in = len(EMOTIONS), len(MIDLEVEL_FEATURES)
        if weight.shape != (n_out, n_in) or bias.shape != (n_out,):
            raise ValueError(
                f"expected weight {(n_out, n_in)} and bias {(n_out,)}, "
                f"got {weight.shape} and {bias.shape}"
            )
        p = self.emotion_layer.weight
        with torch.no_grad():
            self.emotion_layer.weight.copy_(torch.as_tensor(weight, dtype=p.dtype, device=p.device))
            self.emotion_layer.bias.copy_(torch.as_tensor(bias, dtype=p.dtype, device=p.device))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mid = self.a2mid(x)
        return mid, self.emotion_layer(mid)

    def output_layers(self) -> dict[str, nn.Linear]:
        """``{"midlevel": the A2Mid's head, "emotions": emotion_layer}``, in forward order."""
        return {"midlevel": self.a2mid.head, "emotions": self.emotion_layer}


class A2Mid2EJoint(nn.Module):
    """Audio -> 7 mid-level units -> 8 emotions, both outputs supervised (loss = sum).

    The emotion layer is purely linear on the mid-level output (no nonlinearity), so the
    7x8 weights explain every emotion prediction.
    """

    kind = "joint"
    output_names: tuple[tuple[str, ...], tuple[str, ...]] = (MIDLEVEL_FEATURES, EMOTIONS)

    def __init__(self, last_kernel_size: int = 3, dropout: float = 0.3, width: float = 1.0) -> None:
        super().__init__()
        self.trunk = Trunk(last_kernel_size, dropout, width)
        self.midlevel_layer = nn.Linear(self.trunk.out_features, len(MIDLEVEL_FEATURES))
        self.emotion_layer = nn.Linear(len(MIDLEVEL_FEATURES), len(EMOTIONS))
        init_weights(self.midlevel_layer)
        init_weights(self.emotion_layer)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mid = self.midlevel_layer(self.trunk(x))
        return mid, self.emotion_layer(mid)

    def output_layers(self) -> dict[str, nn.Linear]:
        """``{"midlevel": midlevel_layer, "emotions": emotion_layer}``, in forward order."""
        return {"midlevel": self.midlevel_layer, "emotions": self.emotion_layer}


def build_model(kind: str, *, last_kernel_size: int = 3, dropout: float = 0.3, width: float = 1.0) -> nn.Module:
    """Construct one of the four networks by name.

    Parameters
    ----------
    kind : str
        One of ``MODEL_KINDS``: "a2e", "a2mid", "a2mid2e", "joint".
    last_kernel_size : int
        Kernel of the trunk's last conv (3 = paper's Figure 2, 1 = the lab's later code).
    dropout : float
        Dropout probability in the trunk.
    width : float
        Channel multiplier of the trunk (1.0 = Figure 2; see :func:`trunk_channels`).

    Returns
    -------
    nn.Module
        The model, with attributes ``kind`` and ``output_names``. For "a2e" and "a2mid"
        ``output_names`` is a tuple of names; for "a2mid2e" and "joint", whose forward
        returns ``(midlevel, emotions)``, it is ``(MIDLEVEL_FEATURES, EMOTIONS)``.
    """
    classes = {"a2e": A2E, "a2mid": A2Mid, "a2mid2e": A2Mid2E, "joint": A2Mid2EJoint}
    if kind not in classes:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    return classes[kind](last_kernel_size=last_kernel_size, dropout=dropout, width=width)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
