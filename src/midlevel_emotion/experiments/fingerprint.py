"""Fingerprint the whole data path and a short seeded CPU training run: the same digests on two
machines mean the same numbers.

    python -m midlevel_emotion.experiments.fingerprint [--no-reproducible] [--threads N] [--save weights.npz]
                                           [--no-data-path]

Prints JSON: ``sha256`` of a Joint model trained on random clips (:func:`probe`) and, under
``steps``, one digest per step of the pipeline's data path on a tiny synthetic corpus
(:func:`probe_data_path`): the rendered mp3, the decoded and resampled audio, the spectrogram,
the store's mean and std, one epoch of each network kind on those spectrograms, and the
evaluation's scores and linear fit. Two machines whose digests agree will compute the same
results; the first step that differs names where they part. Seconds on 2 cores, and a minute
or two under an emulated CPU (``tests/test_cross_cpu.py``).

The check of the reproducible mode (:mod:`midlevel_emotion.core.determinism`) across machines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any, Mapping, Sequence

from ..core.determinism import configure_cpu, pin_numpy


def _update(digest: Any, array: Any, label: str = "") -> None:
    """Feed an array's label, dtype, shape and raw bytes to ``digest``."""
    import numpy as np

    array = np.ascontiguousarray(array)
    digest.update(f"{label}{array.dtype}|{array.shape}|".encode())
    digest.update(array.tobytes())


