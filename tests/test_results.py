"""The one results shape: records per (model, seed, target), split ids, metrics derived from them."""

import json

import numpy as np
import pytest

from midlevel_emotion.core.constants import EMOTIONS, MIDLEVEL_FEATURES
from midlevel_emotion.experiments.results import RECORD_COLUMNS, read_results, score_records, split_records, write_stage
from midlevel_emotion.core.errors import ResultsError
from midlevel_emotion.learning.scores import pearson


def test_records_hold_r_mse_and_baseline_and_round_trip_with_their_metrics(tmp_path):
    rng = np.random.default_rng(0)
    names = MIDLEVEL_FEATURES + EMOTIONS
    y_train, y_test = rng.uniform(size=(20, 15)), rng.uniform(size=(6, 15))
    prediction = y_test + rng.normal(0, 0.1, size=y_test.shape)
    split = {"train": [f"{i:03d}" for i in range(20)], "validation": ["100", "101"], "test": [f"2{i:02d}" for i in range(6)]}
    recs = score_records("joint", 3, names, split, y_train=y_train, y_test=y_test, prediction=prediction,
                         best_epoch=4, epochs=6)
    assert [list(r) for r in recs] == [list(RECORD_COLUMNS)] * 15
    r = pearson(y_test, prediction)
    assert [rec["r"] for rec in recs] == [round(float(v), 4) for v in r]
    assert recs[0]["mse"] == pytest.approx(np.mean((prediction[:, 0] - y_test[:, 0]) ** 2))
    assert recs[0]["baseline_mse"] == pytest.approx(np.mean((y_train[:, 0].mean() - y_test[:, 0]) ** 2))
    assert (recs[0]["n_train"], recs[0]["n_validation"], recs[0]["n_test"]) == (20, 2, 6)
    splits = split_records("joint", 3, split, {"200": "9200"})
    metrics = write_stage(tmp_path / "results" / "joint", tmp_path / "metrics.json", recs, splits, {"excluded_clips": 2})
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    run = metrics["joint"]["seed_3"]
    # the group MSE is the MSE over the group's whole test matrix, as one computation gives it
    emo = slice(7, 15)
    assert run["emotions"]["mse"] == round(float(np.mean((prediction[:, emo] - y_test[:, emo]) ** 2)), 6)
    assert run["emotions"]["valence"] == round(float(r[7]), 4) and run["best_epoch"] == 4
    assert run["midlevel"]["mean"] == pytest.approx(np.mean([round(float(v), 4) for v in r[:7]]), abs=1e-4)
    assert metrics["excluded_clips"] == 2
    read = read_results(tmp_path / "results", ["joint"])
    assert read.scores["r"].tolist() == [rec["r"] for rec in recs]
    assert read.scores["mse"].to_numpy() == pytest.approx([rec["mse"] for rec in recs], rel=1e-9)
    assert read.scores["upstream"].tolist() == [""] * 15
    tested = read.splits[read.splits["part"] == "test"]
    assert tested["clip_id"].tolist() == split["test"] and tested["song_id"].tolist()[:2] == ["9200", ""]


def test_a_model_without_test_split_has_empty_scores(tmp_path):
    recs = score_records("a2mid_for_a2mid2e", 0, MIDLEVEL_FEATURES, {"train": ["1", "2"], "validation": ["3"]},
                         y_train=np.ones((2, 7)), y_test=None, prediction=None, best_epoch=1, epochs=2)
    metrics = write_stage(tmp_path / "a2mid", tmp_path / "a2mid.json", recs,
                          split_records("a2mid_for_a2mid2e", 0, {"train": ["1", "2"], "validation": ["3"]}))
    run = metrics["a2mid_for_a2mid2e"]["seed_0"]
    assert run["n_test"] == 0 and run["midlevel"]["mean"] is None and run["midlevel"]["mse"] is None
    assert read_results(tmp_path, ["a2mid"]).scores["r"].isna().all()


def test_missing_or_malformed_tables_are_one_line_errors(tmp_path):
    with pytest.raises(ResultsError, match=r"a2e/scores\.csv: not found"):
        read_results(tmp_path, ["a2e"])
    (tmp_path / "a2e").mkdir()
    (tmp_path / "a2e" / "scores.csv").write_text(",".join(RECORD_COLUMNS) + "\na2e,0,valence,other,0.5,,,1,1,1,,,\n")
    (tmp_path / "a2e" / "splits.csv").write_text("model,seed,part,clip_id,song_id\n")
    with pytest.raises(ResultsError, match=r"scores\.csv: unknown group\(s\) \['other'\]"):
        read_results(tmp_path, ["a2e"])
