"""params.yaml and the profiles stay in step, and the paper profile holds the paper's values."""

import dataclasses
import shlex
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
import yaml

from configs import write_params
from midlevel_emotion.core.config import Params, flatten
from midlevel_emotion.core.params import load_params
from midlevel_emotion.core.errors import ParamsError
from midlevel_emotion.core.profiles import apply_profile, load_profile, profile_path

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ["profiles/paper.yaml", "profiles/soundtracks-only.yaml"]


def load(name: str) -> dict:
    return flatten(yaml.safe_load((ROOT / name).read_text()))


def applied(profile: str, tmp_path: Path) -> Params:
    """params.yaml with the profile applied, as the documented command writes it, read as the stages read it."""
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
    flat, default = flatten(params.raw), load("params.yaml")
    changed = {k for k in default if default[k] != flat[k]}
    assert changed == set(load_profile(ROOT / "profiles/paper.yaml", ROOT / "params.yaml"))


def test_the_profile_script_prints_dvc_exp_run_arguments():
    out = subprocess.run([sys.executable, str(ROOT / "scripts/profile.py"), "soundtracks-only", "--exp-run-args"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert shlex.split(out) == ["-S", "data.source=\"local\"", "-S", "local.soundtracks_dir=\"/path/to/soundtracks\""]


def test_paper_profile_has_the_papers_hyperparameters(tmp_path):
    paper = applied("profiles/paper.yaml", tmp_path)
    assert paper.data.source == "download"
    assert paper.train.crop_seconds == 10.0 and paper.train.batch_size == 8
    assert paper.train.learning_rate == 0.0005 and paper.train.patience == 50
    assert paper.train.max_epochs == 199 and len(paper.runs.seeds) == 10
    assert paper.runs.test_fraction == 0.2 and paper.train_a2mid.plus_test_fraction == 0.08
    assert paper.spectrogram.fps == 31.25 and paper.resample.sample_rate == 22050
    # the short-training adaptations of the embedded default are off: the paper's init and BN
    assert paper.train.output_init == "kaiming" and paper.train.precise_bn is False


def test_soundtracks_only_profile_differs_only_in_the_data_source():
    only = load_profile(ROOT / "profiles/soundtracks-only.yaml", ROOT / "params.yaml")
    assert set(only) == {"data.source", "local.soundtracks_dir"}


def test_missing_keys_name_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: {batch_size: 8}\n")
    with pytest.raises(ParamsError, match=r"params.yaml: missing key 'data.source'; missing key 'synthetic.seed'; "
                                          r"missing key 'synthetic.n_clips'; and 57 more missing keys"):
        load_params(path)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(AttributeError, match="nope"):  # a typo in the code fails, never reads a default
        params.train.nope  # noqa: B018


def test_an_old_params_file_names_the_key_it_lacks(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    path = tmp_path / "old-params.yaml"
    path.write_text(text.replace("  recenter_output_bias: true\n", ""))  # a file from before the switch
    with pytest.raises(ParamsError, match=r"^.*old-params.yaml: missing key 'train.recenter_output_bias'$"):
        load_params(path)


def write_changed(tmp_path: Path, changes: dict) -> Path:
    return write_params(tmp_path / "params.yaml", changes)


@pytest.mark.parametrize("key, value, message", [
    ("train.max_epochs", "ten", "train.max_epochs must be a whole number >= 1, got 'ten'"),
    ("train.max_epochs", -3, "train.max_epochs must be a whole number >= 1, got -3"),
    ("train.batch_size", 0, "train.batch_size must be a whole number >= 1, got 0"),
    ("train.batch_size", 8.5, "train.batch_size must be a whole number >= 1, got 8.5"),
    ("train.precise_bn", "yes", "train.precise_bn must be true or false, got 'yes'"),
    ("train.validation_fraction", 1.0, "train.validation_fraction must be a number in (0, 1), got 1.0"),
    ("train.dropout", 1, "train.dropout must be a number in [0, 1), got 1"),
    ("train.learning_rate", float("nan"), "train.learning_rate must be a number > 0, got nan"),
    ("train.precision", "fp8", "train.precision must be one of fp32, bf16, fp16, got 'fp8'"),
    ("runs.seeds", [0, 1, 1], "runs.seeds must be a non-empty list of distinct whole numbers >= 0, got [0, 1, 1]"),
    ("runs.seeds", [], "runs.seeds must be a non-empty list of distinct whole numbers >= 0, got []"),
    ("grid.slurm.partition", 3, "grid.slurm.partition must be a non-empty text, or null, got 3"),
    ("explain.pair_selection", "best", "explain.pair_selection must be one of words, formula, got 'best'"),
    ("train.max_epoch", 3, "unknown key 'train.max_epoch' (did you mean 'train.max_epochs'?)"),
    ("spectrogram.fmin", 17000.0, "spectrogram settings: need 0 < fmin < fmax"),
])
def test_a_bad_value_is_refused_in_one_line_naming_the_key(tmp_path, key, value, message):
    path = write_changed(tmp_path, {key: value})
    with pytest.raises(ParamsError) as caught:
        load_params(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_every_key_of_params_yaml_and_the_profiles_passes_and_the_schema_knows_no_other():
    from midlevel_emotion.core.config import SCHEMA

    assert set(SCHEMA) == set(load("params.yaml"))
    load_params(ROOT / "params.yaml")


def _dotted_fields(cls: type, prefix: str = "") -> list[str]:
    """The dotted names of a section dataclass's keys, walked here independently of config._schema."""
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _dotted_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def test_the_schema_is_the_dataclass_fields_each_with_its_rule_and_no_default():
    from midlevel_emotion.core.config import SCHEMA

    sections = [f for f in dataclasses.fields(Params) if f.name not in ("path", "raw")]
    keys = [key for f in sections for key in _dotted_fields(typing.get_type_hints(Params)[f.name], f"{f.name}.")]
    assert keys == list(SCHEMA)  # same keys, same order (the order of the messages)
    assert [f.name for f in sections] == list(yaml.safe_load((ROOT / "params.yaml").read_text()))
    for f in dataclasses.fields(Params):
        assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, f.name
    for f in sections:
        section_type = typing.get_type_hints(Params)[f.name]
        for key in dataclasses.fields(section_type):
            assert key.default is dataclasses.MISSING and key.default_factory is dataclasses.MISSING, (f.name, key.name)
            assert "rule" in key.metadata or dataclasses.is_dataclass(typing.get_type_hints(section_type)[key.name])


def test_the_typed_params_hold_values_of_their_declared_types():
    params = load_params(ROOT / "params.yaml")
    flat = load("params.yaml")
    for key, raw in flat.items():
        *parents, name = key.split(".")
        owner = params
        for part in parents:
            owner = getattr(owner, part)
        value, hint = getattr(owner, name), typing.get_type_hints(type(owner))[name]
        allowed = typing.get_args(hint) if typing.get_origin(hint) is types.UnionType else (hint,)
        allowed = tuple(typing.get_origin(t) or t for t in allowed)
        assert isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool)), (key, value, hint)
        assert value == (tuple(raw) if isinstance(raw, list) else raw), key  # the same value, typed
    # whole numbers YAML wrote for number keys become floats; lists become tuples
    assert params.grid.slurm.mem_gb == 8.0 and type(params.grid.slurm.mem_gb) is float
    assert type(params.download.timeout_seconds) is float and type(params.download.retries) is int
    assert params.runs.seeds == (0, 1, 2) and all(type(s) is int for s in params.runs.seeds)
    assert isinstance(params.download.archives, tuple) and all(isinstance(a, dict) for a in params.download.archives)
    assert params.train.precise_bn is True and params.grid.slurm.partition is None
    assert params.spectrogram_settings().sample_rate == params.resample.sample_rate
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.train.max_epochs = 3  # type: ignore[misc]


def test_a_bad_value_in_a_mapping_or_a_replaced_section_names_the_key_in_one_line():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["grid"]["slurm"]["mem_gb"] = "lots"
    with pytest.raises(ParamsError) as caught:
        Params.from_mapping(raw, "mine.yaml")
    assert str(caught.value) == "mine.yaml: grid.slurm.mem_gb must be a number > 0, got 'lots'"
    with pytest.raises(ParamsError, match=r"^params.yaml: expected a mapping at the top level$"):
        Params.from_mapping(["train"])
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(ParamsError) as caught:
        dataclasses.replace(params.train, dropout=1.5)
    assert str(caught.value) == "train.dropout must be a number in [0, 1), got 1.5"
    with pytest.raises(ParamsError, match=r"^.*params.yaml: runs.seeds must be a non-empty list .*, got \[\]$"):
        params.changed({"runs.seeds": []})


def test_changed_params_are_checked_and_their_raw_mapping_follows():
    params = load_params(ROOT / "params.yaml")
    changed = params.changed({"train.max_epochs": 5, "runs.seeds": [4]})
    assert changed.train.max_epochs == 5 and changed.runs.seeds == (4,) and changed.path == params.path
    assert changed.raw["train"]["max_epochs"] == 5 and params.raw["train"]["max_epochs"] == params.train.max_epochs != 5
    assert changed.train_a2mid == params.train_a2mid and changed != params


def test_the_options_of_each_choice_are_the_ones_the_code_acts_on():
    from midlevel_emotion.core import config
    from midlevel_emotion.experiments import grid
    from midlevel_emotion.explanation import pairs
    from midlevel_emotion.learning import adaptations, precision

    assert config.PRECISIONS == tuple(precision.DTYPES)
    assert pairs.PAIR_RULES is config.PAIR_RULES
    assert grid.EXECUTORS is config.EXECUTORS and adaptations.OUTPUT_INITS is config.OUTPUT_INITS


@pytest.mark.parametrize("stage", ["train_a2e", "train_joint", "download", "evaluate"])
def test_a_stage_refuses_a_bad_param_in_one_line_before_it_writes_anything(tmp_path, stage):
    from projects import environment

    path = write_changed(tmp_path, {"train.max_epochs": -3})
    outputs = {"train_a2e": ["--models", "models", "--results", "results", "--metrics", "metrics/a2e.json",
                             "--plots", "plots"],
               "train_joint": ["--models", "models", "--results", "results", "--metrics", "metrics/joint.json",
                               "--plots", "plots"],
               "download": ["--out", "data/raw"],
               "evaluate": ["--results", "results", "--models", "models", "--raw", "data/raw", "--reference",
                            str(ROOT / "reference/paper.json"), "--out-metrics", "metrics/evaluate.json",
                            "--headline", "metrics/headline.json", "--checks", str(ROOT / "reference/checks.json"),
                            "--report", "reports/evaluation.md"]}[stage]
    done = subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py"), *outputs, "--params", str(path)],
                          cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr == f"{stage}: error: {path}: train.max_epochs must be a whole number >= 1, got -3\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
