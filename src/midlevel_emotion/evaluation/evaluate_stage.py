"""The ``evaluate`` stage: Tables 2 and 3, the cost of explainability with paired tests,
calibration against the predict-the-train-mean baseline, the leak check, explanations scored
against the synthetic corpus's planted weights and against each other across runs (stability),
and the Markdown report.

The work is split by concern: :mod:`midlevel_emotion.evaluation.collect` reads the training stages'
result tables (:mod:`midlevel_emotion.experiments.results`) and checks the paired design and the leak;
:mod:`midlevel_emotion.evaluation.tables` computes the tables (with
:mod:`midlevel_emotion.evaluation.statistics`), :mod:`midlevel_emotion.evaluation.planted_truth` and
:mod:`midlevel_emotion.evaluation.stability` score the explanations; :mod:`midlevel_emotion.evaluation.report`
renders them. :func:`evaluate` wires them together for ``stages/evaluate.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .collect import check_seeds, check_test_ids, collect, leak_check, learned_weights, read_truth_weights
from .check import check_embedded, check_paper, read_json
from ..data.layout import SYNTHETIC_TRUTH_JSON
from ..core.errors import EvaluationError
from .headline import headline
from .report import render_report
from ..core.config import Params
from .metrics_file import list_paths, rounded
from .planted_truth import explanation_truth
from .stability import explanation_stability
from .tables import calibration, coe_table, table2, table3

__all__ = ["EvaluationError", "evaluate", "load_reference"]


def load_reference(path: Path) -> dict[str, Any]:
    """Read ``reference/paper.json`` (the paper's published numbers, for comparison only)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: reference file not found")
    ref = json.loads(path.read_text())
    for key in ("source", "note", "table2", "table3"):
        if key not in ref:
            raise EvaluationError(f"{path}: missing {key!r}")
    return ref


def evaluate(results_dir: Path, models_dir: Path, raw_dir: Path, reference_path: Path,
             params: Params, checks_path: Path = Path("reference/checks.json")) -> dict[str, Any]:
    """Run the whole evaluation.

    Parameters
    ----------
    results_dir : Path
        The training stages' results folders ``a2mid``, ``mid2e``, ``a2e`` and ``joint``
        (:mod:`midlevel_emotion.experiments.results`).
    models_dir : Path
        ``mid2e/linear.json`` and ``joint/joint_seed_<s>.pt``: the learned weights scored
        against the planted ones (missing files are reported, not scored).
    raw_dir : Path
        ``data/raw``; its ``synthetic_truth.json``, when present, enables the explanation check.
    reference_path : Path
        ``reference/paper.json``.
    checks_path : Path
        ``reference/checks.json``: the rules of the verdict in the report (:mod:`check`).
    params : Params
        Reads ``data.source``, ``runs.seeds`` and ``train.output_init`` (a note on the Joint
        model's start).

    Returns
    -------
    dict
        ``metrics`` (scalar, nested dicts, no lists: ``n_runs``, ``table2``, ``table3``,
        ``calibration``, ``leak_check``, ``explanation_truth`` (synthetic corpus only),
        ``explanation_stability`` (every corpus: how much the runs' emotion layers agree,
        :func:`midlevel_emotion.evaluation.stability.weight_stability`)), ``headline`` (the selection
        :func:`midlevel_emotion.evaluation.headline.headline` makes of them), ``verdict`` (against the
        paper, or the embedded run's expectations on the synthetic corpus), ``report``
        (Markdown), and
        what the report was built from (``corpus``, ``seeds``, ``synthetic``, ``not_run``,
        ``leak_check``, ``truth_skipped``, ``truth_error``, ``stability_skipped``,
        ``stability_sign_agreement``: model -> (8, 7) per-weight sign agreement, for the
        report only).

    Raises
    ------
    EvaluationError
        Inconsistent inputs: different seeds across models (or vs params), different test
        clips for one seed, an A2Mid that saw an emotion model's test clips, malformed files.
    """
    corpus = params.data.source
    collected = collect(results_dir)
    seeds = check_seeds(collected, params.runs.seeds)
    check_test_ids(collected)
    leaks = leak_check(collected)

    metrics: dict[str, Any] = {"n_runs": len(seeds)}
    metrics["table2"] = {**table2(collected.runs), **coe_table(collected.runs)}
    metrics["table3"] = table3(collected.runs)
    metrics["calibration"] = calibration(collected.results.scores)
    metrics["leak_check"] = {model: {k: v for k, v in leak.items() if k != "feeds"}
                             for model, leak in leaks.items() if leak["feeds"]}

    truth_path = Path(raw_dir) / SYNTHETIC_TRUTH_JSON
    synthetic = corpus == "synthetic" or truth_path.is_file()
    # one read of the learned emotion layers, for the planted-truth check and the stability
    learned = learned_weights(models_dir, seeds, collected.not_run)
    truth_skipped: dict[str, str] = {}
    truth_error = None
    if truth_path.is_file():
        scored, truth_skipped = explanation_truth(read_truth_weights(truth_path), learned)
        if scored:
            metrics["explanation_truth"] = scored
    elif synthetic:
        truth_error = f"{truth_path} not found"
    # the runs against each other: needs no truth, so on every corpus
    stability, stability_signs, stability_skipped = explanation_stability(learned)
    if stability:
        metrics["explanation_stability"] = stability

    metrics = rounded(metrics)
    lists = list_paths(metrics)
    if lists:  # a programming error, not a data error
        raise AssertionError(f"metrics must hold no lists (dvc metrics diff); found {lists}")
    result = {"metrics": metrics, "corpus": corpus, "seeds": seeds, "synthetic": synthetic,
              "not_run": collected.not_run, "leak_check": leaks, "truth_skipped": truth_skipped,
              "truth_error": truth_error, "stability_sign_agreement": stability_signs,
              "stability_skipped": stability_skipped, "reference_path": str(reference_path),
              "output_init": params.train.output_init}
    reference = load_reference(reference_path)
    result["headline"] = headline(metrics)
    rules = read_json(checks_path)
    result["verdict"] = (check_embedded(result["headline"], rules) if synthetic
                         else check_paper(result["headline"], reference, rules))
    result["report"] = render_report(result, reference)
    return result
