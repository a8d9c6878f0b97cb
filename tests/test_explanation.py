"""Song-level explanations, the Section 7.2 pair selection, figures and the explain stage."""

import json
import math
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from midlevel_emotion.explanation import explain_stage as stage
from midlevel_emotion.explanation import effects as fx
from midlevel_emotion.explanation.network import _fused_midlevel_network, load_model
from midlevel_emotion.explanation.song import Explanation, SYNTHETIC_WARNING, compare, explain
from midlevel_emotion.signal import audio
from midlevel_emotion.signal.features import log_filtered_spectrogram
from midlevel_emotion.explanation import figures, pairs
from midlevel_emotion.core.errors import AudioError
from midlevel_emotion.core.constants import EMOTIONS, MIDLEVEL_FEATURES
from midlevel_emotion.core.constants import SpectrogramSettings
from midlevel_emotion.signal.store import SpectrogramStore
from midlevel_emotion.signal.store_writer import write_spectrogram_store
from midlevel_emotion.learning.models import build_model
from midlevel_emotion.learning.checkpoints import load_checkpoint, save_checkpoint
from midlevel_emotion.core.errors import CheckpointError
from midlevel_emotion.learning.inference import predict, predict_checkpoint
from midlevel_emotion.learning.clips import ClipSet
from midlevel_emotion.learning.training import train
from configs import params_with, train_config

CONFIG = train_config(crop_seconds=1.0, eval_hop_seconds=1.0, max_epochs=1, patience=5, batch_size=4)
FPS = 31.25
CROP = 32  # ceil(1.0 s * 31.25 fps)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def random_clips(kind, n=8, seed=0):
    rng = np.random.default_rng(seed)
    n_out = {"joint": 15, "a2e": 8}[kind]
    return ClipSet([str(i) for i in range(n)], [rng.normal(size=(40 + i, 149)).astype(np.float32) for i in range(n)],
                   rng.uniform(size=(n, n_out)).astype(np.float32))


def make_checkpoint(path, kind="joint", corpus="synthetic", extra=None, trained=True, config=CONFIG, seed=0):
    """A checkpoint as the pipeline writes it: trained 1 epoch on random data, or untrained (faster).

    ``seed`` makes another run's model (other initial weights)."""
    if trained:
        model = train(kind, random_clips(kind), random_clips(kind, 4, seed=1), mean=0.0, std=1.0, config=config,
                      seed=seed, progress=False).model
    else:
        torch.manual_seed(seed)
        model = build_model(kind, width=config.width).eval()
    spectrogram = {**SpectrogramSettings().as_dict(), "mean": 0.5, "std": 0.3}
    save_checkpoint(path, model, kind=kind, config=config, spectrogram=spectrogram, corpus=corpus, seed=seed,
                    params_digest="abc123", test_pearson={"valence": 0.4}, extra=extra)
    return path


@pytest.fixture(scope="module")
def joint_checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("models") / "joint_seed_0.pt")


@pytest.fixture(scope="module")
def model(joint_checkpoint):
    return load_model(joint_checkpoint)


def tone(seconds, rate=44100, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    left = 0.4 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) + 0.05 * rng.normal(size=t.size)
    right = 0.3 * np.sin(2 * np.pi * 330 * t + 1.0) + 0.05 * rng.normal(size=t.size)
    return np.stack([left, right], axis=1)[:, :channels].astype(np.float32)


def expected_windows(seconds, hop_frames):
    frames = math.ceil(seconds * 22050 / (22050 / FPS))
    if frames <= CROP:
        return 1
    full = (frames - CROP) // hop_frames + 1
    return full + (1 if (frames - CROP) % hop_frames else 0)


def test_effects_are_weights_times_values():
    rng = np.random.default_rng(0)
    weight, bias, mid = rng.normal(size=(8, 7)), rng.normal(size=8), rng.uniform(size=(5, 7))
    out = fx.effects(weight, bias, mid)
    assert out.shape == (5, 8, 7)
    assert out[3, 2, 4] == pytest.approx(weight[2, 4] * mid[3, 4])
    assert np.allclose(out.sum(-1) + bias, mid @ weight.T + bias)
    assert fx.effects(weight, bias, mid[0]).shape == (8, 7)
    with pytest.raises(ValueError, match=r"\(8, 7\)"):
        fx.effects(weight.T, bias, mid)


