"""Reproducible CPU numerics: the same seed gives the same weights on any x86-64 machine.

On one machine a seeded CPU run is bit-identical from run to run, but another CPU gives other
numbers, because torch picks its CPU kernels by the instruction sets the processor has and by
the thread count. Measured with ``benchmarks/reproducibility.py`` (a few training steps of the
Joint model, final weights compared bit for bit), on torch 2.13's CPU wheel:

- **oneDNN convolutions** (every conv layer, forward and backward): the JIT kernels differ per
  ISA (``jit:avx512_core`` on an AVX-512 CPU, ``jit:avx2`` on an AVX2 one) and sum in another
  order. The AVX-512 backward-weights kernel also splits the batch reduction by thread count
  (1 and 2 threads differ); the AVX2 one does so only from about 16 threads on.
- **MKL sgemm** (the Linear layers): MKL dispatches by ISA too; ``MKL_ENABLE_INSTRUCTIONS=AVX2``
  changes the weights, and so does the thread count.
- **The thread count** beyond that: even the AVX2 convolution splits a batch's weight-gradient
  sum across threads when the batch is smaller than 8 (the last batch of an epoch) or the
  threads are many (16 differ from 1 at batch 8).
- **ATen's own vectorised kernels** (BatchNorm, pooling, Adam, the loss): ``avx2`` and ``avx512``
  gave identical weights here; ``default`` (no AVX2) differs.
- **numpy's OpenBLAS** (the least-squares fits) picks its kernel by CPU too (SkylakeX here,
  Haswell on AVX2, Zen on AMD); pinning it to Haswell changed nothing here and costs nothing.
- **numpy's own loops** (every stage, not only training): numpy 2 dispatches its ufuncs at run
  time to the best of its X86_V3 (AVX2), X86_V4, AVX512_ICL and AVX512_SPR builds. The AVX-512
  ``log10`` and the wider unrolling of its pairwise sums round differently, so the spectrogram
  store's values and its mean/std differed between an AVX-512 and an AVX2-only CPU (issue 18).
  :data:`NUMPY_PINS` switches numpy to its X86_V3 loops; every stage sets it before numpy loads
  (``stages/_common.py``), whatever ``train.reproducible`` says, because the data stages do
  not depend on that param and a pin of numpy's loops costs little (docs/performance.md).

The reproducible mode pins all three to AVX2 code paths, which every x86-64 CPU since 2013 (Intel
Haswell, AMD Zen) runs, and fixes the thread count:

- ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's CPU dispatcher control),
- ``MKL_CBWR=COMPATIBLE`` (MKL's Conditional Numerical Reproducibility; the one branch MKL
  documents as identical on Intel and non-Intel CPUs; it only runs the two small Linear layers),
- ``ATEN_CPU_CAPABILITY=avx2``,
- ``OPENBLAS_CORETYPE=Haswell`` (numpy's BLAS),
- ``CUDA_VISIBLE_DEVICES=`` (empty: no GPU, whose kernels give other numbers again),
- :data:`REPRODUCIBLE_THREADS` threads (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``; ``OMP_DYNAMIC`` and ``MKL_DYNAMIC`` off).

torch reads these when it runs its first operation, numpy's OpenBLAS when numpy is imported, so
:func:`configure_cpu` must come first, before ``import numpy`` and ``import torch`` (the
training stages call it first thing, through ``stages/_common.py``). A run on a CPU without
AVX2, or with another torch or numpy build, still differs.

``python -m midlevel_emotion.experiments.fingerprint`` trains a tiny Joint model and prints the sha256 of
its weights: the same digest on two machines means the same numbers. (It lives in its own
module so this one stays free of the training code: every stage imports it.)
"""

from __future__ import annotations

import os
import sys

#: numpy's pins, set by every stage: its AVX2 (X86_V3) loops and OpenBLAS's Haswell kernels
#: on any CPU that has AVX2, so data, spectrograms, fits and statistics do not depend on it.
#: ``NPY_DISABLE_CPU_FEATURES`` names numpy 2's dispatch targets above X86_V3 (a target the
#: CPU lacks is ignored); numpy reads it when it is imported.
NUMPY_PINS: dict[str, str] = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",  # the numpy stages make no large BLAS calls; training sets its own
}

#: Kernel pins of the reproducible mode (environment variable -> value).
PINNED_KERNELS: dict[str, str] = {
    **NUMPY_PINS,
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "OMP_DYNAMIC": "FALSE",  # exactly the requested threads, never fewer
    "MKL_DYNAMIC": "FALSE",
    "CUDA_VISIBLE_DEVICES": "",  # a GPU computes other numbers again: train on the CPU
}
#: Intra-op threads of the reproducible mode (torch, MKL and numpy's OpenBLAS). Any fixed count
#: gives the same numbers on every machine; 2 suits the embedded default's 2-core target. On a
#: 2-core AVX-512 CPU a training step took 1.4-2.1 times as long as with torch's defaults with
#: 2 threads, 2.9-3.1 times with 1. A one-core machine runs the 2 threads in turn (same numbers).
REPRODUCIBLE_THREADS = 2
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def pin_numpy() -> dict[str, str]:
    """Set :data:`NUMPY_PINS` in ``os.environ``; call before ``import numpy``.

    Returns
    -------
    dict of str
        The variables set.

    Raises
    ------
    RuntimeError
        When numpy is already imported (its loops are chosen at import and cannot change).
    """
    if "numpy" in sys.modules and any(os.environ.get(k) != v for k, v in NUMPY_PINS.items()):
        raise RuntimeError("pin_numpy() came too late: numpy is already imported with its own loops; "
                           "call it before the first `import numpy`")
    os.environ.update(NUMPY_PINS)
    return dict(NUMPY_PINS)


def configure_cpu(reproducible: bool, threads: int | None = None) -> dict[str, str]:
    """Pin torch's CPU kernels and thread count (reproducible mode), or leave them to torch.

    Call before torch runs its first operation, best before ``import torch``: the kernel choice
    is read from the environment then and cannot change afterwards.

    Parameters
    ----------
    reproducible : bool
        True: set :data:`PINNED_KERNELS` and the thread count in ``os.environ`` (overriding any
        values already there), so the run's numbers are identical on every x86-64 CPU with AVX2.
        False: change nothing but the thread count, if ``threads`` is given.
    threads : int or None
        Intra-op threads. None: :data:`REPRODUCIBLE_THREADS` in reproducible mode, torch's
        default (one per core) otherwise.

    Returns
    -------
    dict of str
        The environment variables that were set.

    Raises
    ------
    RuntimeError
        In reproducible mode, when torch has already chosen AVX-512 kernels (it ran an
        operation before this call).
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    settings = dict(PINNED_KERNELS) if reproducible else {}
    if reproducible and threads is None:
        threads = REPRODUCIBLE_THREADS
    if threads is not None:
        settings.update({name: str(threads) for name in _THREAD_VARIABLES})
    os.environ.update(settings)
    if "torch" in sys.modules:  # imported already: the thread count can still change
        _apply_to_loaded_torch(reproducible, threads)
    return settings


def _apply_to_loaded_torch(reproducible: bool, threads: int | None) -> None:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    # The first call reads ATEN_CPU_CAPABILITY; a later one returns what an earlier op chose.
    if reproducible and torch.backends.cpu.get_cpu_capability() not in ("AVX2", "DEFAULT"):
        raise RuntimeError("configure_cpu(reproducible=True) came too late: torch already ran an "
                           "operation with AVX-512 kernels; call it before the first torch operation")
