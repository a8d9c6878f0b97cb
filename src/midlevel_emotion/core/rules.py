"""The rules a params.yaml value must obey: each returns None for a good value, else what the
value must be, which becomes the middle of the one-line error (``train.max_epochs must be`` *a
whole number >= 1* ``, got 'ten'``).

:mod:`midlevel_emotion.core.config` gives every key its rule. Kept free of numpy and torch, as
config is (the training stages read params.yaml before those load).
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
    # a tuple too: the typed field holds the YAML list as one (Params.runs.seeds)
    if (isinstance(v, (list, tuple)) and v and all(_is_int(s) and s >= 0 for s in v) and len(set(v)) == len(v)):
        return None
    return "a non-empty list of distinct whole numbers >= 0"


def archives(v: Any) -> str | None:
    """The entries' own keys (name, url, sha256, extract_to, kind, ...) are checked where they
    are planned, naming the archive (``download_stage._plan``); here only the shape."""
    return (None if isinstance(v, (list, tuple)) and all(isinstance(item, Mapping) for item in v)
            else "a list of archives")


__all__ = ["Rule", "archives", "boolean", "choice", "fraction", "number", "optional", "seeds", "text", "whole"]
