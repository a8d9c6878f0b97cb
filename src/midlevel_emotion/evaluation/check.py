"""A verdict on a run: against the paper (or, on the synthetic corpus, the embedded run's own
expectations), or against another revision, knowing the run-to-run noise.

The rules and their reasons are data, in ``reference/checks.json``; this module applies them
and renders a Markdown table (``midlevel-emotion check``, exit status 1 on failure).
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import tarfile
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .collect import collect
from ..core.errors import CheckError, ParamsError
from .headline import HIGHER_IS_BETTER, per_run
from ..core.config import flatten
from ..core.params import load_params


@dataclass
class Verdict:
    """One check: a title, what it checked against and why, and one row per headline value."""

    title: str
    basis: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def markdown(self) -> str:
        lines = [f"### {self.title}: {'PASS' if self.passed else 'FAIL'}", "", self.basis, ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.failures:
            lines += ["", "Failed: " + "; ".join(self.failures) + "."]
        lines += [""] + [f"- {note}" for note in self.notes] if self.notes else []
        return "\n".join(lines) + "\n"


def _fmt(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _lookup(tree: Mapping[str, Any], dotted: str) -> Any:
    value: Any = tree
    for part in dotted.split("."):
        value = value[part]
    return value


def read_json(path: Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckError(f"{path}: not found (run `dvc repro` first)") from None
    except json.JSONDecodeError as exc:
        raise CheckError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


# ---------------------------------------------------------------------------------------
# Against the paper, or the embedded run's own expectations


def paper_band(rule: Mapping[str, Any], reference: Mapping[str, Any], tolerance: float) -> tuple[float, float, str]:
    """The accepted interval for one row and a short account of where it comes from."""
    printed = _lookup(reference, rule["paper"])
    if rule.get("feature_average"):
        values = [v for v in printed.values() if isinstance(v, (int, float))]
        centre, source = float(np.mean(values)), f"mean of the paper's {len(values)} printed features"
    else:
        centre, source = float(printed), "paper"
    low = high = centre
    if "rerun" in rule:
        rerun = float(_lookup(reference, rule["rerun"]))
        low, high = min(centre, rerun), max(centre, rerun)
        source += f" {centre:.2f}, lab re-run {rerun:.2f}"
    else:
        source += f" {centre:.2f}"
    tolerance = float(rule.get("tolerance", tolerance))
    return low - tolerance, high + tolerance, f"{source}, ± {tolerance:.2f}"


def check_paper(headline: Mapping[str, Any], reference: Mapping[str, Any], rules: Mapping[str, Any]) -> Verdict:
    """Every headline value the paper has a number for, with its band: within or outside."""
    values = flatten(headline)
    spec = rules["paper"]
    verdict = Verdict("Against the paper", f"Band = {spec['why']} Table 3: {spec['feature_average_why']}.",
                      ["row", "ours", "band", "from", "result"])
    for row, rule in spec["rows"].items():
        low, high, source = paper_band(rule, reference, spec["tolerance"])
        ours = values.get(row)
        if ours is None:
            verdict.rows.append([f"`{row}`", "n/a", f"{low:.2f} – {high:.2f}", source, "not run"])
            verdict.notes.append(f"`{row}` has no value in this run (the model did not run)")
            continue
        inside = low <= ours <= high
        verdict.rows.append([f"`{row}`", _fmt(ours), f"{low:.2f} – {high:.2f}", source,
                             "within" if inside else "**outside**"])
        if not inside:
            verdict.failures.append(f"`{row}` = {ours:.3f} outside {low:.2f} – {high:.2f}")
    return verdict


def check_embedded(headline: Mapping[str, Any], rules: Mapping[str, Any]) -> Verdict:
    """The synthetic corpus: planted-truth recovery and the embedded run's expectations."""
    values = flatten(headline)
    spec = rules["embedded"]
    verdict = Verdict("Embedded synthetic corpus (not comparable with the paper)", spec["why"],
                      ["row", "ours", "expected", "result"])
    for row, rule in spec["rows"].items():
        ours = values.get(row)
        expected = (f"≥ {rule['min']}" if "min" in rule else "") + (f"≤ {rule['max']}" if "max" in rule else "")
        if ours is None:
            verdict.rows.append([f"`{row}`", "n/a", expected, "**missing**"])
            verdict.failures.append(f"`{row}` missing from the headline")
            continue
        ok = ours >= rule.get("min", -math.inf) and ours <= rule.get("max", math.inf)
        verdict.rows.append([f"`{row}`", _fmt(ours), expected, "as expected" if ok else "**not met**"])
        if not ok:
            verdict.failures.append(f"`{row}` = {ours:.3f}, expected {expected}")
    return verdict


