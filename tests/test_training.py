"""Training loop, crops, checkpoints and the protocol's splits."""

import dataclasses

import numpy as np
import pytest
import torch

from midlevel_emotion.core.constants import EMOTIONS, MIDLEVEL_FEATURES
from midlevel_emotion.data.splits import artist_disjoint_split, holdout, random_split
from midlevel_emotion.learning.scores import fit_linear, pearson
from midlevel_emotion.learning.checkpoints import load_checkpoint, save_checkpoint
from midlevel_emotion.core.errors import CheckpointError
from midlevel_emotion.learning.inference import crop, predict, window_starts
from midlevel_emotion.learning.adaptations import init_output_layers, recalibrate_batchnorm, recenter_output_bias
from midlevel_emotion.learning.clips import ClipSet
from midlevel_emotion.learning.training import train

from configs import train_config

import pandas as pd


def test_crop_loop_pads_short_clips_and_windows_cover_the_clip():
    spec = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    assert np.array_equal(crop(spec, 4, 3), spec[3:7])
    padded = crop(spec, 25, 0)
    assert padded.shape == (25, 2) and np.array_equal(padded[10:20], spec) and np.array_equal(padded[20:], spec[:5])
    assert list(window_starts(100, 30, 30)) == [0, 30, 60, 70]
    assert list(window_starts(20, 30, 10)) == [0]


def test_pearson_matches_numpy_and_flags_constant_columns():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    b[:, 0] += a[:, 0]
    r = pearson(a, b)
    assert r[0] == pytest.approx(np.corrcoef(a[:, 0], b[:, 0])[0, 1])
    b[:, 2] = 1.0
    assert np.isnan(pearson(a, b)[2])


def test_fit_linear_recovers_a_planted_map():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(200, 7))
    w, bias = rng.normal(size=(8, 7)), rng.normal(size=8)
    weight, b = fit_linear(x, x @ w.T + bias)
    assert np.allclose(weight, w) and np.allclose(b, bias)


def test_splits_are_disjoint_deterministic_and_artist_disjoint():
    ids = [f"{i:03d}" for i in range(1, 101)]
    split = random_split(ids, seed=3, test_fraction=0.2, validation_fraction=0.15)
    parts = [set(split.train), set(split.validation), set(split.test)]
    assert len(split.test) == 20 and len(split.validation) == 12 and len(split.train) == 68
    assert set().union(*parts) == set(ids) and sum(map(len, parts)) == 100
    assert split == random_split(ids, seed=3, test_fraction=0.2, validation_fraction=0.15)
    assert split.test != random_split(ids, seed=4, test_fraction=0.2, validation_fraction=0.15).test
    meta = pd.DataFrame({"artist": ["A", "A", "B", "C", "C", "D", "E", "F", "F", "G"] * 1},
                        index=[str(i) for i in range(10)])
    train_ids, test_ids = artist_disjoint_split(meta, list(meta.index), test_fraction=0.3, seed=0)
    assert len(test_ids) == 3
    assert not set(meta.loc[train_ids, "artist"]) & set(meta.loc[test_ids, "artist"])
    with pytest.raises(ValueError, match="too few"):
        holdout(["1", "2"], fraction=0.5, seed=0)


def toy_clip_set(n=12, frames=80, seed=0, kind="a2mid"):
    """Spectrogram level encodes the target, so a model can learn it in a few steps."""
    rng = np.random.default_rng(seed)
    n_out = {"a2mid": 7, "a2e": 8, "joint": 15}[kind]
    targets = rng.uniform(size=(n, n_out)).astype(np.float32)
    specs = [rng.normal(size=(frames + 7 * i, 149)).astype(np.float32) + targets[i, 0] for i in range(n)]
    return ClipSet([str(i) for i in range(n)], specs, targets)


SMALL = train_config(crop_seconds=1.0, eval_hop_seconds=1.0, max_epochs=2, patience=5, batch_size=4)


def test_fixed_seed_on_cpu_gives_identical_runs():
    torch.set_num_threads(1)
    results = [train("joint", toy_clip_set(kind="joint"), toy_clip_set(6, seed=1, kind="joint"), mean=0.0, std=1.0,
                     config=SMALL, seed=7, progress=False) for _ in range(2)]
    assert results[0].history == results[1].history
    for p, q in zip(results[0].model.parameters(), results[1].model.parameters()):
        assert torch.equal(p, q)
    other = train("joint", toy_clip_set(kind="joint"), toy_clip_set(6, seed=1, kind="joint"), mean=0.0, std=1.0,
                  config=SMALL, seed=8, progress=False)
    assert other.history != results[0].history


