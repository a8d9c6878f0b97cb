"""Same numbers on another CPU: the data path and training steps, natively and on an emulated AVX2 CPU.

``python -m midlevel_emotion.experiments.fingerprint`` digests each step of the pipeline (synthetic mp3,
decoded and resampled audio, spectrogram, the store's mean and std, one epoch of A2E, A2Mid and
Joint, the evaluation's scores and fit) and a short Joint training run. It runs here natively
(this CPU, AVX-512 where it has it) and under Debian's ``qemu-user`` as an Intel Haswell (AVX2,
no AVX-512): the same venv, another CPU as numpy, OpenBLAS, oneDNN and ATen see it.

Before comparing, the test checks that the emulation really changed what the libraries see
(numpy's dispatch targets, torch's CPU capability), so it cannot pass by running the same
kernels twice. Where this machine has no AVX-512 the two CPUs look alike and the test skips;
without ``qemu-x86_64`` it fails in CI (``.ci/run`` installs it) and skips elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from midlevel_emotion.core.determinism import NUMPY_PINS, PINNED_KERNELS

ROOT = Path(__file__).resolve().parents[1]
QEMU = shutil.which("qemu-x86_64")
EMULATED_CPU = "Haswell"  # AVX2 + FMA, no AVX-512: the oldest CPU the reproducible mode promises
pytestmark = pytest.mark.slow


def _has_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def fingerprint(*, emulated: bool, options: tuple[str, ...] = ()) -> dict:
    """The fingerprint's JSON, run natively or under the emulator (the same Python, the same venv)."""
    env = {k: v for k, v in os.environ.items() if k not in set(PINNED_KERNELS) | {"OMP_NUM_THREADS", "MKL_NUM_THREADS"}}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    # librosa compiles numba kernels when imported (none of them on the data path: the digests
    # agree either way). Numba caches them per CPU model, so a fresh venv compiled them again
    # inside the emulator, for 3 minutes; for a "generic" CPU the native run's cache serves both.
    env["NUMBA_CPU_NAME"] = "generic"
    # --no-probe: the top-level probe (a full-width Joint model) takes minutes on the emulator;
    # the steps train narrow networks of every kind on the pipeline's own data
    command = [sys.executable, "-m", "midlevel_emotion.experiments.fingerprint", "--no-probe", *options]
    if emulated:
        command = [QEMU, "-cpu", EMULATED_CPU, *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def native() -> dict:
    return fingerprint(emulated=False)


@pytest.fixture(scope="module")
def emulated() -> dict:
    if QEMU is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-x86_64 is missing: .ci/run installs Debian's qemu-user")
        pytest.skip("qemu-x86_64 not installed (apt-get install qemu-user)")
    if not _has_avx512():
        pytest.skip("this CPU has no AVX-512: the emulated Haswell would look like it")
    return fingerprint(emulated=True)


def test_the_emulated_cpu_is_another_cpu_to_numpy_and_torch(native, emulated):
    # cpu_detected: what numpy detects (its pins switch off dispatch targets, not the detection)
    assert any(name.startswith("AVX512") for name in native["cpu_detected"]), native["cpu_detected"]
    assert not any(name.startswith("AVX512") for name in emulated["cpu_detected"]), emulated["cpu_detected"]
    assert "X86_V3" in emulated["cpu_detected"]  # AVX2 is there: the CPU the mode promises
    assert emulated["cpu_capability"] == "AVX2"


def test_every_step_of_the_pipeline_is_bitwise_the_same_on_the_emulated_cpu(native, emulated):
    assert list(native["steps"]) == ["mp3", "decoded", "spectrogram", "moments", "train_a2e", "train_a2mid",
                                     "train_joint", "evaluate"]
    differing = [step for step in native["steps"] if native["steps"][step] != emulated["steps"][step]]
    assert not differing, f"steps that differ on an emulated {EMULATED_CPU}: {differing}"


def test_without_the_numpy_pin_the_spectrogram_differs(native):
    """The pin is what makes the data path CPU-independent: without it numpy's AVX-512 loops
    compute another spectrogram here (so the test above can fail)."""
    if not _has_avx512():
        pytest.skip("no AVX-512 here: numpy runs its AVX2 loops with or without the pin")
    unpinned = fingerprint(emulated=False, options=("--no-numpy-pin", "--no-reproducible"))
    data_steps = ("mp3", "decoded", "spectrogram", "moments")
    differing = [step for step in data_steps if unpinned["steps"][step] != native["steps"][step]]
    assert differing, f"numpy's AVX-512 loops changed none of {data_steps}: is {NUMPY_PINS} still needed?"