# ---------------------------------------------------------------------------------------
# Against another revision


def _kind(row: str) -> str:
    return row.rsplit(".", 1)[-1]


def compare_row(old: pd.Series, new: pd.Series, *, alpha: float, min_effect: float) -> dict[str, Any]:
    """Paired comparison of one row's per-run values (runs matched by seed).

    Returns
    -------
    dict
        ``n`` (paired runs), ``delta`` (mean of new - old), ``p`` (paired t-test; 0 for an
        identical non-zero shift in every run; None with one run), ``changed`` and ``rule``.
    """
    from scipy import stats

    seeds = old.index.intersection(new.index)
    a, b = old.reindex(seeds).to_numpy(float), new.reindex(seeds).to_numpy(float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    diff = b - a
    n = int(diff.size)
    if n == 0:
        return {"n": 0, "delta": None, "p": None, "changed": False, "rule": "no paired runs"}
    delta = float(diff.mean())
    if np.all(diff == 0):
        return {"n": n, "delta": 0.0, "p": None, "changed": False, "rule": "identical"}
    if n == 1:
        return {"n": 1, "delta": delta, "p": None, "changed": abs(delta) >= 2 * min_effect,
                "rule": f"one run: |Δ| ≥ {2 * min_effect:g}"}
    if np.ptp(diff) == 0:
        p = 0.0  # the same shift in every run: no noise at all
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(stats.ttest_rel(b, a).pvalue)
    changed = abs(delta) >= min_effect and p < alpha
    return {"n": n, "delta": delta, "p": p, "changed": changed, "rule": f"|Δ| ≥ {min_effect:g} and p < {alpha:g}"}


def compare_revisions(old_runs: Mapping[str, pd.Series], new_runs: Mapping[str, pd.Series],
                      old_headline: Mapping[str, Any], new_headline: Mapping[str, Any],
                      rules: Mapping[str, Any], old_name: str, new_name: str) -> Verdict:
    """Which headline numbers changed by more than run-to-run noise; regressions fail."""
    spec = rules["revision"]
    alpha, effects = float(spec["alpha"]), spec["min_effect"]
    verdict = Verdict(f"{new_name} against {old_name}", spec["why"],
                      ["row", old_name, new_name, "Δ", "runs", "p", "verdict"])
    rows = [(name, old_runs.get(name), new_runs.get(name)) for name in sorted(set(old_runs) | set(new_runs))]
    old_flat, new_flat = flatten(old_headline), flatten(new_headline)
    for name in sorted(k for k in set(old_flat) | set(new_flat) if k.startswith("planted_truth.")):
        rows.append((name, old_flat.get(name), new_flat.get(name)))
    for name, old, new in rows:
        if old is None or new is None:
            verdict.rows.append([f"`{name}`", "n/a" if old is None else "…", "n/a" if new is None else "…",
                                 "", "", "", "only in one revision"])
            continue
        effect = float(effects[_kind(name)])
        if isinstance(old, pd.Series):
            result = compare_row(old, new, alpha=alpha, min_effect=effect)
            shown = (old.mean(), new.mean())
        else:  # a mean only (planted truth)
            delta = float(new) - float(old)
            result = {"n": None, "delta": delta, "p": None, "changed": abs(delta) >= 2 * effect,
                      "rule": f"means only: |Δ| ≥ {2 * effect:g}"}
            shown = (float(old), float(new))
        if result["changed"]:
            better = (result["delta"] > 0) == HIGHER_IS_BETTER[_kind(name)]
            label = "better" if better else "**worse**"
            if not better:
                verdict.failures.append(f"`{name}` {result['delta']:+.3f} ({result['rule']})")
        else:
            label = "identical" if result["rule"] == "identical" else "no change"
        verdict.rows.append([f"`{name}`", _fmt(shown[0]), _fmt(shown[1]), _fmt(result["delta"], sign=True),
                             "" if result["n"] is None else str(result["n"]),
                             "" if result["p"] is None else f"{result['p']:.3f}", label])
    return verdict


def revision_tree(rev: str, paths: list[str], repo: Path, into: Path) -> Path:
    """Extract ``paths`` as they are at git revision ``rev`` into ``into`` (git archive)."""
    archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev, "--", *paths],
                             capture_output=True)
    if archive.returncode != 0:
        reason = archive.stderr.decode(errors="replace").strip().splitlines()
        raise CheckError(f"revision {rev!r}: cannot read {', '.join(paths)} ({reason[-1] if reason else 'git failed'})")
    # Regular files only, written one by one: extractall's safety filter (filter="data") is
    # missing before Python 3.11.4 / 3.10.12, and Debian 12's python3 is 3.11.2.
    root = into.resolve()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        for member in tar:
            if not member.isfile():
                continue  # folders are made below; git archive writes no links of ours here
            target = (root / member.name).resolve()
            if not target.is_relative_to(root):
                raise CheckError(f"revision {rev!r}: archive member {member.name!r} points outside the tree")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return into


