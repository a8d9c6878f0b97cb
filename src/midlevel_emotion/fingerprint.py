"""Fingerprint a short seeded CPU training run: the same sha256 on two machines means the same numbers.

    python -m midlevel_emotion.fingerprint [--no-reproducible] [--threads N] [--save weights.npz]

The check of the reproducible mode (:mod:`midlevel_emotion.determinism`) across machines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any, Mapping, Sequence

from .determinism import configure_cpu


def state_digest(state: Mapping[str, Any]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and raw bytes (bitwise identity)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        array = state[name].detach().cpu().contiguous().numpy()
        digest.update(f"{name}|{array.dtype}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


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

    from .constants import N_BINS
    from .corpus import EMOTIONS, MIDLEVEL_FEATURES
    from .training import ClipSet, TrainConfig, train

    rng = np.random.default_rng(seed)  # the data does not depend on torch's random stream
    frames, n_targets = 469, len(MIDLEVEL_FEATURES) + len(EMOTIONS)  # 15 s at 31.25 fps
    spectrograms = [rng.standard_normal((frames, N_BINS)).astype(np.float32) for _ in range(clips)]
    targets = rng.standard_normal((clips, n_targets))
    n_train = clips * 3 // 4
    train_set = ClipSet([f"t{i}" for i in range(n_train)], spectrograms[:n_train], targets[:n_train])
    validation_set = ClipSet([f"v{i}" for i in range(clips - n_train)], spectrograms[n_train:],
                             targets[n_train:])
    # Every value spelled out: the probe is a fixed fingerprint, independent of params.yaml.
    config = TrainConfig(crop_seconds=crop_seconds, fps=31.25, batch_size=8, learning_rate=0.0005,
                         max_epochs=epochs, patience=epochs, eval_hop_seconds=6.0, midlevel_loss_weight=1.0,
                         last_kernel_size=3, width=1.0, dropout=0.3, precise_bn=True, precise_bn_clips=min(8, n_train),
                         output_init="train_mean", recenter_output_bias=False,
                         precision="fp32")
    result = train("joint", train_set, validation_set, mean=0.0, std=1.0, config=config, seed=seed,
                   device=torch.device("cpu"), progress=False)
    state = result.model.state_dict()
    return {"sha256": state_digest(state), "state": state, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m midlevel_emotion.fingerprint``: print the probe's digest as JSON."""
    parser = argparse.ArgumentParser(description="Fingerprint a short CPU training run: the same "
                                     "sha256 on two machines means the same numbers.")
    parser.add_argument("--reproducible", action=argparse.BooleanOptionalAction, default=True,
                        help="pin the CPU kernels and threads first (default: on)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--crop-seconds", type=float, default=3.0)
    parser.add_argument("--save", default=None, help="write the final weights here (.npz)")
    args = parser.parse_args(argv)
    configure_cpu(args.reproducible, args.threads)  # before probe() imports torch
    result = probe(epochs=args.epochs, clips=args.clips, crop_seconds=args.crop_seconds)
    state = result.pop("state")
    if args.save:
        import io

        import numpy as np

        from .fileio import write_bytes

        buffer = io.BytesIO()
        np.savez(buffer, **{name: value.numpy() for name, value in state.items()})
        write_bytes(args.save, buffer.getvalue())
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
