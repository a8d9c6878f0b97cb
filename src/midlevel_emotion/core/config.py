"""What every key of ``params.yaml`` may hold: one schema, checked once when the file is read.

:func:`midlevel_emotion.core.params.load_params` checks the whole file against :data:`SCHEMA`
before a stage touches any data, so a bad value is refused in one line that names the file,
the key, what it must be and what it is (``params.yaml: train.max_epochs must be a whole
number >= 1, got 'ten'``), and nothing is written. A key the schema does not know is refused
too (a typo would otherwise be a silent default), and so is a missing one.

Kept free of numpy and torch: the training stages read params.yaml before those load (the
reproducible CPU mode is set from it). The options of a choice are spelled here and checked
against the modules that act on them by ``tests/test_params.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

#: A rule returns None for a good value, else what the value must be (the error's middle).
Rule = Callable[[Any], "str | None"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def whole(minimum: int) -> Rule:
    """A whole number >= ``minimum``."""
    return lambda v: None if _is_int(v) and v >= minimum else f"a whole number >= {minimum}"


def number(minimum: float, maximum: float = math.inf, *, open_low: bool = True, open_high: bool = False) -> Rule:
    """A finite number in the interval (``open_*`` excludes that end)."""
    low, high = "(" if open_low else "[", ")" if open_high or maximum == math.inf else "]"
    text = f"a number > {minimum:g}" if maximum == math.inf and open_low else (
        f"a number >= {minimum:g}" if maximum == math.inf else f"a number in {low}{minimum:g}, {maximum:g}{high}")

    def rule(v: Any) -> str | None:
        if not _is_number(v):
            return text
        above = v > minimum if open_low else v >= minimum
        below = v < maximum if open_high else v <= maximum
        return None if above and below else text
    return rule


def fraction() -> Rule:
    """A share strictly between 0 and 1."""
    return number(0.0, 1.0, open_high=True)


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def choice(*options: Any) -> Rule:
    return lambda v: None if v in options and not isinstance(v, bool) else "one of " + ", ".join(map(str, options))


def text(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "a non-empty text"


def optional(rule: Rule) -> Rule:
    """``rule``, or null."""
    def check(v: Any) -> str | None:
        if v is None:
            return None
        problem = rule(v)
        return None if problem is None else f"{problem}, or null"
    return check


def seeds(v: Any) -> str | None:
    if (isinstance(v, list) and v and all(_is_int(s) and s >= 0 for s in v) and len(set(v)) == len(v)):
        return None
    return "a non-empty list of distinct whole numbers >= 0"


def archives(v: Any) -> str | None:
    """The entries' own keys (name, url, sha256, extract_to, kind, ...) are checked where they
    are planned, naming the archive (``download._plan``); here only the shape."""
    return None if isinstance(v, list) and all(isinstance(item, Mapping) for item in v) else "a list of archives"


#: Options of the choices (each acted on elsewhere; tests/test_params.py keeps them in step).
DATA_SOURCES = ("synthetic", "download", "local")
OUTPUT_INITS = ("kaiming", "train_mean")
PRECISIONS = ("fp32", "bf16", "fp16")
EXECUTORS = ("local", "slurm")
PAIR_RULES = ("words", "formula")

#: Every key of params.yaml, dotted, and its rule (params.yaml's comments say what each does).
SCHEMA: dict[str, Rule] = {
    "data.source": choice(*DATA_SOURCES),
    "synthetic.seed": whole(0),
    "synthetic.n_clips": whole(1),
    "synthetic.n_soundtracks": whole(0),
    "synthetic.duration_seconds": number(0.0),
    "synthetic.sample_rate": whole(1),
    "synthetic.annotation_noise": number(0.0, open_low=False),
    "synthetic.rating_noise": number(0.0, open_low=False),
    "synthetic.jobs": whole(0),
    "download.archive_dir": text,
    "download.timeout_seconds": number(0.0),
    "download.retries": whole(0),
    "download.deadline_seconds": number(0.0),
    "download.min_bytes_per_second": number(0.0, open_low=False),
    "download.rate_window_seconds": number(0.0),
    "download.max_extracted_bytes": whole(1),
    "download.max_compression_ratio": number(0.0),
    "download.archives": archives,
    "local.midlevel_dir": text,
    "local.soundtracks_dir": text,
    "resample.sample_rate": whole(1),
    "resample.max_failed_fraction": number(0.0, 1.0, open_low=False),
    "resample.jobs": whole(0),
    "spectrogram.frame_size": whole(1),
    "spectrogram.fps": number(0.0),
    "spectrogram.bands_per_octave": whole(1),
    "spectrogram.fmin": number(0.0),
    "spectrogram.fmax": number(0.0),
    "spectrogram.jobs": whole(0),
    "train.crop_seconds": number(0.0),
    "train.eval_hop_seconds": number(0.0),
    "train.batch_size": whole(1),
    "train.learning_rate": number(0.0),
    "train.max_epochs": whole(1),
    "train.patience": whole(1),
    "train.validation_fraction": fraction(),
    "train.last_kernel_size": choice(1, 3),
    "train.width": number(0.0, 1.0),
    "train.dropout": number(0.0, 1.0, open_low=False, open_high=True),
    "train.precise_bn": boolean,
    "train.precise_bn_clips": whole(1),
    "train.output_init": choice(*OUTPUT_INITS),
    "train.recenter_output_bias": boolean,
    "train.reproducible": boolean,
    "train.precision": choice(*PRECISIONS),
    "grid.executor": choice(*EXECUTORS),
    "grid.jobs": whole(0),
    "grid.slurm.partition": optional(text),
    "grid.slurm.gpus_per_node": whole(0),
    "grid.slurm.cpus_per_task": whole(1),
    "grid.slurm.mem_gb": number(0.0),
    "grid.slurm.timeout_min": whole(1),
    "grid.slurm.array_parallelism": whole(1),
    "grid.slurm.log_dir": text,
    "runs.seeds": seeds,
    "runs.test_fraction": fraction(),
    "train_a2mid.seed": whole(0),
    "train_a2mid.plus_test_fraction": fraction(),
    "train_a2mid.soundtracks_test_fraction": fraction(),
    "train_joint.midlevel_loss_weight": number(0.0, open_low=False),
    "explain.pair_selection": choice(*PAIR_RULES),
}


def problems(flat: Mapping[str, Any]) -> list[str]:
    """What is wrong with a flattened params file (``params.flatten``), one message per key.

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


__all__ = ["DATA_SOURCES", "EXECUTORS", "OUTPUT_INITS", "PAIR_RULES", "PRECISIONS", "SCHEMA", "problems"]