def state_digest(state: Mapping[str, Any]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and raw bytes (bitwise identity)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        _update(digest, state[name].detach().cpu().numpy(), f"{name}|")
    return digest.hexdigest()


def machine() -> dict[str, Any]:
    """What torch runs on here: its kernel set (``cpu_capability``) and intra-op ``threads``."""
    import torch

    return {"threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _probe_config(config_class: type, **varied: Any) -> Any:
    """The probes' training config: the values they share, then ``varied``. Every value is spelled
    out here, independent of params.yaml, because a fingerprint must stay fixed while the
    pipeline's params change."""
    shared = {"fps": 31.25, "learning_rate": 0.0005, "midlevel_loss_weight": 1.0, "last_kernel_size": 3,
              "dropout": 0.3, "precise_bn": True, "output_init": "train_mean", "precision": "fp32"}
    return config_class(**shared, **varied)


def probe(*, epochs: int = 1, clips: int = 16, crop_seconds: float = 3.0, seed: int = 0) -> dict[str, Any]:
    """Train a Joint model on random clips with :func:`training.train`; fingerprint its weights.

    Every step the real training does runs here (Adam steps, BatchNorm re-estimation, windowed
    validation), on ``clips`` random 15 s spectrograms (three quarters for training).

    Returns
    -------
    dict
        ``sha256`` of the final state dict, ``state`` (the state dict), ``cpu_capability``
        (ATen's kernel set) and ``threads`` (torch's intra-op threads).
    """
    import numpy as np
    import torch

    from ..core.constants import N_BINS
    from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
    from ..learning.clips import ClipSet
    from ..learning.training import TrainConfig, train

    rng = np.random.default_rng(seed)  # the data does not depend on torch's random stream
    frames, n_targets = 469, len(MIDLEVEL_FEATURES) + len(EMOTIONS)  # 15 s at 31.25 fps
    spectrograms = [rng.standard_normal((frames, N_BINS)).astype(np.float32) for _ in range(clips)]
    targets = rng.standard_normal((clips, n_targets))
    n_train = clips * 3 // 4
    train_set = ClipSet([f"t{i}" for i in range(n_train)], spectrograms[:n_train], targets[:n_train])
    validation_set = ClipSet([f"v{i}" for i in range(clips - n_train)], spectrograms[n_train:],
                             targets[n_train:])
    config = _probe_config(TrainConfig, crop_seconds=crop_seconds, batch_size=8, max_epochs=epochs, patience=epochs,
                           eval_hop_seconds=6.0, width=1.0, precise_bn_clips=min(8, n_train),
                           recenter_output_bias=False)
    result = train("joint", train_set, validation_set, mean=0.0, std=1.0, config=config, seed=seed,
                   device=torch.device("cpu"), progress=False)
    state = result.model.state_dict()
    return {"sha256": state_digest(state), "state": state, **machine()}


def array_digest(*arrays: Any) -> str:
    """sha256 of arrays' dtypes, shapes and raw bytes (bitwise identity)."""
    digest = hashlib.sha256()
    for array in arrays:
        _update(digest, array)
    return digest.hexdigest()


def probe_data_path(*, seed: int = 0, duration_seconds: float = 3.0, width: float = 0.125) -> dict[str, str]:
    """Digest every step of the pipeline's data path on a two-clip synthetic corpus.

    The steps are the pipeline's own functions: ``synthetic.generate_corpus`` (render and mp3
    encode), ``audio.load`` (decode, downmix, soxr resampling, peak normalisation),
    ``features.log_filtered_spectrogram``, the store's mean and std (``store_writer.write_store_from_arrays``,
    the arithmetic of the ``spectrogram`` stage's ``stats.json``), one epoch of
    :func:`training.train` for A2E, A2Mid and Joint (a ``width`` trunk, so an emulated CPU
    gets through it) on crops of those spectrograms, and the evaluation's numbers
    (``scores.pearson`` of the predictions, ``scores.fit_linear``).

    Returns
    -------
    dict of str
        Step name -> sha256 hex digest, in pipeline order.
    """
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from ..signal.audio import load
    from ..core.constants import SpectrogramSettings
    from ..signal.features import log_filtered_spectrogram
    from ..learning.scores import fit_linear, pearson
    from ..signal.store_writer import write_store_from_arrays
    from ..data.synthetic import generate_corpus
    from ..learning.inference import predict
    from ..learning.clips import ClipSet
    from ..learning.training import TrainConfig, train

    steps: dict[str, str] = {}
    settings = SpectrogramSettings()
    with tempfile.TemporaryDirectory() as tmp:
        generate_corpus(Path(tmp), n_clips=2, n_soundtracks=2, duration_seconds=duration_seconds, seed=seed,
                        jobs=1, progress=False)
        mp3s = sorted(Path(tmp, "soundtracks", "audio").glob("*.mp3"))
        steps["mp3"] = hashlib.sha256(b"".join(path.read_bytes() for path in mp3s)).hexdigest()
        signals = [load(path, settings.sample_rate) for path in mp3s]
    steps["decoded"] = array_digest(*signals)
    spectrograms = [log_filtered_spectrogram(signal, **settings.kwargs()) for signal in signals]
    steps["spectrogram"] = array_digest(*spectrograms)
    with tempfile.TemporaryDirectory() as tmp:
        stats = write_store_from_arrays({f"c{i}": spec for i, spec in enumerate(spectrograms)}, Path(tmp) / "store")
    mean, std = stats["mean"], stats["std"]
    steps["moments"] = array_digest(np.array([mean, std]))
    # 12 training and 4 validation "clips": 1 s windows of the two spectrograms
    frames = 32
    windows = [spec[start:start + frames] for spec in spectrograms
               for start in range(0, spec.shape[0] - frames + 1, frames // 4)][:16]
    rng = np.random.default_rng(seed)
    targets = rng.uniform(0.1, 0.9, size=(len(windows), 15))
    config = _probe_config(TrainConfig, crop_seconds=0.8, batch_size=4, max_epochs=1, patience=1, eval_hop_seconds=0.5,
                           width=width, precise_bn_clips=4, recenter_output_bias=True)
    columns = {"a2e": slice(7, 15), "a2mid": slice(0, 7), "joint": slice(0, 15)}
    for kind, cols in columns.items():
        train_set = ClipSet([f"t{i}" for i in range(12)], windows[:12], targets[:12, cols])
        validation_set = ClipSet([f"v{i}" for i in range(4)], windows[12:], targets[12:, cols])
        result = train(kind, train_set, validation_set, mean=mean, std=std, config=config, seed=seed,
                       device=torch.device("cpu"), progress=False)
        steps[f"train_{kind}"] = state_digest(result.model.state_dict())
        if kind == "joint":
            prediction = predict(result.model, windows, mean=mean, std=std, crop_frames=config.crop_frames,
                                 hop_frames=config.hop_frames)
            weight, bias = fit_linear(prediction[:, :7], targets[:, 7:])
            steps["evaluate"] = array_digest(pearson(targets, prediction), weight, bias)
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m midlevel_emotion.experiments.fingerprint``: print the digests as JSON (module docstring)."""
    parser = argparse.ArgumentParser(description="Fingerprint a short CPU training run: the same "
                                     "sha256 on two machines means the same numbers.")
    parser.add_argument("--reproducible", action=argparse.BooleanOptionalAction, default=True,
                        help="pin the CPU kernels and threads first (default: on)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--crop-seconds", type=float, default=3.0)
    parser.add_argument("--save", default=None, help="write the final weights here (.npz)")
    parser.add_argument("--data-path", action=argparse.BooleanOptionalAction, default=True,
                        help="also digest each step of the data path (default: on)")
    parser.add_argument("--probe", action=argparse.BooleanOptionalAction, default=True,
                        help="train the Joint model on random clips for the top-level sha256 (default: on; "
                             "off for an emulated CPU, where it takes minutes)")
    parser.add_argument("--numpy-pin", action=argparse.BooleanOptionalAction, default=True,
                        help="pin numpy's loops as every stage does (default: on; off, with --no-reproducible, "
                             "whose pins include numpy's, shows what the pin changes)")
    args = parser.parse_args(argv)
    if args.save and not args.probe:
        parser.error("--save writes the probe's weights: it needs --probe")
    if args.numpy_pin:
        pin_numpy()  # as every stage does (stages/_common.py), before numpy loads
    configure_cpu(args.reproducible, args.threads)  # before probe() imports torch
    result: dict[str, Any] = {}
    if args.probe:
        result = probe(epochs=args.epochs, clips=args.clips, crop_seconds=args.crop_seconds)
    state = result.pop("state", None)
    if args.data_path:
        result["steps"] = probe_data_path()
    import numpy

    result.update(machine())
    # what numpy detects on this CPU (the pins switch off dispatch targets, not the detection)
    result["cpu_detected"] = [name for name, on in numpy._core._multiarray_umath.__cpu_features__.items()
                              if on and name.startswith(("AVX512", "X86_V"))]
    if args.save:
        import io

        import numpy as np

        from ..core.fileio import write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, **{name: value.numpy() for name, value in state.items()})
        write_bytes(args.save, buffer.getvalue())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
