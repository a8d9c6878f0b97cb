"""Explanations by several runs: mean effects with their spread, and each feature's reliability."""

import csv
import io
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from midlevel_emotion.cli import main
import midlevel_emotion.explanation.clip as clip_module
from midlevel_emotion.explanation.clip import prepare_clip
from midlevel_emotion.explanation.network import DEFAULT_CHECKPOINT, load_model
from midlevel_emotion.explanation.song import compare, explain
from midlevel_emotion.learning.checkpoints import save_checkpoint
from midlevel_emotion.core.errors import CheckpointError
from midlevel_emotion.core.constants import EMOTIONS, MIDLEVEL_FEATURES, SpectrogramSettings
from midlevel_emotion.explanation.ensemble import checkpoint_paths, combine, load_models
from midlevel_emotion.explanation.batch import explain_many
from midlevel_emotion.learning.models import build_model
from test_explanation import CONFIG, tone

#: Each run's recorded test r per feature: rhythm_stability and minorness below the default 0.3
#: in every run (means 0.15 and 0.05), articulation just above it on average (0.35).
RUN_R = [{**{f: 0.8 for f in MIDLEVEL_FEATURES}, "rhythm_stability": 0.1, "minorness": 0.0, "articulation": 0.3},
         {**{f: 0.7 for f in MIDLEVEL_FEATURES}, "rhythm_stability": 0.2, "minorness": 0.1, "articulation": 0.4},
         {**{f: 0.9 for f in MIDLEVEL_FEATURES}, "rhythm_stability": 0.15, "minorness": 0.05, "articulation": 0.35}]


def save_run(path, seed, corpus="synthetic"):
    """A Joint checkpoint whose weights come from ``seed`` (untrained: the test is about combining)."""
    torch.manual_seed(seed)
    model = build_model("joint", width=CONFIG.width).eval()
    spectrogram = {**SpectrogramSettings().as_dict(), "mean": 0.5, "std": 0.3}
    save_checkpoint(path, model, kind="joint", config=CONFIG, spectrogram=spectrogram, corpus=corpus, seed=seed,
                    params_digest="abc123", test_pearson={**RUN_R[seed % 3], "valence": 0.4})
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """models/joint/ with three runs (seeds 0, 1, 2), one more named seed 10, and a stray file."""
    root = tmp_path_factory.mktemp("project")
    folder = root / "models" / "joint"
    folder.mkdir(parents=True)
    paths = [save_run(folder / f"joint_seed_{s}.pt", s) for s in (0, 1, 2)]
    return root, folder, paths


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "song.wav"
    sf.write(path, tone(4.0), 44100)
    return path


def alone(song, paths):
    return [explain(song, load_model(p)) for p in paths]


def test_the_ensemble_is_the_mean_of_its_runs_and_its_effects_add_up_to_its_prediction(runs, song):
    _, _, paths = runs
    (outcome,) = explain_many([song], load_models(paths))
    exp, singles = outcome.explanation, alone(song, paths)
    assert exp.n_runs == 3 and len(exp.runs) == 3
    for e in EMOTIONS:
        assert sum(exp.effects[e].values()) + exp.bias[e] == pytest.approx(exp.emotions[e], abs=1e-9)
        assert exp.emotions[e] == pytest.approx(np.mean([s.emotions[e] for s in singles]), rel=1e-5, abs=1e-6)
        for f in MIDLEVEL_FEATURES:
            per_run = np.array([s.effects[e][f] for s in singles])
            cell = exp.spread[e][f]
            assert exp.effects[e][f] == pytest.approx(per_run.mean(), rel=1e-5, abs=1e-6)
            assert cell["std"] == pytest.approx(per_run.std(ddof=1), rel=1e-4, abs=1e-6)
            assert (cell["min"], cell["max"]) == pytest.approx((per_run.min(), per_run.max()), rel=1e-5, abs=1e-6)
            assert cell["sign_agreement"] == np.mean(np.sign(per_run) == np.sign(per_run.mean()))
    assert exp.checkpoint["paths"] == [str(p) for p in paths] and exp.checkpoint["seeds"] == [0, 1, 2]