def check_against_revision(rev: str, *, repo: Path, results_dir: Path, headline_path: Path,
                           rules: Mapping[str, Any]) -> Verdict:
    """Compare the working tree's results with those committed at ``rev``."""
    repo = Path(repo)
    rel_results = Path(results_dir).resolve().relative_to(repo.resolve())
    rel_headline = Path(headline_path).resolve().relative_to(repo.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        tree = revision_tree(rev, [rel_results.as_posix(), rel_headline.as_posix()], repo, Path(tmp))
        old_runs = per_run(collect(tree / rel_results))
        old_headline = read_json(tree / rel_headline)
    new_runs = per_run(collect(results_dir))
    return compare_revisions(old_runs, new_runs, old_headline, read_json(headline_path), rules,
                             rev, "working tree")


# ---------------------------------------------------------------------------------------
# The command line (`midlevel-emotion check`)


def add_arguments(parser: Any) -> None:
    """The options of ``midlevel-emotion check``."""
    parser.add_argument("--against", metavar="REV",
                        help="compare with the results committed at this git revision (branch, tag, commit) "
                             "instead of checking against the paper")
    parser.add_argument("--mode", choices=("auto", "paper", "embedded"), default="auto",
                        help="without --against: 'paper' bands, or the 'embedded' corpus's expectations; "
                             "auto picks by params.yaml data.source (default)")
    parser.add_argument("--headline", type=Path, default=Path("metrics/headline.json"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--reference", type=Path, default=Path("reference/paper.json"))
    parser.add_argument("--rules", type=Path, default=Path("reference/checks.json"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, help="also write the Markdown verdict to this file")


def _corpus(params_path: Path) -> str:
    import yaml

    try:
        return load_params(params_path).data.source
    except ParamsError as err:
        raise CheckError(f"{err} (use --mode paper|embedded)") from None
    except (OSError, yaml.YAMLError):
        raise CheckError(f"{params_path}: cannot read data.source (use --mode paper|embedded)") from None


def run(args: Any) -> Verdict:
    """The verdict the options ask for (see :func:`add_arguments`)."""
    rules = read_json(args.rules)
    if args.against:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
        if top.returncode != 0:
            raise CheckError("--against needs a git repository (run it in the project)")
        return check_against_revision(args.against, repo=Path(top.stdout.strip()), results_dir=args.results,
                                      headline_path=args.headline, rules=rules)
    mode = args.mode
    if mode == "auto":
        mode = "embedded" if _corpus(args.params) == "synthetic" else "paper"
    headline = read_json(args.headline)
    if mode == "embedded":
        return check_embedded(headline, rules)
    return check_paper(headline, read_json(args.reference), rules)