def test_explain_a_stereo_file_sums_to_the_predictions(tmp_path, joint_checkpoint):
    path = tmp_path / "song.wav"
    sf.write(path, tone(25.0), 44100)
    result = explain(path, joint_checkpoint)
    assert result.source == str(path) and result.duration_seconds == pytest.approx(25.0, abs=1e-3)
    assert not result.padded
    for emotion in EMOTIONS:
        assert sum(result.effects[emotion].values()) + result.bias[emotion] == pytest.approx(
            result.emotions[emotion], abs=1e-5)
    hop = CONFIG.hop_frames  # by default the hop the model was scored with (train.eval_hop_seconds)
    n = expected_windows(25.0, hop)
    assert hop == 31 and n == 26
    assert result.midlevel_curve.shape == (n, 7) and result.emotion_curve.shape == (n, 8)
    assert result.times.shape == (n,) and result.times[0] == 0.0
    assert result.hop_seconds == pytest.approx(hop / FPS) and result.window_seconds == pytest.approx(CROP / FPS)
    assert np.allclose(result.midlevel_curve.mean(0), [result.midlevel[f] for f in MIDLEVEL_FEATURES])
    assert np.allclose(result.emotion_curve.mean(0), [result.emotions[e] for e in EMOTIONS], atol=1e-6)
    assert result.warning == SYNTHETIC_WARNING
    assert result.checkpoint["kind"] == "joint" and result.checkpoint["params_hash"] == "abc123"
    assert result.checkpoint["test_pearson"] == {"valence": 0.4}
    blob = json.loads(json.dumps(result.to_dict()))
    assert len(blob["midlevel_curve"]) == n and blob["effects"]["tension"].keys() == set(MIDLEVEL_FEATURES)

    # the song-level values are what the pipeline's own scoring (inference.predict, at the
    # checkpoint's evaluation hop) gives
    spec = log_filtered_spectrogram(audio.load(path))
    scored = predict(load_model(joint_checkpoint)[0], [spec], mean=0.5, std=0.3, crop_frames=CROP,
                     hop_frames=hop)[0]
    assert np.allclose(scored[:7], [result.midlevel[f] for f in MIDLEVEL_FEATURES], atol=1e-5)
    assert np.allclose(scored[7:], [result.emotions[e] for e in EMOTIONS], atol=1e-5)

    # a custom hop; and the network's own emotion output agrees with the explanation
    coarse = explain(path, load_model(joint_checkpoint), hop_seconds=2.0)
    assert len(coarse.times) == expected_windows(25.0, 62) == 14
    net, _ = load_model(joint_checkpoint)
    first = log_filtered_spectrogram(audio.load(path))[:CROP]
    with torch.no_grad():
        _, emo = net(torch.from_numpy((first - 0.5) / 0.3).float()[None, None])
    assert np.allclose(emo.numpy()[0], coarse.emotion_curve[0], atol=1e-5)


def test_fused_inference_network_matches_the_model(model):
    net, _ = model
    fused = _fused_midlevel_network(net)
    assert fused is not None
    x = torch.randn(3, 1, CROP + 5, 149)
    with torch.no_grad():
        assert torch.allclose(fused(x.contiguous(memory_format=torch.channels_last)), net(x)[0], atol=1e-4)
    assert isinstance(net.trunk.features[1], torch.nn.BatchNorm2d)  # the model itself is left as it was


def test_short_file_is_loop_padded(tmp_path, model):
    path = tmp_path / "short.wav"
    sf.write(path, tone(0.6, channels=1), 44100)  # 19 frames < 32
    result = explain(path, model)
    assert result.padded and len(result.times) == 1
    four = tmp_path / "four.wav"
    sf.write(four, tone(4.0, rate=22050), 22050)
    result = explain(four, model)
    assert not result.padded and len(result.times) == expected_windows(4.0, 31)  # the model's 1 s hop


