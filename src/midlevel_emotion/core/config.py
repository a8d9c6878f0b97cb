"""params.yaml as typed objects: one frozen dataclass per section, each key with its rule.

:func:`midlevel_emotion.core.params.load_params` reads the file and :meth:`Params.from_mapping`
turns it into a :class:`Params` once: the whole file is checked against :data:`SCHEMA` before a
stage touches any data, so a bad value is refused in one line that names the file, the key, what
it must be and what it is (``params.yaml: train.max_epochs must be a whole number >= 1, got
'ten'``), and nothing is written. A key the schema does not know is refused too (a typo would
otherwise be a silent default), and so is a missing one. The stages then pass the typed objects
down (``params.train.max_epochs``), never the mapping; no field has a default.

Each key's rule (:mod:`midlevel_emotion.core.rules`) sits beside its type (``max_epochs: int =
_key(whole(1))``) and :data:`SCHEMA` is derived from the dataclasses, so the keys, types and
rules cannot drift apart.

Kept free of numpy and torch: the training stages read params.yaml before those load (the
reproducible CPU mode is set from it). The options of a choice are spelled here and checked
against the modules that act on them by ``tests/test_params.py``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, get_origin, get_type_hints

from .constants import SpectrogramSettings
from .errors import ParamsError
from .rules import Rule, archives, boolean, choice, fraction, number, optional, seeds, text, whole

#: Options of the choices (each acted on elsewhere; tests/test_params.py keeps them in step).
DATA_SOURCES = ("synthetic", "download", "local")
OUTPUT_INITS = ("kaiming", "train_mean")
PRECISIONS = ("fp32", "bf16", "fp16")
EXECUTORS = ("local", "slurm")
PAIR_RULES = ("words", "formula")


def _key(rule: Rule) -> Any:
    """A key of a section and its rule (no default: params.yaml is the value's only home)."""
    return field(metadata={"rule": rule})


class _Section:
    """What every section shares: built directly or by ``dataclasses.replace``, its fields are
    checked by the same rules as the file (a typed object is never out of range)."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]  (every subclass is a dataclass)
            problem = f.metadata["rule"](getattr(self, f.name)) if "rule" in f.metadata else None
            if problem is not None:
                raise ParamsError(f"{_DOTTED[type(self)]}{f.name} must be {problem}, got {getattr(self, f.name)!r}")


# One dataclass per section of params.yaml, in the file's order (params.yaml's comments say
# what each key does). A number field holds a float even where YAML wrote a whole number.


@dataclass(frozen=True)
class DataParams(_Section):
    """``data``: where the corpus comes from."""

    source: str = _key(choice(*DATA_SOURCES))


@dataclass(frozen=True)
class SyntheticParams(_Section):
    """``synthetic``: the embedded corpus (the keyword arguments of ``generate_corpus``)."""

    seed: int = _key(whole(0))
    n_clips: int = _key(whole(1))
    n_soundtracks: int = _key(whole(0))
    duration_seconds: float = _key(number(0.0))
    sample_rate: int = _key(whole(1))
    annotation_noise: float = _key(number(0.0, open_low=False))
    rating_noise: float = _key(number(0.0, open_low=False))
    jobs: int = _key(whole(0))


@dataclass(frozen=True)
class DownloadParams(_Section):
    """``download``: the published archives and the bounds on every transfer."""

    archive_dir: str = _key(text)
    timeout_seconds: float = _key(number(0.0))
    retries: int = _key(whole(0))
    deadline_seconds: float = _key(number(0.0))
    min_bytes_per_second: float = _key(number(0.0, open_low=False))
    rate_window_seconds: float = _key(number(0.0))
    max_extracted_bytes: int = _key(whole(1))
    max_compression_ratio: float = _key(number(0.0))
    archives: tuple[Mapping[str, Any], ...] = _key(archives)


@dataclass(frozen=True)
class LocalParams(_Section):
    """``local``: folders the user already has (``none``: not used)."""

    midlevel_dir: str = _key(text)
    soundtracks_dir: str = _key(text)


@dataclass(frozen=True)
class ResampleParams(_Section):
    """``resample``: the decoded signals' rate and the share of files allowed to fail."""

    sample_rate: int = _key(whole(1))
    max_failed_fraction: float = _key(number(0.0, 1.0, open_low=False))
    jobs: int = _key(whole(0))


@dataclass(frozen=True)
class SpectrogramParams(_Section):
    """``spectrogram``: the log-filtered spectrogram (with ``resample.sample_rate``:
    :meth:`Params.spectrogram_settings`)."""

    frame_size: int = _key(whole(1))
    fps: float = _key(number(0.0))
    bands_per_octave: int = _key(whole(1))
    fmin: float = _key(number(0.0))
    fmax: float = _key(number(0.0))
    jobs: int = _key(whole(0))


@dataclass(frozen=True)
class TrainParams(_Section):
    """``train``: the training loop (Section 5; ``training.TrainConfig.from_params``)."""

    crop_seconds: float = _key(number(0.0))
    eval_hop_seconds: float = _key(number(0.0))
    batch_size: int = _key(whole(1))
    learning_rate: float = _key(number(0.0))
    max_epochs: int = _key(whole(1))
    patience: int = _key(whole(1))
    validation_fraction: float = _key(fraction())
    last_kernel_size: int = _key(choice(1, 3))
    width: float = _key(number(0.0, 1.0))
    dropout: float = _key(number(0.0, 1.0, open_low=False, open_high=True))
    precise_bn: bool = _key(boolean)
    precise_bn_clips: int = _key(whole(1))
    output_init: str = _key(choice(*OUTPUT_INITS))
    recenter_output_bias: bool = _key(boolean)
    reproducible: bool = _key(boolean)
    precision: str = _key(choice(*PRECISIONS))


@dataclass(frozen=True)
class SlurmParams(_Section):
    """``grid.slurm``: the Slurm jobs of ``grid.executor: slurm``."""

    partition: str | None = _key(optional(text))
    gpus_per_node: int = _key(whole(0))
    cpus_per_task: int = _key(whole(1))
    mem_gb: float = _key(number(0.0))
    timeout_min: int = _key(whole(1))
    array_parallelism: int = _key(whole(1))
    log_dir: str = _key(text)


@dataclass(frozen=True)
class GridParams(_Section):
    """``grid``: where a training stage's runs are trained (``grid.GridSettings.from_params``)."""

    executor: str = _key(choice(*EXECUTORS))
    jobs: int = _key(whole(0))
    slurm: SlurmParams


@dataclass(frozen=True)
class RunsParams(_Section):
    """``runs``: the runs of every emotion stage, one per seed."""

    seeds: tuple[int, ...] = _key(seeds)
    test_fraction: float = _key(fraction())


@dataclass(frozen=True)
class TrainA2MidParams(_Section):
    """``train_a2mid``: the splits of the A2Mid networks."""

    seed: int = _key(whole(0))
    plus_test_fraction: float = _key(fraction())
    soundtracks_test_fraction: float = _key(fraction())


@dataclass(frozen=True)
class TrainJointParams(_Section):
    """``train_joint``: the Joint model's loss."""

    midlevel_loss_weight: float = _key(number(0.0, open_low=False))


@dataclass(frozen=True)
class ExplainParams(_Section):
    """``explain``: the song pair of Section 7.2."""

    pair_selection: str = _key(choice(*PAIR_RULES))


@dataclass(frozen=True)
class Params:
    """The whole params file, typed and checked: what every stage reads its hyperparameters from.

    ``path`` (where the file was read from) names the file in errors; ``raw`` is the mapping as
    YAML loaded it, kept only for the digest a checkpoint records
    (``checkpoints.params_hash``): code reads the typed sections, never ``raw``. To change a
    value use :meth:`changed`, which keeps ``raw`` in step (``dataclasses.replace`` would not).
    """

    data: DataParams
    synthetic: SyntheticParams
    download: DownloadParams
    local: LocalParams
    resample: ResampleParams
    spectrogram: SpectrogramParams
    train: TrainParams
    grid: GridParams
    runs: RunsParams
    train_a2mid: TrainA2MidParams
    train_joint: TrainJointParams
    explain: ExplainParams
    path: str = field(compare=False)
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_mapping(cls, mapping: Any, path: str = "params.yaml") -> "Params":
        """The params of a whole file as YAML loaded it (nested mappings), every key checked.

        Raises
        ------
        ParamsError
            One line naming ``path``: not a mapping, or every key that is missing, unknown or
            holds a value its rule refuses, and spectrogram settings that do not fit together
            (``fmax`` above Nyquist, ...).
        """
        if not isinstance(mapping, Mapping):
            raise ParamsError(f"{path}: expected a mapping at the top level")
        found = problems(flatten(mapping))
        if found:
            raise ParamsError(f"{path}: {'; '.join(found)}")
        built = _build(cls, copy.deepcopy(mapping), path=str(path), raw=copy.deepcopy(dict(mapping)))
        built.spectrogram_settings()  # the settings' own checks: fmin < fmax < Nyquist, ...
        return built

    def changed(self, changes: Mapping[str, Any]) -> "Params":
        """These params with ``{"train.max_epochs": 5}`` changes, checked as a file is (``raw``
        changes too, so the digest names what the runs are trained with)."""
        raw = copy.deepcopy(dict(self.raw))
        for dotted, value in changes.items():
            *parents, last = dotted.split(".")
            node = raw
            for part in parents:
                if not isinstance(node.get(part), dict):  # a leaf a new key would replace: no such section
                    raise ParamsError(f"{self.path}: unknown key '{dotted}'")
                node = node[part]
            node[last] = value  # an unknown last part is refused by from_mapping, with a hint
        return Params.from_mapping(raw, self.path)

    def spectrogram_settings(self) -> SpectrogramSettings:
        """The spectrogram settings params.yaml defines (``resample.sample_rate`` + ``spectrogram.*``)."""
        s = self.spectrogram
        try:
            return SpectrogramSettings(sample_rate=self.resample.sample_rate, frame_size=s.frame_size, fps=s.fps,
                                       bands_per_octave=s.bands_per_octave, fmin=s.fmin, fmax=s.fmax)
        except ValueError as exc:
            raise ParamsError(f"{self.path}: spectrogram settings: {exc}") from None


def _build(cls: type, values: Mapping[str, Any], **extra: Any) -> Any:
    """``cls`` from checked ``values``: sections recursively, numbers as floats, lists as tuples."""
    hints = get_type_hints(cls)
    kwargs = dict(extra)
    for f in fields(cls):
        if f.name in extra:
            continue
        hint, value = hints[f.name], values[f.name]
        if is_dataclass(hint):
            value = _build(hint, value)
        elif hint is float:
            value = float(value)
        elif hint is int:  # last_kernel_size's choice also lets 3.0 through
            value = int(value)
        elif get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _schema(cls: type, prefix: str = "") -> dict[str, Rule]:
    """The dotted keys of ``cls``'s fields and their rules, sections recursively (noting each
    section's dotted name for its own checks)."""
    hints = get_type_hints(cls)
    schema: dict[str, Rule] = {}
    _DOTTED[cls] = prefix
    for f in fields(cls):
        if "rule" in f.metadata:
            schema[prefix + f.name] = f.metadata["rule"]
        elif is_dataclass(hints[f.name]):
            schema.update(_schema(hints[f.name], f"{prefix}{f.name}."))
    return schema


#: Section class -> its dotted prefix (``"grid.slurm."``), for the sections' own messages.
_DOTTED: dict[type, str] = {}

#: Every key of params.yaml, dotted, and its rule, in the file's order: derived from the
#: dataclasses above (``Params`` and its sections), never written out a second time.
SCHEMA: dict[str, Rule] = _schema(Params)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"max_epochs": 199}}`` -> ``{"train.max_epochs": 199}``.

    The dotted keys of :data:`SCHEMA`, of ``dvc exp run -S`` and of the headline metrics;
    lists and empty mappings are values.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def problems(flat: Mapping[str, Any]) -> list[str]:
    """What is wrong with a flattened params file (:func:`flatten`), one message per key.

    Missing keys first (the first three by name), then unknown ones, then values against their
    rules, in the order of :data:`SCHEMA`; a message names the key and ends with the value as
    YAML gave it.
    """
    missing = [key for key in SCHEMA if key not in flat]
    out = [f"missing key '{key}'" for key in missing[:3]]
    if len(missing) > 3:  # e.g. a file of another project: the first few are enough to say so
        out.append(f"and {len(missing) - 3} more missing keys (compare with the repository's params.yaml)")
    for key in flat:
        if key not in SCHEMA:
            hint = _closest(key)
            out.append(f"unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else
                                                  " (no stage reads it; remove it)"))
    for key, rule in SCHEMA.items():
        if key in flat:
            expected = rule(flat[key])
            if expected is not None:
                out.append(f"{key} must be {expected}, got {flat[key]!r}")
    return out


def _closest(key: str) -> str | None:
    import difflib

    found = difflib.get_close_matches(key, SCHEMA, n=1, cutoff=0.8)
    return found[0] if found else None


__all__ = ["DATA_SOURCES", "EXECUTORS", "OUTPUT_INITS", "PAIR_RULES", "PRECISIONS", "SCHEMA", "DataParams",
           "DownloadParams", "ExplainParams", "GridParams", "LocalParams", "Params", "ResampleParams",
           "RunsParams", "SlurmParams", "SpectrogramParams", "SyntheticParams", "TrainA2MidParams",
           "TrainJointParams", "TrainParams", "flatten", "problems"]
