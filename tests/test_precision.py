"""train.precision (midlevel_emotion.learning.precision): autocast where asked, fp32 untouched, slow cases named."""

import dataclasses

import numpy as np
import pytest
import torch

from midlevel_emotion.learning import precision
from midlevel_emotion.learning.clips import ClipSet
from midlevel_emotion.learning.training import train

from configs import train_config

CPU = torch.device("cpu")


def clips(n: int, seed: int) -> ClipSet:
    rng = np.random.default_rng(seed)
    return ClipSet([f"c{i}" for i in range(n)], [rng.standard_normal((60, 149)).astype(np.float32) for _ in range(n)],
                   rng.uniform(size=(n, 8)))


def conv_dtypes_while_training(config) -> tuple[set[torch.dtype], torch.nn.Module]:
    """The dtypes the first convolution computes in during training steps, and the kept model."""
    seen: set[torch.dtype] = set()
    original = torch.nn.Conv2d.forward

    def spy(self, x):
        out = original(self, x)
        if self.training and torch.is_grad_enabled():
            seen.add(out.dtype)
        return out

    torch.nn.Conv2d.forward = spy
    try:
        result = train("a2e", clips(12, 0), clips(4, 1), mean=0.0, std=1.0, config=config, seed=0, device=CPU,
                       progress=False)
    finally:
        torch.nn.Conv2d.forward = original
    return seen, result.model


BASE = train_config(crop_seconds=1.0, eval_hop_seconds=1.0, max_epochs=1, batch_size=4)


@pytest.mark.parametrize("name, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_training_steps_compute_in_the_asked_precision_and_keep_an_fp32_model(name, dtype):
    seen, model = conv_dtypes_while_training(dataclasses.replace(BASE, precision=name))
    assert seen == {dtype}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_an_fp16_step_scales_the_loss_and_computes_in_fp16():
    # the GPU's half precision, on a tiny batch: torch emulates fp16 on the CPU (slowly)
    from midlevel_emotion.learning.models import build_model
    from midlevel_emotion.learning.training import make_optimizer, train_step

    torch.manual_seed(0)
    model = build_model("a2e", last_kernel_size=BASE.last_kernel_size, dropout=BASE.dropout)
    optimizer = make_optimizer(model, BASE.learning_rate)
    scaler = precision.grad_scaler("fp16", CPU)
    seen = []
    model.trunk.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    loss = train_step("a2e", model, optimizer, scaler, torch.randn(2, 1, 31, 149), torch.rand(2, 8),
                      dataclasses.replace(BASE, precision="fp16"))
    assert seen == [torch.float16] and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert scaler.get_scale() > 1  # the loss was scaled (and unscaled before the step)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_fp32_steps_are_unchanged_by_the_loss_scaler_and_autocast_plumbing():
    scaler = precision.grad_scaler("fp32", CPU)
    assert not scaler.is_enabled() and not precision.grad_scaler("bf16", CPU).is_enabled()
    assert precision.grad_scaler("fp16", CPU).is_enabled()
    with precision.autocast("fp32", CPU):
        assert not torch.is_autocast_enabled("cpu")


def test_unknown_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="train.precision must be one of fp32, bf16, fp16, got 'fp64'"):
        dataclasses.replace(BASE, precision="fp64")


def test_half_precision_is_refused_in_the_reproducible_mode_and_fp16_on_the_cpu():
    with pytest.raises(ValueError, match="needs train.reproducible: false"):
        precision.check("bf16", CPU, reproducible=True)
    with pytest.raises(ValueError, match="fp16 is for GPUs"):
        precision.check("fp16", CPU, reproducible=False)
    assert precision.check("fp32", CPU, reproducible=True) is None


def test_a_cpu_without_native_bf16_gets_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    warning = precision.check("bf16", CPU, reproducible=False)
    assert warning and "this CPU has no native bf16" in warning and "use fp32" in warning
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert precision.check("bf16", CPU, reproducible=False) is None


def test_a_gpu_before_ampere_gets_a_warning_for_bf16_and_none_for_fp16(monkeypatch):
    gpu = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    warning = precision.check("bf16", gpu, reproducible=False)
    assert warning and "this GPU has no native bf16" in warning
    assert precision.check("fp16", gpu, reproducible=False) is None  # fp16 is for GPUs
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert precision.check("bf16", gpu, reproducible=False) is None


def test_training_batches_go_to_a_gpu_from_pinned_memory_without_waiting(monkeypatch):
    # the CUDA branch of the input pipeline, on a CPU-only machine: record what it asks torch for
    from midlevel_emotion.learning import training

    calls = []

    def pin(self):
        calls.append("pin")
        return self

    def to(self, device, non_blocking=False):
        calls.append(("to", str(device), non_blocking))
        return self

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "to", to)
    data = clips(5, 0)
    rng = np.random.default_rng(0)
    batches = list(training.training_batches(data, np.arange(5), rng, crop_frames=20, batch_size=2, mean=0.0,
                                             std=1.0, device=torch.device("cuda")))
    assert len(batches) == 2  # the last batch of one clip is skipped (BatchNorm)
    assert calls == ["pin", ("to", "cuda", True)] * 4  # inputs and targets of both batches