def test_early_stopping_keeps_best_epoch():
    config = train_config(crop_seconds=1.0, eval_hop_seconds=1.0, max_epochs=6, patience=1, batch_size=4)
    result = train("a2mid", toy_clip_set(), toy_clip_set(6, seed=1), mean=0.0, std=1.0, config=config, seed=0,
                   progress=False)
    rs = [h["val_mean_r"] for h in result.history]
    assert result.best_epoch == int(np.argmax(rs)) + 1
    assert len(result.history) <= result.best_epoch + 1  # stopped one epoch after no improvement


def test_checkpoint_round_trip_and_errors(tmp_path):
    result = train("joint", toy_clip_set(kind="joint"), toy_clip_set(6, seed=1, kind="joint"), mean=0.5, std=2.0,
                   config=SMALL, seed=0, progress=False)
    path = tmp_path / "joint.pt"
    spec = {"sample_rate": 22050, "fps": 31.25, "mean": 0.5, "std": 2.0}
    save_checkpoint(path, result.model, kind="joint", config=SMALL, spectrogram=spec, corpus="synthetic",
                    seed=0, params_digest="abc", test_pearson={"valence": 0.5})
    assert [p.name for p in tmp_path.iterdir()] == ["joint.pt"]  # written through a temporary file, renamed
    model, meta = load_checkpoint(path)
    assert meta["kind"] == "joint" and meta["corpus"] == "synthetic" and meta["input"]["crop_frames"] == 32
    assert meta["midlevel_features"] == list(MIDLEVEL_FEATURES) and meta["emotions"] == list(EMOTIONS)
    clips = toy_clip_set(3, seed=5, kind="joint").spectrograms
    kwargs = dict(mean=0.5, std=2.0, crop_frames=32, hop_frames=32)
    assert np.allclose(predict(model, clips, **kwargs), predict(result.model, clips, **kwargs), atol=1e-6)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    assert meta["version"] == 2 and meta["architecture"]["width"] == SMALL.width
    # a version-1 file (before train.width) has no width: it is a Figure 2 network and loads as one
    wide = dataclasses.replace(SMALL, width=1.0)
    from midlevel_emotion.learning.models import build_model
    save_checkpoint(path, build_model("joint").eval(), kind="joint", config=wide, spectrogram=spec,
                    corpus="synthetic", seed=0, params_digest="abc")
    old = torch.load(path, weights_only=True)
    old["version"] = 1
    del old["architecture"]["width"]
    torch.save(old, tmp_path / "v1.pt")
    model_v1, meta_v1 = load_checkpoint(tmp_path / "v1.pt")
    assert model_v1.trunk.out_features == 256 and "width" not in meta_v1["architecture"]
    torch.save({"format": "midlevel-emotion-checkpoint", "version": 99}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="version 99 is not supported"):
        load_checkpoint(tmp_path / "new.pt")


def test_the_same_weights_give_the_same_checkpoint_bytes(tmp_path, monkeypatch):
    from midlevel_emotion.learning.models import build_model

    model = build_model("a2e", width=SMALL.width).eval()
    spec = {"sample_rate": 22050, "fps": 31.25, "mean": 0.5, "std": 2.0}
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    for name in ("one.pt", "two.pt"):  # other names, other temporary files: the same bytes
        save_checkpoint(tmp_path / name, model, kind="a2e", config=SMALL, spectrogram=spec, corpus="synthetic",
                        seed=0, params_digest="abc")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two.pt").read_bytes()
    assert load_checkpoint(tmp_path / "one.pt")[1]["trained_at"] == "2023-11-14T22:13:20+00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH must be a whole number"):
        save_checkpoint(tmp_path / "three.pt", model, kind="a2e", config=SMALL, spectrogram=spec,
                        corpus="synthetic", seed=0, params_digest="abc")
    assert not (tmp_path / "three.pt").exists()


def test_clip_set_rejects_nan_targets():
    with pytest.raises(ValueError, match="NaN"):
        ClipSet(["a"], [np.zeros((10, 149))], np.array([[np.nan]]))


