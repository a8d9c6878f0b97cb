"""params.yaml and the profiles stay in step, and the paper profile holds the paper's values."""

from pathlib import Path

import pytest
import yaml

from midlevel_emotion.params import ParamsError, load_params, section

ROOT = Path(__file__).resolve().parents[1]


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def load(name: str) -> dict:
    return flatten(yaml.safe_load((ROOT / name).read_text()))


@pytest.mark.parametrize("profile", ["profiles/paper.yaml", "profiles/soundtracks-only.yaml"])
def test_profiles_have_exactly_the_default_keys(profile):
    assert set(load(profile)) == set(load("params.yaml"))


def test_paper_profile_has_the_papers_hyperparameters():
    paper = load("profiles/paper.yaml")
    assert paper["data.source"] == "download"
    assert paper["train.crop_seconds"] == 10.0 and paper["train.batch_size"] == 8
    assert paper["train.learning_rate"] == 0.0005 and paper["train.patience"] == 50
    assert paper["train.max_epochs"] == 199 and len(paper["runs.seeds"]) == 10
    assert paper["runs.test_fraction"] == 0.2 and paper["train_a2mid.plus_test_fraction"] == 0.08
    assert paper["spectrogram.fps"] == 31.25 and paper["resample.sample_rate"] == 22050
    # the short-training adaptations of the embedded default are off: the paper's init and BN
    assert paper["train.output_init"] == "kaiming" and paper["train.precise_bn"] is False


def test_soundtracks_only_profile_differs_only_in_the_data_source():
    default, only = load("params.yaml"), load("profiles/soundtracks-only.yaml")
    changed = {k for k in default if default[k] != only[k]}
    assert changed == {"data.source", "local.soundtracks_dir"}


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
        ctx.config()
    assert Context(labels=None, stores={}, params=load_params(ROOT / "params.yaml")).config().output_init == "train_mean"
