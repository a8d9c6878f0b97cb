"""explain_many: windows of several files share forward passes, with the numbers of explain()."""

import math

import numpy as np
import pytest
import soundfile as sf

import midlevel_emotion.explanation.clip as clip_module
from midlevel_emotion.explanation.clip import prepare_clip
from midlevel_emotion.explanation.network import MidlevelNetwork, load_model
from midlevel_emotion.explanation.song import explain
from midlevel_emotion.core.errors import AudioError
from midlevel_emotion.core.errors import CheckpointError
from midlevel_emotion.core.constants import EMOTIONS, MIDLEVEL_FEATURES
from midlevel_emotion.explanation.batch import Timings, explain_many
from test_explanation import make_checkpoint, tone

# Batching changes a window's prediction only through the convolution kernels' summation
# order (BatchNorm is in eval mode, each window is computed on its own): measured up to 1e-6
# relative (float32 rounds at 6e-8), e.g. 2.4e-5 on this test model's emotions of about 30.
RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(make_checkpoint(tmp_path_factory.mktemp("models") / "joint_seed_0.pt"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good files of 1 window (looped), 5, 9 and 48 windows, and two bad ones between them."""
    root = tmp_path_factory.mktemp("batch_audio")
    paths = []
    for name, seconds in (("a_short.wav", 0.6), ("b_three.wav", 3.0), ("c_long.wav", 25.0), ("e_five.flac", 5.0)):
        sf.write(root / name, tone(seconds, seed=len(paths)), 44100)
        paths.append(root / name)
    (root / "d_empty.wav").write_bytes(b"")
    sf.write(root / "f_silent.wav", np.zeros((44100, 2), dtype=np.float32), 44100)
    return sorted(paths + [root / "d_empty.wav", root / "f_silent.wav"])


def assert_same_explanation(batched, alone):
    assert batched.source == alone.source and batched.padded == alone.padded
    assert batched.duration_seconds == alone.duration_seconds
    assert batched.window_seconds == alone.window_seconds and batched.hop_seconds == alone.hop_seconds
    np.testing.assert_array_equal(batched.times, alone.times)
    np.testing.assert_allclose(batched.midlevel_curve, alone.midlevel_curve, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(batched.emotion_curve, alone.emotion_curve, rtol=RTOL, atol=ATOL)
    for emotion in EMOTIONS:
        assert batched.emotions[emotion] == pytest.approx(alone.emotions[emotion], rel=RTOL, abs=ATOL)
        assert batched.bias[emotion] == alone.bias[emotion]
        assert sum(batched.effects[emotion].values()) + batched.bias[emotion] == pytest.approx(
            batched.emotions[emotion], abs=1e-5)
        for feature in MIDLEVEL_FEATURES:
            assert batched.effects[emotion][feature] == pytest.approx(alone.effects[emotion][feature],
                                                                      rel=RTOL, abs=ATOL)


@pytest.mark.parametrize("batch_size", [1, 4, 16, 100])
def test_batched_across_files_equals_each_file_alone(model, files, batch_size):
    """Batches cut through files (4: a 26-window file spans 7 passes, others share one), and a
    bad file between good ones gets its error while the others get their results, in order."""
    timings = Timings()
    outcomes = list(explain_many(files, model, batch_size=batch_size, timings=timings))
    assert [o.source for o in outcomes] == [str(f) for f in files]
    assert [o.index for o in outcomes] == list(range(len(files)))
    n_windows = 0
    for outcome, path in zip(outcomes, files):
        if path.name in ("d_empty.wav", "f_silent.wav"):
            assert outcome.explanation is None and isinstance(outcome.error, AudioError)
            assert outcome.error.reason.startswith("empty" if "empty" in path.name else "silent")
            continue
        assert outcome.error is None, outcome.error
        alone = explain(path, model)
        assert_same_explanation(outcome.explanation, alone)
        n_windows += len(alone.times)
    assert n_windows == 1 + 3 + 26 + 6  # short (looped), three, long, five seconds, at the model's 1 s hop
    assert timings.n_windows == n_windows and timings.n_batches == math.ceil(n_windows / batch_size)
    assert timings.decode_seconds > 0 and timings.model_seconds > 0


def test_a_custom_hop_is_passed_to_every_file(model, files):
    good = [f for f in files if f.suffix in (".flac",) or "long" in f.name]
    for outcome, path in zip(explain_many(good, model, hop_seconds=0.5, batch_size=7), good):
        assert_same_explanation(outcome.explanation, explain(path, model, hop_seconds=0.5))


def test_a_file_the_network_fails_on_fails_alone(model, files, monkeypatch):
    """A failing forward pass is retried file by file: the error lands on its own file."""
    good = [f for f in files if f.name not in ("d_empty.wav", "f_silent.wav")]
    poisoned = good[1]
    original_prepare, original_call = prepare_clip, MidlevelNetwork.__call__

    def prepare(source, meta, **kwargs):
        clip = original_prepare(source, meta, **kwargs)
        if source == poisoned:
            clip.normalised[:] = 1e6  # marks this file's windows for the failing network below
        return clip

    def call(self, windows):
        if np.max(windows) >= 1e6:
            raise RuntimeError("the network cannot take this input")
        return original_call(self, windows)

    monkeypatch.setattr(clip_module, "prepare_clip", prepare)
    monkeypatch.setattr(MidlevelNetwork, "__call__", call)
    outcomes = list(explain_many(good, model, batch_size=16))
    monkeypatch.undo()
    assert [o.source for o in outcomes] == [str(f) for f in good]
    for outcome, path in zip(outcomes, good):
        if path == poisoned:
            assert outcome.explanation is None and "cannot take this input" in str(outcome.error)
        else:
            assert outcome.error is None
            assert_same_explanation(outcome.explanation, explain(path, model))


def test_non_finite_output_stops_the_run(tmp_path, files):
    import torch
    from midlevel_emotion.learning.models import build_model

    meta = load_model(make_checkpoint(tmp_path / "m.pt", trained=False))[1]
    broken = build_model("joint", width=meta["architecture"]["width"]).eval()
    with torch.no_grad():
        broken.midlevel_layer.weight.fill_(3e38)  # finite weights, overflowing output
    with pytest.raises(CheckpointError, match="not finite"):
        list(explain_many(files, (broken, meta)))
    with pytest.raises(ValueError, match="batch_size"):
        list(explain_many(files, (broken, meta), batch_size=0))