def test_runs_disagree_somewhere_and_identical_runs_do_not(runs, song, tmp_path):
    _, _, paths = runs
    (outcome,) = explain_many([song], load_models(paths))
    agreement = [outcome.explanation.spread[e][f]["sign_agreement"] for e in EMOTIONS for f in MIDLEVEL_FEATURES]
    assert min(agreement) < 1  # three differently seeded networks: some effect flips sign
    copies = [shutil.copy(paths[0], tmp_path / f"copy_{i}.pt") for i in range(3)]
    (same,) = explain_many([song], load_models(copies))
    for e in EMOTIONS:
        for f in MIDLEVEL_FEATURES:
            assert same.explanation.spread[e][f]["std"] == pytest.approx(0, abs=1e-12)
            assert same.explanation.spread[e][f]["sign_agreement"] == 1


def test_one_checkpoint_gives_exactly_todays_numbers(runs, song):
    _, _, paths = runs
    model = load_model(paths[0])
    (outcome,) = explain_many([song], [model])
    today = explain(song, model)
    assert outcome.explanation.to_dict() == today.to_dict()
    data = today.to_dict()
    assert data["n_runs"] == 1 and "spread" not in data and "runs" not in data
    assert combine([today]) is today


def test_each_file_is_decoded_once_for_all_runs(runs, song, monkeypatch):
    _, _, paths = runs
    calls = []
    real = prepare_clip
    monkeypatch.setattr(clip_module, "prepare_clip", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    list(explain_many([song, song], load_models(paths)))
    assert calls == [song, song]


def test_a_feature_below_the_threshold_is_unreliable(runs, song):
    _, _, paths = runs
    (outcome,) = explain_many([song], load_models(paths))
    exp = outcome.explanation
    assert exp.reliability["minorness"] == pytest.approx(0.05) and exp.reliability["melodiousness"] == pytest.approx(0.8)
    assert exp.unreliable == ["rhythm_stability", "minorness"]  # articulation's mean 0.35 clears 0.3
    (strict,) = explain_many([song], load_models(paths), min_feature_r=0.5)
    assert strict.explanation.unreliable == ["articulation", "rhythm_stability", "minorness"]
    single = explain(song, load_model(paths[0]))  # run 0 alone: articulation 0.3 is not below 0.3
    assert single.unreliable == ["rhythm_stability", "minorness"]
    reliability = exp.to_dict()["reliability"]
    assert reliability["unreliable"] == ["rhythm_stability", "minorness"] and reliability["min_feature_r"] == 0.3
    assert all(str(p) in reliability["source"] for p in paths) and "test split" in reliability["source"]
    with pytest.raises(ValueError, match="min_feature_r"):
        list(explain_many([song], load_models(paths), min_feature_r=2))


def test_runs_that_hear_another_input_or_come_from_another_corpus_are_refused(runs, tmp_path):
    _, _, paths = runs
    other = save_run(tmp_path / "real.pt", 1, corpus="soundtracks")
    with pytest.raises(CheckpointError, match=r"real\.pt: its corpus differ"):
        load_models([paths[0], other])


def test_folders_expand_by_seed_and_the_default_is_every_joint_run(runs, tmp_path, monkeypatch):
    root, folder, paths = runs
    later = save_run(tmp_path / "joint_seed_10.pt", 10)
    shutil.copy(later, folder.parent / "joint_seed_10.pt")
    assert checkpoint_paths([folder.parent]) == [folder.parent / "joint_seed_10.pt"]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for p in (*paths, later):
        shutil.copy(p, mixed / p.name)
    assert [p.name for p in checkpoint_paths([mixed])] == [f"joint_seed_{s}.pt" for s in (0, 1, 2, 10)]
    assert checkpoint_paths([paths[1], paths[1]]) == [paths[1]]  # one file named twice is one run
    monkeypatch.chdir(root)
    assert [str(p) for p in checkpoint_paths([])] == [f"models/joint/joint_seed_{s}.pt" for s in (0, 1, 2)]
    monkeypatch.chdir(tmp_path)
    assert [str(p) for p in checkpoint_paths([])] == [str(DEFAULT_CHECKPOINT)]  # none: its absence is reported
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: no checkpoint \(\*\.pt\) in this folder"):
        checkpoint_paths([tmp_path / "empty"])


def test_compare_with_an_ensemble_gives_each_difference_its_spread(runs, song, tmp_path):
    _, _, paths = runs
    other = tmp_path / "other.wav"
    sf.write(other, tone(2.0, seed=5), 44100)
    a, b = (o.explanation for o in explain_many([song, other], load_models(paths)))
    result = compare(a, b)
    for e in EMOTIONS:
        entry = result["emotions"][e]
        assert sum(r["difference"] for r in entry["features"]) + entry["bias_difference"] == pytest.approx(
            entry["difference"], abs=1e-9)
        for row in entry["features"]:
            per_run = [ra["effects"][e][row["feature"]] - rb["effects"][e][row["feature"]]
                       for ra, rb in zip(a.runs, b.runs)]
            assert row["spread"]["min"] == min(per_run) and row["spread"]["max"] == max(per_run)
            assert row["unreliable"] == (row["feature"] in ("rhythm_stability", "minorness"))


# ---------------------------------------------------------------------------------------
# The command line: every output format shows the runs and marks the unreliable features


def run_cli(capsys, *args):
    code = main.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_with_the_default_checkpoints_explains_with_every_run(runs, song, capsys, monkeypatch):
    root, _, _ = runs
    monkeypatch.chdir(root)
    code, out, err = run_cli(capsys, "explain", song)
    assert code == 0, err
    assert "the mean of 3 runs (seeds 0, 1, 2)" in out and "Spread of each effect between the 3 runs" in out
    rows = {}
    for line in out.splitlines():  # the effects table's rows: the first line that starts with each feature
        if line.split()[:1] and line.split()[0] in MIDLEVEL_FEATURES:
            rows.setdefault(line.split()[0], line)
    assert rows["minorness"].endswith("*") and rows["rhythm_stability"].endswith("*")
    assert not rows["melodiousness"].endswith("*")
    code, out, err = run_cli(capsys, "explain", song, "--json", "--min-feature-r", "0.9")
    data = json.loads(out)
    assert data["n_runs"] == 3 and set(data["spread"]) == set(EMOTIONS)
    assert data["reliability"]["unreliable"] == list(MIDLEVEL_FEATURES)  # every mean r is below 0.9


def test_batch_csv_and_plot_mark_the_unreliable_features(runs, song, capsys, tmp_path):
    _, folder, _ = runs
    code, out, err = run_cli(capsys, "explain", song, song.parent, "--csv", "-", "-c", folder, "--no-progress")
    assert code == 0, err
    row = next(csv.DictReader(io.StringIO(out)))
    assert row["n_runs"] == "3" and row["unreliable"] == "rhythm_stability;minorness"
    assert float(row["r_minorness"]) == pytest.approx(0.05)
    plots = {}
    for threshold in ("0.3", "-1"):
        plots[threshold] = tmp_path / f"effects_{threshold}.png"
        assert run_cli(capsys, "explain", song, "-c", folder, "--hop", "10", "--plot", plots[threshold],
                       "--min-feature-r", threshold)[0] == 0
    assert plots["0.3"].read_bytes() != plots["-1"].read_bytes()  # hatched bars and starred labels


def test_compare_names_unreliable_drivers_with_a_star(runs, song, capsys, tmp_path):
    _, folder, _ = runs
    other = tmp_path / "b.wav"
    sf.write(other, tone(2.0, seed=5), 44100)
    code, out, err = run_cli(capsys, "compare", song, other, "-c", folder, "--top", "7")
    assert code == 0, err
    assert "minorness*" in out and "melodiousness*" not in out and "the mean of 3 runs" in out