def test_recalibrated_batchnorm_holds_the_statistics_of_inference():
    from midlevel_emotion.learning.models import build_model
    torch.manual_seed(0)
    model = build_model("a2e", dropout=0.5)
    clips = toy_clip_set(10, frames=40).spectrograms
    bn = model.trunk.features[1]
    bn.running_mean.fill_(5.0)  # stale statistics, as if gathered under other conditions
    bn.running_var.fill_(9.0)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    recalibrate_batchnorm(model, clips, mean=0.0, std=1.0, crop_frames=32, batch_size=4)

    # The first BatchNorm's statistics are now those of the first conv's outputs on the crops used
    x = torch.from_numpy(np.stack([crop(c, 32, (c.shape[0] - 32) // 2) for c in clips])).unsqueeze(1)
    conv_out = model.trunk.features[0](x)
    per_batch = [conv_out[b:b + 4] for b in range(0, 10, 4)]  # cumulative average over batches of 4
    expected_mean = torch.stack([c.mean(dim=(0, 2, 3)) for c in per_batch]).mean(0)
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-5)
    # Only the statistics changed; the model is left in inference mode with its momentum back
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert not model.training and bn.momentum == 0.1
    # Dropout was off: recalibrating again gives the same statistics exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate_batchnorm(model, clips, mean=0.0, std=1.0, crop_frames=32, batch_size=4)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(ValueError, match="at least one clip"):
        recalibrate_batchnorm(model, [], mean=0.0, std=1.0, crop_frames=32)


@pytest.mark.parametrize("kind", ["a2mid", "a2e", "joint"])
def test_output_init_train_mean_makes_the_untrained_model_predict_the_train_mean(kind):
    from midlevel_emotion.learning.models import build_model
    torch.manual_seed(0)
    model = build_model(kind)
    clips = toy_clip_set(10, frames=40, kind=kind)
    clips.targets[:] += 3.0  # far from the zero a fresh model predicts around
    weights_before = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("weight")}
    init_output_layers(model, clips, "train_mean", mean=0.0, std=1.0, crop_frames=32)
    x = torch.from_numpy(np.stack([crop(c, 32, (c.shape[0] - 32) // 2) for c in clips.spectrograms])).unsqueeze(1)
    with torch.no_grad():
        out = model(x)
    out = (torch.cat(out, dim=1) if isinstance(out, tuple) else out).numpy()
    assert np.allclose(out.mean(0), clips.targets.mean(0), atol=1e-4)
    assert out[:, 0].std() > 0  # the Kaiming-normal weights are kept: predictions still vary by clip
    if kind == "joint":  # the 7->8 layer starts at the train split's Mid2E least-squares fit
        weight, bias = fit_linear(clips.targets[:, :7], clips.targets[:, 7:])
        assert np.allclose(model.emotion_layer.weight.detach().numpy(), weight, atol=1e-5)
        assert np.allclose(model.emotion_layer.bias.detach().numpy(), bias, atol=1e-5)
    else:
        assert all(torch.equal(model.state_dict()[k], v) for k, v in weights_before.items())


def test_output_init_kaiming_keeps_the_papers_initialisation_and_bad_values_fail():
    from midlevel_emotion.learning.models import build_model
    torch.manual_seed(0)
    model = build_model("joint")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clips = toy_clip_set(10, frames=40, kind="joint")
    init_output_layers(model, clips, "kaiming", mean=0.0, std=1.0, crop_frames=32)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert model.emotion_layer.weight.std() > 0.2  # Kaiming-normal for 7 inputs: std ~0.53
    with pytest.raises(ValueError, match="output_init"):
        train("joint", clips, clips, mean=0.0, std=1.0, config=train_config(output_init="median"), seed=0,
              progress=False)


def test_validation_scores_a_copy_with_precise_batchnorm_statistics():
    from midlevel_emotion.learning.training import inference_model
    torch.manual_seed(0)
    from midlevel_emotion.learning.models import build_model
    model = build_model("a2mid")
    clips = toy_clip_set(8, frames=40)
    config = train_config(crop_seconds=1.0, precise_bn=True)
    bn = model.trunk.features[1]
    running_before = bn.running_mean.clone()
    scored = inference_model(model, clips, config, mean=0.0, std=1.0, device="cpu")
    # The training model keeps its running averages; the scored copy has re-estimated ones
    assert scored is not model and torch.equal(bn.running_mean, running_before)
    assert not torch.allclose(scored.trunk.features[1].running_mean, running_before)
    assert inference_model(model, clips, train_config(crop_seconds=1.0, precise_bn=False), mean=0.0, std=1.0,
                            device="cpu") is model


@pytest.mark.parametrize("kind", ["a2e", "joint"])
def test_recenter_output_bias_moves_the_mean_prediction_onto_the_train_mean_and_keeps_r(kind):
    from midlevel_emotion.learning.models import build_model
    torch.manual_seed(0)
    model = build_model(kind).eval()
    clips = toy_clip_set(10, frames=40, kind=kind)
    clips.targets[:] += 2.0  # far from where the untrained model predicts
    kw = dict(mean=0.0, std=1.0, crop_frames=32, hop_frames=8)
    before = predict(model, clips.spectrograms, **kw)
    weight = model.emotion_layer.weight.detach().clone() if kind == "joint" else None
    shift = recenter_output_bias(model, clips, **kw)
    after = predict(model, clips.spectrograms, **kw)
    assert np.allclose(after.mean(0), clips.targets.mean(0), atol=1e-4)
    assert np.allclose(after - before, shift, atol=1e-4)  # one constant per output
    assert np.allclose(pearson(clips.targets, after), pearson(clips.targets, before), atol=1e-5)
    if kind == "joint":  # only biases move; emotions stay the same linear map of the mid-level outputs
        assert torch.equal(model.emotion_layer.weight, weight)
        mid, emo = after[:, :7], after[:, 7:]
        expected = mid @ weight.numpy().T + model.emotion_layer.bias.detach().numpy()
        assert np.allclose(emo, expected, atol=1e-4)


# ---------------------------------------------------------------------------------------
# Config from params.yaml only; params hash; curves through DVCLive

import hashlib
import json

import yaml

from midlevel_emotion.core.config import Params
from midlevel_emotion.core.params import load_params
from midlevel_emotion.core.errors import ParamsError
from midlevel_emotion.learning.checkpoints import params_hash
from midlevel_emotion.learning.training import TRAIN_KEYS, TrainConfig

from configs import PARAMS


def test_train_config_has_no_defaults_and_comes_from_params_only():
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(TrainConfig))
    with pytest.raises(TypeError):
        TrainConfig()
    raw = yaml.safe_load(PARAMS.read_text())
    for key in TRAIN_KEYS:  # every train key reaches the config, none is shadowed
        value = raw["train"][key]
        raw["train"][key] = 0.25 if isinstance(value, float) else value
    raw["train"]["max_epochs"], raw["spectrogram"]["fps"] = 77, 20.0
    raw["train_joint"]["midlevel_loss_weight"] = 2.5
    params = Params.from_mapping(raw)
    a2e, joint = TrainConfig.from_params(params, "a2e"), TrainConfig.from_params(params, "joint")
    assert all(getattr(joint, key) == raw["train"][key] for key in TRAIN_KEYS)
    assert joint.max_epochs == 77 and joint.fps == 20.0 and joint.midlevel_loss_weight == 2.5
    assert a2e.midlevel_loss_weight is None and dataclasses.replace(a2e, midlevel_loss_weight=2.5) == joint
    del raw["train"]["patience"]
    with pytest.raises(ParamsError, match=r"params.yaml: missing key 'train.patience'"):
        TrainConfig.from_params(Params.from_mapping(raw), "a2e")
    a2e_config = dataclasses.replace(SMALL, midlevel_loss_weight=None)
    with pytest.raises(ValueError, match="midlevel_loss_weight"):
        train("joint", toy_clip_set(kind="joint"), toy_clip_set(6, seed=1, kind="joint"), mean=0.0, std=1.0,
              config=a2e_config, seed=0, progress=False)


def test_params_hash_names_the_whole_params_content_not_the_file(tmp_path):
    params = load_params(PARAMS)
    copy = tmp_path / "elsewhere.yaml"  # same content, other place and key order
    raw = yaml.safe_load(PARAMS.read_text())
    copy.write_text(yaml.safe_dump(dict(reversed(list(raw.items()))), sort_keys=False))
    moved = load_params(copy)
    assert moved.path != params.path and params_hash(moved) == params_hash(params)
    for key, value in (("train.learning_rate", 0.001), ("explain.pair_selection", "formula"), ("synthetic.seed", 1)):
        changed = load_params(PARAMS).changed({key: value})
        assert params_hash(changed) != params_hash(params), key
    # the digest is the one checkpoints always recorded: the file's mapping as YAML loaded it
    blob = json.dumps(raw, sort_keys=True, default=str)
    assert params_hash(params) == hashlib.sha256(blob.encode()).hexdigest()[:12]


def test_on_epoch_sees_each_history_row_and_leaves_training_unchanged():
    rows = []
    kwargs = dict(mean=0.0, std=1.0, config=SMALL, seed=3, progress=False)
    logged = train("a2mid", toy_clip_set(), toy_clip_set(6, seed=1), on_epoch=rows.append, **kwargs)
    plain = train("a2mid", toy_clip_set(), toy_clip_set(6, seed=1), **kwargs)
    assert rows == logged.history == plain.history and [r["epoch"] for r in rows] == [1, 2]
    assert all(torch.equal(p, q) for p, q in zip(logged.model.state_dict().values(), plain.model.state_dict().values()))


def read_tsv(path):
    lines = path.read_text().splitlines()
    return lines[0].split("\t"), [[float(v) for v in line.split("\t")] for line in lines[1:]]


def test_training_curves_log_one_dvclive_step_per_epoch_per_model(tmp_path):
    from midlevel_emotion.experiments.protocol import log_epochs, training_curves
    plots = tmp_path / "plots/training/a2e"
    (plots / "plots/metrics/a2e_seed_9").mkdir(parents=True)  # a stale model from an earlier run
    curves = training_curves(plots)
    histories = {}
    for model, seed in (("a2e_seed_0", 0), ("a2e_seed_1", 1)):
        result = train("a2e", toy_clip_set(kind="a2e"), toy_clip_set(6, seed=1, kind="a2e"), mean=0.0, std=1.0,
                       config=SMALL, seed=seed, progress=False, on_epoch=log_epochs(curves, model))
        histories[model] = result.history
    curves.end()
    assert sorted(p.name for p in (plots / "plots/metrics").iterdir()) == ["a2e_seed_0", "a2e_seed_1"]
    for model, history in histories.items():
        for curve in ("train_loss", "val_loss", "val_mean_r"):
            header, rows = read_tsv(plots / f"plots/metrics/{model}/{curve}.tsv")
            assert header == ["step", curve]
            assert rows == [[h["epoch"], h[curve]] for h in history]  # step = epoch; values exactly
    summary = json.loads((plots / "metrics.json").read_text())
    assert summary["a2e_seed_1"]["val_mean_r"] == histories["a2e_seed_1"][-1]["val_mean_r"]
    assert not (plots / "dvc.yaml").exists() and not list(plots.glob("report.*"))  # dvc.yaml declares them


def test_dvc_yaml_declares_the_curves_and_summary_of_each_training_stage_not_its_folder():
    stages = yaml.safe_load((PARAMS.parent / "dvc.yaml").read_text())["stages"]
    for name in ("train_a2mid", "train_a2e", "train_joint"):
        stage = stages[name]
        cmd = stage["cmd"].split()
        log_dir = cmd[cmd.index("--plots") + 1]
        plots = {next(iter(p)) if isinstance(p, dict) else p: p for p in stage["plots"]}
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
        assert list(plots) == [f"{log_dir}/plots/metrics"], name
        assert plots[f"{log_dir}/plots/metrics"][f"{log_dir}/plots/metrics"]["x"] == "step"
        assert f"{log_dir}/metrics.json" in outs and log_dir not in outs, name
        metrics = [next(iter(m)) for m in stage.get("metrics", [])]
        assert f"{log_dir}/metrics.json" not in metrics  # per-run summaries stay out of `dvc metrics diff`


def test_a_stage_that_did_not_run_leaves_its_declared_curve_outputs(tmp_path):
    from midlevel_emotion.experiments.protocol import write_not_run
    plots = tmp_path / "plots/training/joint"
    metrics = write_not_run(tmp_path / "models", tmp_path / "results", tmp_path / "joint.json", "train_joint",
                            "no annotations", plots)
    assert metrics == {"status": "not run", "reason": "no annotations"}
    assert json.loads((plots / "metrics.json").read_text()) == {}
    assert (plots / "plots/metrics").is_dir() and not any((plots / "plots/metrics").iterdir())
    assert "no annotations" in (tmp_path / "models/NOT_RUN.md").read_text()
    assert "no annotations" in (tmp_path / "results/NOT_RUN.md").read_text()