def test_padded_when_shorter_than_the_window(tmp_path):
    # the brief's case: a 4 s file against a 10 s window (paper setting)
    path = make_checkpoint(tmp_path / "ten.pt", corpus="soundtracks", trained=False,
                           config=train_config(crop_seconds=10.0))
    song = tmp_path / "four.wav"
    sf.write(song, tone(4.0), 44100)
    result = explain(song, path)
    assert result.padded and len(result.times) == 1 and result.window_seconds == pytest.approx(313 / FPS)
    assert result.warning is None


def test_signal_input_matches_the_file(tmp_path, model):
    signal = tone(6.0, rate=44100, channels=1)[:, 0]
    path = tmp_path / "mono.wav"
    sf.write(path, signal, 44100, subtype="FLOAT")
    from_signal = explain(signal, model, sample_rate=44100)
    from_file = explain(path, model)
    assert from_signal.source == "<signal>"
    assert np.allclose(from_signal.midlevel_curve, from_file.midlevel_curve, atol=1e-4)
    with pytest.raises(ValueError, match="sample_rate"):
        explain(signal, model)
    with pytest.raises(AudioError, match="<signal>: silent"):
        explain(np.zeros(44100, dtype=np.float32), model, sample_rate=44100)
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        explain(tmp_path / "missing.wav", model)


def test_signal_input_gets_the_checks_of_audio_load(model):
    """An array goes through audio.load: the same reasons as a file, naming <signal>."""
    signal = tone(3.0, rate=22050, channels=1)[:, 0]
    broken = signal.copy()
    broken[100] = np.nan
    with pytest.raises(AudioError, match="<signal>: contains non-finite samples"):
        explain(broken, model, sample_rate=22050)
    with pytest.raises(AudioError, match="<signal>: decoded to zero samples"):
        explain(np.zeros(0, dtype=np.float32), model, sample_rate=22050)
    for bad_rate in (0, -44100, 22050.5):
        with pytest.raises(ValueError, match="sample_rate must be a positive whole number"):
            explain(signal, model, sample_rate=bad_rate)
    with pytest.raises(ValueError, match="1-D"):
        explain(np.stack([signal, signal]), model, sample_rate=22050)
    # whole-number PCM works like float samples (peak normalisation removes the scale)
    pcm = np.round(signal / np.max(np.abs(signal)) * 32767).astype(np.int16)
    as_int = explain(pcm, model, sample_rate=22050)
    as_float = explain(pcm.astype(np.float32) / 32767, model, sample_rate=22050)
    assert np.allclose(as_int.midlevel_curve, as_float.midlevel_curve, atol=1e-5)


