"""Mixed-precision training: ``train.precision`` is ``fp32``, ``bf16`` or ``fp16``.

``bf16`` and ``fp16`` run the training steps and the validation scoring under
:func:`torch.autocast` (convolutions and matrix products in 16 bits, weights, optimizer state
and the loss in fp32); ``fp16`` also scales the loss (:class:`torch.amp.GradScaler`) so small
gradients do not underflow. The kept model is saved in fp32 and scored on the test clips in
fp32, as ``midlevel-emotion explain`` uses it.

Half precision is faster only where the hardware computes it natively. Measured with one A2E
training step (batch 8, 3 s crops) on a 2-core Intel Sapphire Rapids, torch 2.13 CPU
(``benchmarks/train.py``; the ISA limited with ``ONEDNN_MAX_CPU_ISA`` to play older CPUs):

- CPU bf16 with AVX512-BF16 or AMX (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4
  and later): 0.5x the fp32 step. With AVX-512 but neither (Skylake to Ice Lake, Zen 3):
  2.3x, emulated. With AVX2 only, what the reproducible mode pins: 12x; so ``bf16`` with
  ``train.reproducible: true`` is refused.
- CPU fp16: 310x, even with AVX512-FP16 (torch's CPU kernels do not use it for these
  layers); refused on the CPU.
- CUDA: bf16 from compute capability 8.0 (Ampere) on; fp16 on every CUDA GPU. No GPU was
  available to measure.

:func:`check` refuses the hopeless cases and names the slow ones in a warning before a stage
trains.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

#: The values ``train.precision`` takes, and the dtype each one computes in.
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def validate(precision: str) -> str:
    """``precision`` if it is one of :data:`DTYPES`, else a ValueError naming the choices."""
    if precision not in DTYPES:
        raise ValueError(f"train.precision must be one of {', '.join(DTYPES)}, got {precision!r}")
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context for ``precision`` on ``device`` (no-op for fp32)."""
    dtype = DTYPES[validate(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (bf16 has fp32's exponent range; fp32 needs none).

    Disabled, ``scale(loss)`` returns the loss and ``step(optimizer)`` steps: fp32 and bf16 train
    through the same calls with unchanged numbers.
    """
    return torch.amp.GradScaler(device.type, enabled=validate(precision) == "fp16")


def native(precision: str, device: torch.device) -> bool:
    """Whether ``device`` computes ``precision`` in hardware (fp32: always)."""
    if validate(precision) == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return True  # other accelerators: their autocast knows best
    if precision == "bf16":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False  # fp16 on the CPU: emulated, whatever the instruction set (see above)


def check(precision: str, device: torch.device, *, reproducible: bool) -> str | None:
    """A warning for a precision the hardware emulates (None when it is native).

    Raises
    ------
    ValueError
        For bf16 or fp16 in the reproducible mode, whose AVX2 kernels have neither (a bf16
        step takes 12 times as long as fp32; and the mode's promise, the same numbers on every
        CPU, is an fp32 one), and for fp16 on the CPU (310 times as long).
    """
    if validate(precision) != "fp32" and reproducible:
        raise ValueError(f"train.precision {precision} needs train.reproducible: false (the reproducible mode "
                         f"pins AVX2 kernels, which have no {precision}: a bf16 step takes 12x as long as fp32)")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("train.precision fp16 is for GPUs: torch's CPU kernels emulate it (a step took 310x as "
                         "long as fp32); use bf16 on a CPU with AVX512-BF16 or AMX, else fp32")
    if native(precision, device):
        return None
    where = "this GPU" if device.type == "cuda" else "this CPU"
    return (f"train.precision {precision}: {where} has no native {precision} instructions, so it is "
            "emulated and slower than fp32 (see midlevel_emotion.learning.precision); use fp32 here")
