"""The reproducible mode gives bit-identical weights whatever the thread count and kernel set.

Each run is a fresh subprocess (``python -m midlevel_emotion.experiments.fingerprint``: one epoch of
``training.train`` on random clips, batches of 8 and 4), since torch fixes its kernels at its
first operation. "Machine A" is this CPU as torch sees it by default (AVX-512 kernels where the
CPU has them, 2 threads); "machine B" is an AVX2-only CPU with one core, as far as environment
variables can make this one look like it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from midlevel_emotion.core.determinism import PINNED_KERNELS, REPRODUCIBLE_THREADS, configure_cpu

ROOT = Path(__file__).resolve().parents[1]
_THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MACHINE_A = {"ATEN_CPU_CAPABILITY": "avx512", **{name: "2" for name in _THREADS}}
MACHINE_B = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell", **{name: "1" for name in _THREADS}}


def _env(machine: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in set(PINNED_KERNELS) | set(_THREADS)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return {**env, **machine}


def _probe(machine: dict[str, str], reproducible: bool) -> subprocess.Popen:
    flag = "--reproducible" if reproducible else "--no-reproducible"
    # the training probe only: the data path's steps are compared across CPUs in test_cross_cpu.py
    return subprocess.Popen([sys.executable, "-m", "midlevel_emotion.experiments.fingerprint", flag, "--crop-seconds", "1.0",
                             "--no-data-path"],
                            env=_env(machine), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _digests(reproducible: bool) -> tuple[dict, dict]:
    runs = [_probe(MACHINE_A, reproducible), _probe(MACHINE_B, reproducible)]  # concurrently
    results = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results[0], results[1]


@pytest.fixture(scope="module")
def reproducible_runs() -> tuple[dict, dict]:
    return _digests(True)


def test_reproducible_mode_gives_identical_weights_across_threads_and_kernels(reproducible_runs):
    a, b = reproducible_runs
    assert a["cpu_capability"] == b["cpu_capability"] == "AVX2"
    assert a["threads"] == b["threads"] == REPRODUCIBLE_THREADS
    assert a["sha256"] == b["sha256"]


def test_without_the_mode_the_two_settings_differ():
    # Measured here: the thread count alone changes the weights (oneDNN splits the last, smaller
    # batch's weight-gradient sum across threads), and so do AVX-512 against AVX2 kernels, so
    # this holds on CPUs without AVX-512 too. If it failed, the first test would prove nothing.
    a, b = _digests(False)
    assert (a["threads"], b["threads"]) == (2, 1)
    assert a["sha256"] != b["sha256"]


def test_configure_cpu_sets_the_pins_only_in_reproducible_mode(monkeypatch):
    for name in [*PINNED_KERNELS, *_THREADS]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # as before `import torch`
    assert configure_cpu(False) == {}
    assert not any(name in os.environ for name in PINNED_KERNELS)
    settings = configure_cpu(True)
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2" and os.environ["MKL_CBWR"] == "COMPATIBLE"
    assert os.environ["OMP_NUM_THREADS"] == str(REPRODUCIBLE_THREADS) == settings["OMP_NUM_THREADS"]
    with pytest.raises(ValueError, match="threads must be at least 1"):
        configure_cpu(True, 0)


def test_configure_cpu_after_torch_chose_avx512_kernels_is_an_error():
    code = ("import torch; torch.ones(3).sum(); import sys\n"
            "if torch.backends.cpu.get_cpu_capability() != 'AVX512': sys.exit(3)\n"
            "from midlevel_emotion.core.determinism import configure_cpu; configure_cpu(True)")
    run = subprocess.run([sys.executable, "-c", code], env=_env({}), capture_output=True, text=True, timeout=120)
    if run.returncode == 3:
        pytest.skip("torch picks no AVX-512 kernels on this CPU")
    assert run.returncode == 1 and "came too late" in run.stderr


def test_stage_without_the_param_fails_with_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("  reproducible: true\n", ""))
    run = subprocess.run([sys.executable, str(ROOT / "stages" / "train_joint.py"), "--params", str(params),
                          "--models", "m", "--metrics", "m.json", "--plots", "p"],
                         env=_env({}), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.strip() == f"train_joint: error: {params}: missing key 'train.reproducible'"