def _mutated_checkpoint(source, path, change):
    payload = torch.load(source, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("change, reason", [
    (lambda p: p.pop("input"), "lacks 'input'"),
    (lambda p: p.update(kind="cnn"), "unknown model kind 'cnn'"),
    (lambda p: p["architecture"].update(layers=3), "unknown architecture key(s) 'layers'"),
    (lambda p: p["architecture"].update(dropout="lots"), "architecture"),
    (lambda p: p["spectrogram"].update(fps=0), "spectrogram.fps must be a positive number"),
    (lambda p: p["spectrogram"].update(sample_rate=-22050), "spectrogram.sample_rate must be a positive number"),
    (lambda p: p["input"].update(crop_frames=-5), "input.crop_frames must be a positive number"),
    (lambda p: p["input"].update(crop_frames=2.5), "input.crop_frames must be a whole number"),
    (lambda p: p["spectrogram"].update(std=0.0), "std > 0"),
    (lambda p: p["spectrogram"].update(mean=float("inf")), "must be finite"),
    (lambda p: p["state_dict"][next(iter(p["state_dict"]))].fill_(float("inf")), "NaN or infinite"),
    (lambda p: p.update(state_dict=[1, 2]), "state_dict is a list"),
])
def test_load_checkpoint_names_the_file_and_the_damage(joint_checkpoint, tmp_path, change, reason):
    path = _mutated_checkpoint(joint_checkpoint, tmp_path / "bad.pt", change)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_non_finite_output_is_a_checkpoint_error(tmp_path):
    model = build_model("joint", width=CONFIG.width).eval()
    with torch.no_grad():
        model.midlevel_layer.weight.fill_(3e38)  # finite, but the float32 output overflows
    path = tmp_path / "overflow.pt"
    save_checkpoint(path, model, kind="joint", config=CONFIG, spectrogram={**SpectrogramSettings().as_dict(), "mean": 0.5,
                    "std": 0.3}, corpus="synthetic", seed=0, params_digest="abc123")
    with pytest.raises(CheckpointError, match=r"overflow.pt: the model's output for <signal> is not finite"):
        explain(tone(2.0, channels=1)[:, 0], path, sample_rate=44100)
    loaded = load_model(path)
    with torch.no_grad():
        loaded[0].emotion_layer.weight.fill_(float("nan"))  # a model handed over in memory, not via a file
    with pytest.raises(CheckpointError, match="not finite"):
        explain(tone(2.0, channels=1)[:, 0], loaded, sample_rate=44100)


def test_a2e_and_missing_checkpoints_are_rejected(tmp_path):
    path = make_checkpoint(tmp_path / "a2e_seed_0.pt", kind="a2e", trained=False)
    with pytest.raises(CheckpointError, match=r"a2e_seed_0.pt: a a2e model has no mid-level bottleneck"):
        load_model(path)
    with pytest.raises(CheckpointError, match="nothing.pt: checkpoint not found"):
        explain(tmp_path / "x.wav", tmp_path / "nothing.pt")


def make_explanation(mid, name, weight, bias):
    eff = fx.effects(weight, bias, mid)
    emo = mid @ weight.T + bias
    return Explanation(
        source=name, duration_seconds=10.0, padded=False, window_seconds=10.0, hop_seconds=5.0,
        times=np.zeros(1), midlevel=dict(zip(MIDLEVEL_FEATURES, mid)), emotions=dict(zip(EMOTIONS, emo)),
        effects={e: dict(zip(MIDLEVEL_FEATURES, eff[i])) for i, e in enumerate(EMOTIONS)},
        bias=dict(zip(EMOTIONS, bias)), midlevel_curve=mid[None], emotion_curve=emo[None],
        checkpoint={"path": "m.pt", "params_hash": "h", "trained_at": "t"})


def test_compare_ranks_the_largest_effect_difference_first():
    weight = np.full((8, 7), 0.1)
    weight[:, 4] = -0.5  # dissonance pulls every emotion down strongly
    bias = np.linspace(0, 0.7, 8)
    mid_a = np.full(7, 0.5)
    mid_b = mid_a.copy()
    mid_b[4] = 0.1   # effect difference on dissonance: -0.5 * 0.4 = -0.2
    mid_b[1] = 0.9   # articulation: 0.1 * -0.4 = -0.04
    result = compare(make_explanation(mid_a, "a.mp3", weight, bias), make_explanation(mid_b, "b.mp3", weight, bias))
    assert result["same_model"] and result["a"]["source"] == "a.mp3"
    tension = result["emotions"]["tension"]
    assert [f["feature"] for f in tension["features"][:2]] == ["dissonance", "articulation"]
    assert tension["features"][0]["difference"] == pytest.approx(-0.2)
    assert tension["difference"] == pytest.approx(sum(f["difference"] for f in tension["features"])
                                                  + tension["bias_difference"])
    json.dumps(result)


def test_pair_selection_follows_the_words_or_the_formula():
    # four songs: 0 and 1 feel alike but differ in mid-level (the words' pair);
    # 0 and 3 differ in both (the literal formula's pair)
    emotions = np.array([[0.0, 0.0], [0.1, 0.0], [0.5, 0.0], [1.0, 0.0]])
    midlevel = np.array([[0.0, 0.0], [0.9, 0.0], [0.5, 0.0], [1.0, 0.0]])
    d_e, d_mid = pairs.scaled_distances(emotions), pairs.scaled_distances(midlevel)
    upper = d_e[np.triu_indices(4, 1)]
    assert upper.min() == pytest.approx(0.0) and upper.max() == pytest.approx(1.0) and np.all(np.diag(d_e) == 0)
    i, j, score = pairs.select_pair(d_e, d_mid, "words")
    assert (i, j) == (0, 1) and score == pytest.approx(d_mid[0, 1] - d_e[0, 1])
    i, j, score = pairs.select_pair(d_e, d_mid, "formula")
    assert (i, j) == (0, 3) and score == pytest.approx(d_e[0, 3] - (1 - d_mid[0, 3]))
    with pytest.raises(ValueError, match="words"):
        pairs.select_pair(d_e, d_mid, "sideways")


def test_correlation_matrix_matches_numpy():
    rng = np.random.default_rng(3)
    mid, emo = rng.normal(size=(30, 7)), rng.normal(size=(30, 8))
    r = pairs.correlation_matrix(mid, emo)
    assert r.shape == (7, 8) and r[2, 5] == pytest.approx(np.corrcoef(mid[:, 2], emo[:, 5])[0, 1])


def is_png(path):
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_figures_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    eff = rng.normal(size=(20, 8, 7)) * 0.1
    figures.effects_figure(eff, tmp_path / "effects.png", example_a=2, example_b=5, label_a="#1", label_b="#2")
    figures.heatmap_figure(rng.uniform(-1, 1, size=(7, 8)), tmp_path / "heat.png", title="t", colorbar_label="r")
    figures.song_pair_effects_figure(eff[2], eff[5], tmp_path / "pair.png", predicted_a=rng.uniform(size=8),
                                     predicted_b=rng.uniform(size=8))
    runs = eff[:3, None] + rng.normal(size=(3, 2, 8, 7)) * 0.02  # 3 runs' effects of 2 songs
    low, high = runs.min(axis=0), runs.max(axis=0)
    figures.song_pair_effects_figure(*runs.mean(axis=0), tmp_path / "runs.png", range_a=np.stack([low[0], high[0]]),
                                     range_b=np.stack([low[1], high[1]]), n_runs=3)
    with pytest.raises(ValueError, match="need range_a and range_b"):  # the legend would claim a spread
        figures.song_pair_effects_figure(eff[2], eff[5], tmp_path / "no.png", n_runs=3)
    figures.not_run_figure(tmp_path / "none.png", "Figure 3 not available", "no model")
    for name in ("effects.png", "heat.png", "pair.png", "runs.png", "none.png"):
        assert is_png(tmp_path / name), name
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


REPO = Path(__file__).resolve().parents[1]


def test_dvc_plot_templates_and_offline_html_template():
    for name, field in (("effects.json", "<DVC_METRIC_Y>"), ("heatmap.json", "<DVC_METRIC_Y>"),
                        ("song_pair.json", "<DVC_METRIC_Y>")):
        text = (REPO / "reports/vega" / name).read_text()
        spec = json.loads(text)
        assert spec["data"] == {"values": "<DVC_METRIC_DATA>"} and field in text, name
    html = (REPO / "reports/plots_template.html").read_text(encoding="utf-8")
    assert html.count("{plot_divs}") == 1 and "{scripts}" not in html  # no placeholder: DVC adds no CDN tags
    assert "<script src=" not in html and "vegaEmbed=" in html and len(html.encode()) < 2_000_000


# ---------------------------------------------------------------------------------------
# The explain stage on a tiny pipeline world

N_SONGS = 12


def write_raw(raw, rng, with_midlevel=True):
    numbers = [f"{n:03d}" for n in range(1, N_SONGS + 1)]
    ratings = rng.uniform(1, 9, size=(N_SONGS, 8))
    lines = ["number," + ",".join(EMOTIONS) + ",TARGET"]
    lines += [f"{n}," + ",".join(f"{v:.2f}" for v in row) + ",HAPPY" for n, row in zip(numbers, ratings)]
    (raw / "soundtracks/audio").mkdir(parents=True)
    (raw / "soundtracks/mean_ratings_set1.csv").write_text("\n".join(lines) + "\n")
    if with_midlevel:
        header = "song_id,melody,articulation,rhythm_complexity,rhythm_stability,dissonance,tonal_stability,minorness"
        rows = [f"{100 + k}," + ",".join(f"{v:.2f}" for v in rng.uniform(1, 10, size=7)) for k in range(N_SONGS)]
        meta = ["song id;Source;ID at file source;Artist;Title;Album name"]
        meta += [f"{100 + k};soundtracks;{k + 1};Artist {k};Title {k};OST" for k in range(N_SONGS)]
        (raw / "midlevel/metadata_annotations").mkdir(parents=True)
        (raw / "midlevel/audio").mkdir()
        (raw / "midlevel/metadata_annotations/annotations.csv").write_text("\n".join([header] + rows) + "\n")
        (raw / "midlevel/metadata_annotations/metadata.csv").write_text("\n".join(meta) + "\n")
    return numbers


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(7)
    numbers = write_raw(root / "raw", rng)
    signals = root / "signals"
    signals.mkdir()
    for k, number in enumerate(numbers):
        np.save(signals / f"{number}.npy", tone(2.0 + 0.1 * k, rate=22050, channels=1, seed=k)[:, 0])
    write_spectrogram_store({n: signals / f"{n}.npy" for n in numbers}, root / "spectrograms/soundtracks", jobs=1,
                            progress=False)
    # One Joint model per run, as train_joint writes them; the runs' test splits differ.
    for seed, test_ids in zip(SEEDS, (numbers[:8], numbers[4:], numbers[:8])):
        make_checkpoint(root / f"models/joint/joint_seed_{seed}.pt", corpus="synthetic",
                        extra={"test_ids": test_ids}, trained=False, seed=seed)
    return root


SEEDS = (0, 1, 2)


def run_stage(world, tmp_path, rule="words", models=None, seeds=SEEDS):
    params = params_with({"runs.seeds": list(seeds), "explain.pair_selection": rule})
    return stage.explain_stage(world / "raw", world / "spectrograms", models or world / "models", tmp_path / "plots",
                            tmp_path / "reports", params, log=lambda *a: None)


def test_stage_writes_figures_tables_and_data(world, tmp_path):
    summary = run_stage(world, tmp_path)
    assert not summary["not_run"]
    plots = tmp_path / "plots"
    for name in ("effects.png", "correlation_heatmap.png", "joint_weights.png", "song_pair_effects.png"):
        assert is_png(plots / name), name
    effects = pd.read_csv(plots / "effects.csv", dtype={"song": str})
    assert len(effects) == 8 * 8 * 7 and list(effects.columns) == ["song", "emotion", "feature", "effect", "example"]
    pair = summary["pair"]
    assert set(effects.loc[effects["example"].notna(), "song"]) == {pair["a"], pair["b"]}
    weights = pd.read_csv(plots / "joint_weights.csv")
    assert len(weights) == 56 and list(weights.columns) == ["feature", "emotion", "weight"]
    corr = pd.read_csv(plots / "correlation.csv")
    assert len(corr) == 56 and corr["r"].between(-1, 1).all()
    table = pd.read_csv(plots / "song_pair.csv")
    assert list(table["emotion"]) == list(EMOTIONS)
    assert list(table.columns) == ["emotion", "predicted_a", "predicted_b", "annotated_a", "annotated_b"]
    report = (tmp_path / "reports/song_pair.md").read_text()
    assert f"#{pair['a']}" in report and "`words`" in report
    assert report.split("Per-feature effects")[0].count("\n|") == 10  # Table 4: header, rule, 8 emotions
    # the data CSV is consistent with the model's weights and its predictions of the pair
    model, _ = load_model(world / "models/joint/joint_seed_0.pt")
    weight, bias = fx.emotion_layer(model)
    song = effects[effects["song"] == pair["a"]]
    for emotion in ("valence", "tender"):
        total = song.loc[song["emotion"] == emotion, "effect"].sum() + bias[EMOTIONS.index(emotion)]
        assert total == pytest.approx(table.loc[table["emotion"] == emotion, "predicted_a"].item(), abs=1e-4)
    formula = run_stage(world, tmp_path / "formula", rule="formula")
    assert formula["pair"]["rule"] == "formula"
    assert formula["pair"]["score"] == pytest.approx(formula["pair"]["d_emotion"] + formula["pair"]["d_midlevel"] - 1)


SPREAD_COLUMNS = ["song", "emotion", "feature", "mean", "std", "min", "max", "sign_agreement"]


def run_effects(world, seed, songs):
    """(2, 8, 7): the songs' effects under run ``seed``'s Joint model, predicted as the stage predicts."""
    model, meta = load_model(world / f"models/joint/joint_seed_{seed}.pt")
    store = SpectrogramStore.open(world / "spectrograms/soundtracks")
    outputs = predict_checkpoint(model, meta, [store.clip(i) for i in songs])
    weight, bias = fx.emotion_layer(model)
    return fx.effects(weight, bias, outputs[:, :len(MIDLEVEL_FEATURES)])


def test_stage_shows_the_pair_effects_over_all_runs(world, tmp_path):
    summary = run_stage(world, tmp_path)
    songs = [summary["pair"]["a"], summary["pair"]["b"]]
    spread = pd.read_csv(tmp_path / "plots/song_pair_effects.csv", dtype={"song": str})
    assert list(spread.columns) == SPREAD_COLUMNS and list(spread["song"].unique()) == songs
    runs = np.stack([run_effects(world, seed, songs) for seed in SEEDS]).reshape(len(SEEDS), -1)
    assert not np.allclose(runs[0], runs[1])  # the runs' models differ, so there is a spread to show
    close = {"rtol": 1e-4, "atol": 1e-6}  # 6 significant digits in the CSV
    np.testing.assert_allclose(spread["mean"], runs.mean(axis=0), **close)
    np.testing.assert_allclose(spread["std"], np.std(runs, axis=0, ddof=1), **close)
    np.testing.assert_allclose(spread["min"], runs.min(axis=0), **close)
    np.testing.assert_allclose(spread["max"], runs.max(axis=0), **close)
    assert (spread["min"] <= spread["mean"]).all() and (spread["mean"] <= spread["max"]).all()
    agree = (np.sign(runs) == np.sign(runs.mean(axis=0))).mean(axis=0)
    np.testing.assert_allclose(spread["sign_agreement"], agree, atol=1e-6)
    assert is_png(tmp_path / "plots/song_pair_effects.png")
    report = (tmp_path / "reports/song_pair.md").read_text()
    assert "mean over the Joint models of 3 runs" in report and "smallest to the largest run's effect" in report
    assert report.count("of 3 |") == 8  # the sign agreement of the 8 largest mean effects
    # The pair and Figure 3 stay the first run's: the same as with that run alone.
    alone = run_stage(world, tmp_path / "alone", seeds=SEEDS[:1])
    assert alone["pair"] == summary["pair"]
    for name in ("effects.csv", "song_pair.csv"):
        assert (tmp_path / "plots" / name).read_bytes() == (tmp_path / "alone/plots" / name).read_bytes(), name


def test_stage_with_one_run_shows_its_effects_without_a_spread(world, tmp_path):
    summary = run_stage(world, tmp_path, seeds=SEEDS[:1])
    spread = pd.read_csv(tmp_path / "plots/song_pair_effects.csv", dtype={"song": str})
    assert list(spread.columns) == SPREAD_COLUMNS and spread["std"].isna().all()
    assert (spread["min"] == spread["mean"]).all() and (spread["max"] == spread["mean"]).all()
    assert (spread["sign_agreement"] == 1).all()
    first = pd.read_csv(tmp_path / "plots/effects.csv", dtype={"song": str})
    for song in (summary["pair"]["a"], summary["pair"]["b"]):  # the bars are the first run's effects
        np.testing.assert_array_equal(spread.loc[spread["song"] == song, "mean"],
                                      first.loc[first["song"] == song, "effect"])
    assert "1 run's Joint model" in (tmp_path / "reports/song_pair.md").read_text()


def test_stage_names_a_missing_run_checkpoint(world, tmp_path):
    models = tmp_path / "models"
    (models / "joint").mkdir(parents=True)
    shutil.copy(world / "models/joint/joint_seed_0.pt", models / "joint")
    with pytest.raises(CheckpointError, match=r"joint_seed_1\.pt: checkpoint not found.*runs\.seeds\[1\] = 1"):
        run_stage(world, tmp_path, models=models, seeds=(0, 1))
    assert not (tmp_path / "plots/song_pair_effects.csv").exists()  # checked before any model output


def test_stage_without_joint_model_writes_what_it_can(world, tmp_path):
    models = tmp_path / "models"
    (models / "joint").mkdir(parents=True)
    (models / "joint/NOT_RUN.md").write_text("# train_joint was not run\n\nNo mid-level annotations.\n")
    summary = run_stage(world, tmp_path, models=models)
    assert "correlation_heatmap.png" not in summary["not_run"] and "effects.png" in summary["not_run"]
    assert "No mid-level annotations" in summary["not_run"]["effects.png"]
    for name in stage.PLOT_OUTPUTS:
        assert (tmp_path / "plots" / name).is_file(), name
    assert pd.read_csv(tmp_path / "plots/effects.csv").empty
    spread = pd.read_csv(tmp_path / "plots/song_pair_effects.csv")
    assert spread.empty and list(spread.columns) == SPREAD_COLUMNS
    assert "not run" in (tmp_path / "reports/song_pair.md").read_text()
    with pytest.raises(CheckpointError, match="joint_seed_0.pt: checkpoint not found"):
        run_stage(world, tmp_path, models=tmp_path / "empty_models")


def test_stage_without_midlevel_annotations(tmp_path):
    write_raw(tmp_path / "raw", np.random.default_rng(0), with_midlevel=False)
    models = tmp_path / "models"
    (models / "joint").mkdir(parents=True)
    (models / "joint/NOT_RUN.md").write_text("# train_joint was not run\n\nNo annotations.\n")
    params = params_with({"runs.seeds": [0], "explain.pair_selection": "words"})
    summary = stage.explain_stage(tmp_path / "raw", tmp_path / "spectrograms", models, tmp_path / "plots",
                               tmp_path / "reports", params)
    assert set(summary["not_run"]) == set(stage.PLOT_OUTPUTS) | {"song_pair.md"}
    assert is_png(tmp_path / "plots/correlation_heatmap.png")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_stage_outputs_get_the_umask_permissions_and_no_temporary_files(world, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        run_stage(world, tmp_path)
    finally:
        os.umask(old)
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert sorted(p.name for p in written) == sorted(stage.PLOT_OUTPUTS + stage.REPORT_OUTPUTS)
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_stage_csv_text_cells_are_spreadsheet_safe(tmp_path):
    frame = stage.effects_frame(["=1+2", "7"], np.full((2, 7), -0.5), np.ones((8, 7)), np.zeros(8),
                                {"=1+2": "@A"})
    stage.write_csv(tmp_path / "e.csv", frame)
    back = pd.read_csv(tmp_path / "e.csv", dtype={"song": str})
    assert set(back["song"]) == {"'=1+2", "7"} and set(back["example"].dropna()) == {"'@A"}
    assert (back["effect"] == -0.5).all()  # numbers stay numbers


def test_explanation_holds_the_library_layer_only():
    """The song-level API imports neither the stage, the pair selection nor matplotlib."""
    import subprocess
    import sys

    code = ("import sys, midlevel_emotion.explanation.song as e; "
            "print(sorted(m for m in ('matplotlib', 'midlevel_emotion.explanation.explain_stage', "
            "'midlevel_emotion.explanation.pairs', 'midlevel_emotion.explanation.figures') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
