"""End to end: the Soundtracks-only profile in a throwaway DVC repository.

A user who has the Soundtracks audio and ratings but not the mid-level dataset points
``local.soundtracks_dir`` at their folder: A2E trains and is evaluated, and the stages that need
mid-level annotations record that, and why, they did not run.
"""

import json
import shutil

import pytest

from projects import TINY, dvc, make_project
from test_pipeline import plots_show

pytestmark = pytest.mark.slow


def test_soundtracks_only_profile_trains_a2e_and_says_what_did_not_run(tmp_path):
    source = tmp_path / "soundtracks_copy"
    # The user's own Soundtracks directory: made here from a generated corpus
    from midlevel_emotion.data.synthetic import generate_corpus
    generate_corpus(tmp_path / "gen", n_clips=16, n_soundtracks=16, duration_seconds=5.0, jobs=2, progress=False)
    shutil.copytree(tmp_path / "gen" / "soundtracks", source)
    repo = make_project(tmp_path, {**TINY, "data": {"source": "local"},
                                   "local": {"midlevel_dir": "none", "soundtracks_dir": str(source)}})
    dvc("repro", cwd=repo)
    a2e = json.loads((repo / "metrics/a2e.json").read_text())
    assert set(a2e["a2e"]) == {"seed_0", "seed_1"}
    for stage in ("a2mid", "mid2e", "joint"):
        metrics = json.loads((repo / f"metrics/{stage}.json").read_text())
        assert metrics["status"] == "not run" and "mid-level" in metrics["reason"]
    assert (repo / "models/joint/NOT_RUN.md").is_file()
    assert not any((repo / "plots/training/joint/plots/metrics").iterdir())  # no curves, nothing DVC cannot plot
    curves = [name for name in plots_show(repo) if name.startswith("plots/training/")]
    assert sorted(curves) == [f"plots/training/a2e/plots/metrics/a2e_seed_{seed}/{curve}.tsv"
                              for seed in (0, 1) for curve in ("train_loss", "val_loss", "val_mean_r")]
    report = (repo / "reports/evaluation.md").read_text()
    assert "not run" in report
