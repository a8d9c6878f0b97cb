"""Tests for the Figure 2 networks: parameter counts, shapes, linearity, init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from midlevel_emotion.core.constants import EMOTIONS, MIDLEVEL_FEATURES
from midlevel_emotion.learning.models import (
    MODEL_KINDS,
    A2E,
    A2Mid,
    A2Mid2E,
    A2Mid2EJoint,
    Trunk,
    build_model,
    count_parameters,
    min_frames,
    trunk_channels,
)


def conv_bn(c_in: int, c_out: int, k: int) -> int:
    """Conv weight + conv bias + BatchNorm weight and bias."""
    return c_in * c_out * k * k + c_out + 2 * c_out


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def trunk_params(last_k: int) -> int:
    return (
        conv_bn(1, 64, 5)
        + conv_bn(64, 64, 3)
        + conv_bn(64, 128, 3)
        + conv_bn(128, 128, 3)
        + conv_bn(128, 256, 3)
        + conv_bn(256, 256, 3)
        + conv_bn(256, 384, 3)
        + conv_bn(384, 512, 3)
        + conv_bn(512, 256, last_k)
    )


TRUNK_K3 = 4_984_384
TRUNK_K1 = 3_935_808


def spec(batch: int, frames: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, 1, frames, 149)


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {kind: build_model(kind).eval() for kind in MODEL_KINDS}


def test_trunk_parameter_count() -> None:
    assert trunk_params(3) == TRUNK_K3
    assert count_parameters(Trunk()) == TRUNK_K3


def test_head_parameter_counts(models: dict[str, nn.Module]) -> None:
    assert count_parameters(models["a2e"]) == TRUNK_K3 + linear(256, 8) == 4_986_440
    assert count_parameters(models["a2mid"]) == TRUNK_K3 + linear(256, 7) == 4_986_183
    assert count_parameters(models["joint"]) == TRUNK_K3 + linear(256, 7) + linear(7, 8) == 4_986_247
    # A2Mid2E's emotion layer is fitted by regression, not trained: frozen, but stored.
    m = models["a2mid2e"]
    assert count_parameters(m) == TRUNK_K3 + linear(256, 7) == 4_986_183
    assert sum(p.numel() for p in m.parameters()) == 4_986_183 + linear(7, 8)
    assert set(m.state_dict()) >= {"emotion_layer.weight", "emotion_layer.bias"}


def test_output_layers_are_the_linear_layers_after_the_trunk_in_forward_order(
        models: dict[str, nn.Module]) -> None:
    x = spec(2, 313)
    for kind, model in models.items():
        layers = model.output_layers()
        names = [n for n, group in (("midlevel", MIDLEVEL_FEATURES), ("emotions", EMOTIONS))
                 if group in (model.output_names, *model.output_names)]
        assert list(layers) == names, kind
        # Applying the layers in order to the trunk's features gives the model's outputs.
        with torch.no_grad():
            h, outputs = model.trunk(x), []
            for layer in layers.values():
                h = layer(h)
                outputs.append(h)
            expected = model(x)
        expected = expected if isinstance(expected, tuple) else (expected,)
        assert len(outputs) == len(expected) and all(torch.equal(a, b) for a, b in zip(outputs, expected)), kind
    assert models["a2e"].output_layers()["emotions"] is models["a2e"].head
    assert models["joint"].output_layers()["midlevel"] is models["joint"].midlevel_layer
    assert models["a2mid2e"].output_layers()["emotions"] is models["a2mid2e"].emotion_layer


def test_width_scales_every_convolution_and_one_is_figure_2() -> None:
    assert trunk_channels(1.0) == (64, 64, 128, 128, 256, 256, 384, 512, 256)
    narrow = trunk_channels(0.375)
    assert narrow == (24, 24, 48, 48, 96, 96, 144, 192, 96)
    model = build_model("joint", width=0.375).eval()
    c = narrow
    expected = (conv_bn(1, c[0], 5) + sum(conv_bn(a, b, 3) for a, b in zip(c[:7], c[1:8])) + conv_bn(c[7], c[8], 3))
    assert count_parameters(model.trunk) == expected and model.trunk.out_features == 96
    assert count_parameters(model) == expected + linear(96, 7) + linear(7, 8)
    with torch.no_grad():
        mid, emotions = model(spec(2, 40))
    assert mid.shape == (2, 7) and emotions.shape == (2, 8)
    for bad in (0, -0.5, 1.5, "half", True):
        with pytest.raises(ValueError, match="width must be a number in \\(0, 1\\]"):
            trunk_channels(bad)
    with pytest.raises(ValueError, match="no channels"):
        trunk_channels(0.001)


def test_last_kernel_size_one_changes_count() -> None:
    assert trunk_params(1) == TRUNK_K1
    assert TRUNK_K3 - TRUNK_K1 == 512 * 256 * (9 - 1)
    model = build_model("a2e", last_kernel_size=1).eval()
    assert count_parameters(model.trunk) == TRUNK_K1
    assert count_parameters(model) == TRUNK_K1 + linear(256, 8)
    with torch.no_grad():
        assert model(spec(2, min_frames(1))).shape == (2, 8)
    with pytest.raises(ValueError, match="frames"):
        model(spec(1, min_frames(1) - 1))


def test_output_shapes_and_names(models: dict[str, nn.Module]) -> None:
    x = spec(2, 313)
    with torch.no_grad():
        assert models["a2e"](x).shape == (2, 8)
        assert models["a2mid"](x).shape == (2, 7)
        for kind in ("a2mid2e", "joint"):
            mid, emo = models[kind](x)
            assert mid.shape == (2, 7) and emo.shape == (2, 8)
    for kind, model in models.items():
        assert model.kind == kind
    assert tuple(models["a2e"].output_names) == EMOTIONS
    assert tuple(models["a2mid"].output_names) == MIDLEVEL_FEATURES
    assert models["joint"].output_names == (MIDLEVEL_FEATURES, EMOTIONS)
    assert models["a2mid2e"].output_names == (MIDLEVEL_FEATURES, EMOTIONS)
    assert isinstance(models["a2e"], A2E)
    assert isinstance(models["a2mid"], A2Mid)
    assert isinstance(models["a2mid2e"], A2Mid2E)
    assert isinstance(models["joint"], A2Mid2EJoint)


@pytest.mark.parametrize("frames", [157, 313, 626])
def test_trunk_accepts_any_length(models: dict[str, nn.Module], frames: int) -> None:
    trunk = models["a2e"].trunk
    with torch.no_grad():
        out = trunk(spec(1, frames))
    assert out.shape == (1, 256)
    assert torch.isfinite(out).all()


def test_minimum_frames() -> None:
    assert min_frames(3) == 23
    trunk = Trunk().eval()
    with torch.no_grad():
        assert trunk(spec(1, 23)).shape == (1, 256)
        with pytest.raises(ValueError, match="at least 23"):
            trunk(spec(1, 22))


def test_bad_shapes_rejected(models: dict[str, nn.Module]) -> None:
    trunk = models["a2mid"].trunk
    with torch.no_grad():
        for bad in (torch.zeros(1, 313, 149), torch.zeros(1, 1, 313, 128), torch.zeros(1, 2, 313, 149)):
            with pytest.raises(ValueError, match="shape"):
                trunk(bad)


def test_joint_emotions_are_linear_in_midlevel(models: dict[str, nn.Module]) -> None:
    model = models["joint"]
    with torch.no_grad():
        mid, emo = model(spec(2, 313))
        layer = model.emotion_layer
        assert layer.weight.shape == (8, 7)
        assert torch.allclose(emo, layer(mid))
        assert torch.allclose(emo, mid @ layer.weight.T + layer.bias, atol=1e-6)


def test_a2mid2e_set_linear(models: dict[str, nn.Module]) -> None:
    model = models["a2mid2e"]
    rng = np.random.default_rng(1)
    weight, bias = rng.normal(size=(8, 7)), rng.normal(size=8)
    model.set_linear(weight, bias)
    with torch.no_grad():
        mid, emo = model(spec(2, 313))
    assert torch.allclose(mid, model.a2mid(spec(2, 313)).detach())
    expected = mid.double().numpy() @ weight.T + bias
    np.testing.assert_allclose(emo.double().numpy(), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        model.set_linear(weight.T, bias)


def test_kaiming_init() -> None:
    torch.manual_seed(0)
    model = A2Mid2EJoint()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9
    for layer in convs + [model.midlevel_layer]:
        fan_in = layer.weight[0].numel()
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.15)
        assert torch.all(layer.bias == 0)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_dropout_argument() -> None:
    model = build_model("a2e", dropout=0.1)
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates == [0.1, 0.1]


def test_build_model_rejects_unknown_kind() -> None:
    assert MODEL_KINDS == ("a2e", "a2mid", "a2mid2e", "joint")
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("a2m2e")


def test_joint_trains_end_to_end() -> None:
    torch.manual_seed(0)
    model = build_model("joint").train()
    mid, emo = model(spec(2, 47))
    loss = nn.functional.mse_loss(mid, torch.zeros_like(mid)) + nn.functional.mse_loss(emo, torch.zeros_like(emo))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
