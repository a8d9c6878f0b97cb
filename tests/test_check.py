"""The verdicts of `midlevel-emotion check`: bands against the paper, the embedded run's
expectations, and a noise-aware comparison of two revisions run by run."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from midlevel_emotion.evaluation.check import (check_against_revision, check_embedded, check_paper, compare_row, paper_band,
                                    read_json)
from midlevel_emotion.core.errors import CheckError
from test_evaluation import designed_values, write_fixture

ROOT = Path(__file__).resolve().parents[1]
RULES = read_json(ROOT / "reference" / "checks.json")
REFERENCE = read_json(ROOT / "reference" / "paper.json")
SEEDS = pd.Index([0, 1, 2])


def series(values):
    return pd.Series(np.asarray(values, float), index=SEEDS[:len(values)])


def test_identical_runs_are_identical_and_float_drift_is_no_change():
    old = series([0.63, 0.70, 0.74])
    assert compare_row(old, old.copy(), alpha=0.05, min_effect=0.02)["rule"] == "identical"
    drift = compare_row(old, old + [0.012, -0.009, 0.004], alpha=0.05, min_effect=0.02)
    assert not drift["changed"] and abs(drift["delta"]) < 0.01


def test_a_consistent_drop_is_a_change_and_a_noisy_one_is_not():
    old = series([0.63, 0.70, 0.74])
    drop = compare_row(old, old - [0.10, 0.12, 0.11], alpha=0.05, min_effect=0.02)
    assert drop["changed"] and drop["delta"] == pytest.approx(-0.11) and drop["p"] < 0.05
    noisy = compare_row(old, old + [-0.15, 0.12, 0.01], alpha=0.05, min_effect=0.02)
    assert not noisy["changed"]  # runs disagree on the direction: not beyond the noise
    tiny = compare_row(old, old - 0.005, alpha=0.05, min_effect=0.02)
    assert not tiny["changed"] and tiny["p"] == 0.0  # exact, but smaller than min_effect
    one = compare_row(series([0.6]), series([0.5]), alpha=0.05, min_effect=0.02)
    assert one["changed"] and one["p"] is None and "one run" in one["rule"]


def test_the_paper_band_spans_the_printed_value_and_the_labs_rerun():
    rule = RULES["paper"]["rows"]["a2e.r_avg.mean"]
    low, high, source = paper_band(rule, REFERENCE, RULES["paper"]["tolerance"])
    assert (low, high) == pytest.approx((0.73 - 0.04, 0.76 + 0.04))
    assert "lab re-run 0.73" in source
    plus = paper_band(RULES["paper"]["rows"]["a2mid_plus.r_avg"], REFERENCE, 0.04)
    printed = REFERENCE["table3"]["a2mid_plus"]
    assert plus[0] == pytest.approx(np.mean(list(printed.values())) - 0.06)


def test_paper_verdict_flags_values_outside_their_band():
    headline = {"a2e": {"r_avg": {"mean": 0.75}}, "mid2e": {"r_avg": {"mean": 0.79}},
                "a2mid2e": {"r_avg": {"mean": 0.69}}, "joint": {"r_avg": {"mean": 0.60}},
                "coe_a2mid2e": {"average": 0.04}, "coe_joint": {"average": 0.02},
                "a2mid_plus": {"r_avg": 0.63}, "a2mid": {"r_avg": 0.6}, "joint_midlevel": {"r_avg": {"mean": 0.61}}}
    verdict = check_paper(headline, REFERENCE, RULES)
    assert not verdict.passed and len(verdict.failures) == 1 and "joint.r_avg.mean" in verdict.failures[0]
    headline["joint"]["r_avg"]["mean"] = 0.74
    assert check_paper(headline, REFERENCE, RULES).passed
    assert "| `joint.r_avg.mean` | 0.740 |" in check_paper(headline, REFERENCE, RULES).markdown()


def test_embedded_verdict_checks_expectations_and_planted_truth():
    headline = json.loads((ROOT / "metrics" / "headline.json").read_text())
    verdict = check_embedded(headline, RULES)
    assert verdict.passed, verdict.failures  # the committed embedded run meets its own expectations
    headline["planted_truth"]["mid2e"]["weight_correlation"] = 0.5
    headline["a2e"]["mse_ratio"] = 1.3
    failed = check_embedded(headline, RULES).failures
    assert len(failed) == 2 and "planted_truth.mid2e" in failed[1] and "a2e.mse_ratio" in failed[0]


def git(repo, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


@pytest.fixture
def repo(tmp_path):
    """A git repository whose HEAD holds the results of five paired runs."""
    root = tmp_path / "repo"
    root.mkdir()
    write_fixture(root)
    (root / "metrics" / "headline.json").write_text(json.dumps({"planted_truth": {"joint": {"weight_correlation": 0.9}}}))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "results")
    return root


def verdict_for(root, values):
    write_fixture(root, values=values)
    return check_against_revision("HEAD", repo=root, results_dir=root / "results",
                                  headline_path=root / "metrics" / "headline.json", rules=RULES)


def test_a_real_regression_against_a_revision_is_flagged(repo):
    values = designed_values()
    values["a2mid2e"] = values["a2mid2e"] - 0.08  # e.g. a broken mid-level feature
    verdict = verdict_for(repo, values)
    assert not verdict.passed
    assert any("`a2mid2e.r_avg`" in f for f in verdict.failures)
    assert any("`coe_a2mid2e.average`" in f for f in verdict.failures)  # the cost of explainability grew
    assert not any("a2e.r_avg" in f.split()[0] for f in verdict.failures)  # A2E itself did not move


def test_float_level_drift_against_a_revision_is_no_change(repo):
    rng = np.random.default_rng(0)
    values = {k: v + rng.normal(0, 0.003, size=v.shape) for k, v in designed_values().items()}
    verdict = verdict_for(repo, values)
    assert verdict.passed, verdict.failures
    labels = [row[-1] for row in verdict.rows]
    assert "**worse**" not in labels and labels.count("no change") >= 8


def test_an_unknown_revision_is_a_one_line_error(repo):
    with pytest.raises(CheckError, match="revision 'nope'"):
        check_against_revision("nope", repo=repo, results_dir=repo / "results",
                               headline_path=repo / "metrics" / "headline.json", rules=RULES)


def test_the_corpus_is_read_from_params_or_named_as_missing(tmp_path):
    from midlevel_emotion.evaluation.check import _corpus

    import yaml

    params = tmp_path / "params.yaml"
    full = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.write_text(yaml.safe_dump(full))
    assert _corpus(params) == "synthetic"
    del full["data"]
    params.write_text(yaml.safe_dump(full))
    with pytest.raises(CheckError, match=r"params.yaml: missing key 'data.source' \(use --mode paper\|embedded\)"):
        _corpus(params)
    params.write_text("data: [unclosed\n")
    with pytest.raises(CheckError, match=r"params.yaml: not valid YAML .* \(use --mode paper\|embedded\)"):
        _corpus(params)
    with pytest.raises(CheckError, match="params file not found"):
        _corpus(tmp_path / "absent.yaml")
