"""Mixed-precision training: ``train.precision`` is ``fp32``, ``bf16`` or ``fp16``.

``bf16`` and ``fp16`` run the training steps and the validation scoring under
:func:`torch.autocast` (convolutions and matrix products in 16 bits, weights, optimizer state
and the loss in fp32); ``fp16`` also scales the loss (:class:`torch.amp.GradScaler`) so small
gradients do not underflow. The kept model is saved in fp32 and scored on the test clips in
fp32, as ``midlevel-emotion explain`` uses it.

Half precision is faster only where the hardware computes it natively:

- CPU bf16: AVX512-BF16 or AMX (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4 and
  later). On a 2-core Sapphire Rapids a training step took half as long as fp32
  (``benchmarks/train.py``). Without them oneDNN emulates bf16: a step took 1.9x as long as
  fp32 with AVX-512 (Skylake-like), and 12x as long with AVX2 only, which is what the
  reproducible mode pins; so ``bf16`` with ``train.reproducible: true`` is refused.
- CPU fp16: AVX512-FP16 or AMX-FP16 (Sapphire Rapids and later); emulated elsewhere.
- CUDA bf16: compute capability 8.0 or later (Ampere); fp16 on every CUDA GPU.

:func:`check` names the slow cases in a warning before a stage trains.
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
    return torch.cpu._is_amx_fp16_supported() or _has_cpu_flag("avx512_fp16")


def _has_cpu_flag(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as handle:
            return any(flag in line.split() for line in handle if line.startswith("flags"))
    except OSError:  # not Linux: unknown, so no warning
        return True


def check(precision: str, device: torch.device, *, reproducible: bool) -> str | None:
    """A warning for a precision the hardware emulates (None when it is native).

    Raises
    ------
    ValueError
        For bf16 or fp16 in the reproducible mode, whose AVX2 kernels have neither: a step
        would take about 12 times as long as in fp32, and the mode's point, the same numbers
        on every CPU, is an fp32 guarantee.
    """
    if validate(precision) != "fp32" and reproducible:
        raise ValueError(f"train.precision {precision} needs train.reproducible: false (the reproducible mode "
                         f"pins AVX2 kernels, which have no {precision}: a step takes ~12x as long as fp32)")
    if native(precision, device):
        return None
    where = "this GPU" if device.type == "cuda" else "this CPU"
    return (f"train.precision {precision}: {where} has no native {precision} instructions, so it is "
            "emulated and slower than fp32 (see midlevel_emotion.precision); use fp32 here")
