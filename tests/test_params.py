"""params.yaml and the profiles stay in step, and the paper profile holds the paper's values."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from midlevel_emotion.params import ParamsError, load_params, section
from midlevel_emotion.profiles import apply_profile, flatten, load_profile, profile_path

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ["profiles/paper.yaml", "profiles/soundtracks-only.yaml"]


def load(name: str) -> dict:
    return flatten(yaml.safe_load((ROOT / name).read_text()))


def applied(profile: str, tmp_path: Path) -> dict:
    """params.yaml with the profile applied, as the documented command writes it."""
    target = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", target)
    apply_profile(ROOT / profile, target)
    return load_params(target)


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_name_only_keys_params_yaml_has_and_change_each(profile):
    changes = load_profile(ROOT / profile, ROOT / "params.yaml")
    default = load("params.yaml")
    assert changes and all(default[key] != value for key, value in changes.items()), \
        f"{profile} repeats a default value; profiles hold only what differs"


def test_a_profile_naming_an_unknown_key_fails(tmp_path):
    profile = tmp_path / "typo.yaml"
    profile.write_text("train:\n  max_epoch: 5\n")
    with pytest.raises(ParamsError, match=r"typo.yaml: 'train.max_epoch' is not a key in .*params.yaml"):
        load_profile(profile, ROOT / "params.yaml")
    profile.write_text("train: 5\n")
    with pytest.raises(ParamsError, match="'train' is a section, not a value"):
        load_profile(profile, ROOT / "params.yaml")
    with pytest.raises(ParamsError, match="no such profile .*known: paper, soundtracks-only"):
        profile_path("papr", ROOT / "profiles")


def test_applying_a_profile_keeps_comments_and_other_values(tmp_path):
    params = applied("profiles/paper.yaml", tmp_path)
    text = (tmp_path / "params.yaml").read_text()
    assert "# Hyperparameters of every stage, nested by stage." in text
    assert "# paper: 10 s (313 frames)" in text  # an inline comment survives the edit
    before, after = (ROOT / "params.yaml").read_text().splitlines(), text.splitlines()
    assert len(before) == len(after)  # one line per changed value, the rest untouched
    assert sum(a != b for a, b in zip(before, after)) == len(load_profile(ROOT / "profiles/paper.yaml", ROOT / "params.yaml"))
    flat, default = flatten({k: v for k, v in params.items() if k != "_path"}), load("params.yaml")
    changed = {k for k in default if default[k] != flat[k]}
    assert changed == set(load_profile(ROOT / "profiles/paper.yaml", ROOT / "params.yaml"))


def test_the_profile_script_prints_dvc_exp_run_arguments():
    out = subprocess.run([sys.executable, str(ROOT / "scripts/profile.py"), "soundtracks-only", "--exp-run-args"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert shlex.split(out) == ["-S", "data.source=\"local\"", "-S", "local.soundtracks_dir=\"/path/to/soundtracks\""]


def test_paper_profile_has_the_papers_hyperparameters(tmp_path):
    paper = flatten({k: v for k, v in applied("profiles/paper.yaml", tmp_path).items() if k != "_path"})
    assert paper["data.source"] == "download"
    assert paper["train.crop_seconds"] == 10.0 and paper["train.batch_size"] == 8
    assert paper["train.learning_rate"] == 0.0005 and paper["train.patience"] == 50
    assert paper["train.max_epochs"] == 199 and len(paper["runs.seeds"]) == 10
    assert paper["runs.test_fraction"] == 0.2 and paper["train_a2mid.plus_test_fraction"] == 0.08
    assert paper["spectrogram.fps"] == 31.25 and paper["resample.sample_rate"] == 22050
    # the short-training adaptations of the embedded default are off: the paper's init and BN
    assert paper["train.output_init"] == "kaiming" and paper["train.precise_bn"] is False


def test_soundtracks_only_profile_differs_only_in_the_data_source():
    only = load_profile(ROOT / "profiles/soundtracks-only.yaml", ROOT / "params.yaml")
    assert set(only) == {"data.source", "local.soundtracks_dir"}


def test_missing_keys_name_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: {batch_size: 8}\n")
    params = load_params(path)
    assert section(params, "train.batch_size") == 8
    with pytest.raises(ParamsError, match=r"params.yaml: missing key 'train.patience'"):
        section(params, "train.patience")
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_training_config_names_the_file_for_a_missing_train_key(tmp_path):
    from midlevel_emotion.protocol import Context
    text = (ROOT / "params.yaml").read_text()
    path = tmp_path / "old-params.yaml"
    path.write_text(text.replace("  recenter_output_bias: true\n", ""))  # a file from before the switch
    ctx = Context(labels=None, stores={}, params=load_params(path))
    with pytest.raises(ParamsError, match=r"old-params.yaml: missing key 'train.recenter_output_bias'"):
        ctx.config("a2e")
    assert Context(labels=None, stores={}, params=load_params(ROOT / "params.yaml")).config("a2e").output_init == "train_mean"
