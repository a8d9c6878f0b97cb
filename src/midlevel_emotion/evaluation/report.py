"""The evaluation report (``reports/evaluation.md``): one small function per section.

Each section function takes the evaluation's result (see
:func:`midlevel_emotion.evaluation.evaluate_stage.evaluate`) and the paper's reference values and returns its
Markdown lines; :func:`render_report` joins them in the paper's order.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from ..core.constants import EMOTIONS, MIDLEVEL_FEATURES
from ..data.layout import SYNTHETIC_TRUTH_JSON
from .statistics import AVERAGE, min_wilcoxon_p
from .tables import BASELINE, CALIBRATION_MODELS, COE_ROWS, TABLE2_MODELS, TABLE3_MODELS

COLS = list(EMOTIONS) + [AVERAGE]
#: The models with a learned mid-level -> emotion layer: key -> label in the explanation sections.
EXPLANATION_MODELS = {"mid2e": "Mid2E (annotated mid-level)", "a2mid2e": "A2Mid2E", "joint": "A2Mid2E-Joint"}
HEADER = ["Model"] + [c if c != AVERAGE else "avg" for c in COLS]
Section = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]


def _fmt(x: float | None, digits: int = 2, sign: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if round(x, digits) == 0:
        x = 0.0  # no "-0.00"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _fmt_ms(cell: Mapping[str, Any] | None) -> str:
    if not cell or cell.get("mean") is None:
        return "n/a"
    if cell.get("std") is None:
        return _fmt(cell["mean"])
    return f"{_fmt(cell['mean'])} ± {_fmt(cell['std'])}"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _diff(ours: float | None, paper: float | None) -> float | None:
    if ours is None or paper is None:
        return None
    return ours - paper


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _not_run_row(label: str, ncols: int, reason: str) -> list[str]:
    return [label, f"not run: {reason}"] + [""] * (ncols - 1)


def _ours_paper_delta(label: str, ours: Mapping[str, Any], paper: Mapping[str, Any]) -> list[list[str]]:
    rows = [[f"**{label}**, ours"] + [_fmt_ms(ours[c]) for c in COLS]]
    if paper:
        rows.append([f"{label}, paper"] + [_fmt(paper.get(c)) for c in COLS])
        rows.append([f"{label}, Δ"] + [_fmt(_diff(ours[c]["mean"], paper.get(c)), sign=True) for c in COLS])
    return rows


def _not_run_rows(label: str, reason: str, paper: Mapping[str, Any]) -> list[list[str]]:
    rows = [_not_run_row(label, len(COLS), reason)]
    if paper:
        rows.append([f"{label}, paper"] + [_fmt(paper.get(c)) for c in COLS])
    return rows


def header_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """Title, corpus, runs, how to read the tables, and the synthetic-corpus warning."""
    seeds = result["seeds"]
    lines = ["# Evaluation: emotion and mid-level prediction (Tables 2 and 3)", ""]
    lines += [f"- Corpus (params `data.source`): **{result['corpus']}**",
              f"- Runs: **{len(seeds)}** (seeds {', '.join(map(str, seeds)) or 'none'}), each with its own "
              "80:20 split shared by all models of the run (paired comparison); the paper used 10.",
              "- Ours: mean ± sample standard deviation (ddof=1) of the test Pearson r over runs. "
              "'avg' is each run's mean over the 8 emotions, then mean ± std over runs.",
              f"- Paper: its published values, kept in `{result['reference_path']}` for comparison only "
              "(never used as results); Δ = ours − paper, from our unrounded mean.", ""]
    if result["synthetic"]:
        lines += ["> **WARNING: SYNTHETIC CORPUS.** These numbers come from the embedded synthetic corpus, "
                  "not from the Soundtracks and Mid-level Perceptual Features datasets. The paper's numbers "
                  "are **NOT** expected to match; the comparison columns only show the layout. Switch "
                  "`data.source` to the real data to reproduce the paper.", ""]
    return lines


def table2_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """Table 2: ours beside the paper's values, per model."""
    t2, ref2 = result["metrics"].get("table2", {}), reference.get("table2", {})
    rows: list[list[str]] = []
    if "mid2e_aljanaki" in ref2:
        rows.append(["Mid2E (Aljanaki), paper"] + [_fmt(ref2["mid2e_aljanaki"].get(c)) for c in COLS])
    for key, label in TABLE2_MODELS.items():
        paper = ref2.get(key, {})
        if key in t2:
            rows += _ours_paper_delta(label, t2[key], paper)
        else:
            rows += _not_run_rows(label, result["not_run"].get(key, "no results"), paper)
    return ["## Table 2: emotion prediction, Pearson r on the test splits", ""] + _md_table(HEADER, rows) + [""]


def coe_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """The cost of explainability with its paired tests."""
    coe, ref2, not_run = result["metrics"].get("table2", {}), reference.get("table2", {}), result["not_run"]
    n = len(result["seeds"])
    lines = ["## Cost of explainability (CoE = r(A2E) − r(model); positive = A2E better)", "",
             "Paired across runs (same seed, same test clips): two-sided paired t-test "
             "(`scipy.stats.ttest_rel`) and Wilcoxon signed-rank test (`scipy.stats.wilcoxon`, zero "
             "differences dropped). With n runs the exact Wilcoxon test cannot give p below 2/2^n "
             f"(= {_fmt_p(min_wilcoxon_p(n))} for n = {n}).", ""]
    rows: list[list[str]] = []
    for key, (model, label) in COE_ROWS.items():
        paper = ref2.get(key, {})
        if key not in coe:
            rows += _not_run_rows(label, not_run.get(BASELINE) or not_run.get(model, "no results"), paper)
            continue
        ours = coe[key]
        rows += _ours_paper_delta(label, ours, paper)
        rows.append([f"{label}, p (t-test)"] + [_fmt_p(ours[c]["p_ttest"]) for c in COLS])
        rows.append([f"{label}, p (Wilcoxon)"] + [_fmt_p(ours[c]["p_wilcoxon"]) for c in COLS])
    lines += _md_table(HEADER, rows) + [""]
    reasons = sorted({f"{ours[c][r]}" for ours in (coe.get(k) for k in COE_ROWS) if ours
                      for c in COLS for r in ("ttest_reason", "wilcoxon_reason") if ours[c].get(r)})
    if reasons:
        lines += ["Tests shown as '–' could not be computed: " + "; ".join(reasons) + ".", ""]
    return lines


def later_rerun_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """Average r beside the lab's later re-run (when the reference file has one)."""
    later = reference.get("later_rerun")
    if not later:
        return []
    t2, not_run = result["metrics"].get("table2", {}), result["not_run"]
    lines = ["### Average r beside the lab's later re-run", "",
             f"{later.get('description', '')} Its mid-level bottleneck model is set beside our "
             "A2Mid2E-Joint (the bottleneck network trained end to end).", ""]
    rows = []
    for ours_key, ref_key, label in (("a2e", "a2e", "A2E"), ("joint", "midlevel_bottleneck", "A2Mid2E-Joint")):
        paper = (later.get(ref_key) or {}).get(AVERAGE) or {}
        ours = (t2.get(ours_key) or {}).get(AVERAGE)
        rows.append([label, _fmt_ms(ours) if ours else f"not run: {not_run.get(ours_key, 'no results')}",
                     _fmt_ms(paper), _fmt(_diff((ours or {}).get("mean"), paper.get("mean")), sign=True)])
    return lines + _md_table(["Model", "ours (avg r)", f"re-run ({later.get('n_runs', '?')} runs)", "Δ"], rows) + [""]


def _paper_average(values: Mapping[str, float] | None) -> float | None:
    """The mean of the paper's printed Table 3 values (it prints no average)."""
    return float(np.mean([values[f] for f in MIDLEVEL_FEATURES])) if values else None


def _table3_cells(t3: Mapping[str, Any], ref3: Mapping[str, Any], key: str, feature: str) -> list[str]:
    paper = (ref3.get(key) or {}).get(feature)
    if feature == AVERAGE and paper is None:
        paper = _paper_average(ref3.get(key))
    if key not in t3:
        return ["not run", _fmt(paper), ""]
    cell = t3[key][feature]
    mean = cell["mean"] if isinstance(cell, dict) else cell
    return [_fmt_ms(cell) if isinstance(cell, dict) else _fmt(cell), _fmt(paper), _fmt(_diff(mean, paper), sign=True)]


def table3_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """Table 3: per mid-level feature, ours beside the paper's values."""
    t3, ref3, not_run = result["metrics"].get("table3", {}), reference.get("table3", {}), result["not_run"]
    lines = ["## Table 3: mid-level feature prediction, Pearson r on the test split", "",
             "A2Mid+ and A2Mid are one model each (no spread); Joint is the mid-level output of the "
             "A2Mid2E-Joint runs, mean ± std over runs.", ""]
    header = ["Mid-level feature", "Aljanaki (paper)"]
    for label in TABLE3_MODELS.values():
        header += [f"{label} ours", f"{label} paper", f"{label} Δ"]
    rows = []
    for f in MIDLEVEL_FEATURES + (AVERAGE,):
        aljanaki = ref3.get("aljanaki") or {}
        row = [f if f != AVERAGE else "avg",
               _fmt(_paper_average(aljanaki) if f == AVERAGE and aljanaki else aljanaki.get(f))]
        for key in TABLE3_MODELS:
            row += _table3_cells(t3, ref3, key, f)
        rows.append(row)
    lines += _md_table(header, rows) + [""]
    lines += ["(The paper prints no average for Table 3; its 'avg' row here is the mean of its printed values.)", ""]
    missing = [f"{TABLE3_MODELS[k]}: not run: {not_run[m]}" for k, m in
               (("a2mid_plus", "a2mid_plus"), ("a2mid", "a2mid"), ("joint", "joint_midlevel")) if k not in t3 and m in not_run]
    return lines + ([f"- {m}" for m in missing] + [""] if missing else [])


def calibration_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """Test MSE against the predict-the-train-mean baseline."""
    cal = result["metrics"].get("calibration") or {}
    if not cal:
        return []
    lines = ["## Calibration: test MSE against the predict-the-train-mean baseline", "",
             "Pearson r ignores offset and scale. Here each model's test MSE (rating / 10 units, mean over "
             "runs) is set beside that of predicting every test clip as the mean of its run's training "
             "targets; ratio = mean over runs of model / baseline (below 1 = better than the baseline).", ""]
    rows = []
    for key, label in CALIBRATION_MODELS.items():
        for group in ("emotions", "midlevel"):
            c = cal.get(key, {}).get(group)
            if c:
                rows.append([label, "emotions" if group == "emotions" else "mid-level",
                             f"{c['model_mse']:.4f}", f"{c['baseline_mse']:.4f}", f"{c['ratio']:.2f}",
                             f"{c['runs_better']} of {c['n_runs']}"])
    return lines + _md_table(["Model", "targets", "model MSE", "baseline MSE", "ratio",
                              "runs better than baseline"], rows) + [""]


def leak_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """Which A2Mid saw which emotion test clips (by the recorded clip ids)."""
    leaks = result.get("leak_check") or {}
    if not leaks:
        return []
    lines = ["## Leak check: the A2Mid models against the emotion runs' test clips", "",
             "From the clip ids every stage records (`results/<stage>/splits.csv`, clips matched by their "
             "mid-level song id): the clips each A2Mid was trained on (train and validation) set against the "
             "test clips of every emotion run. An A2Mid whose predictions an emotion model reads must have "
             "seen none of them (the stage fails otherwise); A2Mid+ and A2Mid are Table 3 models only.", ""]
    rows = [[model, leak["feeds"] or "none (Table 3 only)", str(leak["trained_on"]),
             f"{leak['test_clips_seen']} of {leak['test_clips_checked']}"] for model, leak in leaks.items()]
    return lines + _md_table(["A2Mid model", "read by", "clips trained on", "emotion test clips seen"], rows) + [""]


def truth_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """The learned emotion layers against the synthetic corpus's planted weights."""
    truth = result["metrics"].get("explanation_truth")
    if not (result["synthetic"] or truth or result.get("truth_skipped")):
        return []
    lines = ["## Explanations against the planted weights (synthetic corpus)", ""]
    if result.get("truth_error"):
        return lines + [f"Not scored: {result['truth_error']}", ""]
    lines += ["The synthetic corpus plants a linear mid-level → emotion map "
              f"(`{SYNTHETIC_TRUTH_JSON}`). Each model's learned 8×7 emotion layer is compared with it "
              "per run: Pearson r over the 56 weights and the share of planted non-zero weights whose "
              "learned sign agrees (both scale-free), and the relative error ‖learned − planted‖ / ‖planted‖ "
              "on the paper's scale; mean ± std over runs.", ""]
    rows = []
    for key, label in EXPLANATION_MODELS.items():
        if truth and key in truth:
            t = truth[key]
            rows.append([label, _fmt_ms(t["weight_correlation"]), _fmt_ms(t["sign_agreement"]),
                         _fmt_ms(t["relative_error"]), str(t["n_runs"])])
        else:
            rows.append([label, (result.get("truth_skipped") or {}).get(key, "no results"), "", "", ""])
    lines += _md_table(["Model", "weight correlation", "sign agreement", "relative error", "runs"], rows) + [""]
    if result.get("output_init") == "train_mean" and truth and "joint" in truth:
        lines += ["A2Mid2E-Joint's emotion layer started at each run's Mid2E least-squares fit "
                  "(`train.output_init: train_mean`), so its agreement with the planted map largely "
                  "reflects that start, not what end-to-end training learned.", ""]
    return lines


def _stability_row(label: str, s: Mapping[str, Any]) -> list[str]:
    if s["n_runs"] < 2:
        return [label, f"n/a: stability needs 2+ runs, {s['n_runs']} here", "", "", "", str(s["n_runs"])]
    return [label, _fmt(s["pairwise_r_mean"]), _fmt(s["pairwise_r_min"]), _fmt(s["sign_agreement_mean"]),
            _fmt(s["sign_agreement_min"]), str(s["n_runs"])]


def stability_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """How much the runs' emotion layers agree with each other (right after the planted-truth section)."""
    stability = result["metrics"].get("explanation_stability") or {}
    skipped = result.get("stability_skipped") or {}
    if not (stability or skipped):
        return []
    lines = ["## Stability of the explanations across runs", "",
             "Each run (seed: its own split and initialisation) learns its own 8×7 mid-level → emotion "
             "layer; here the runs are compared with each other, not with any truth. Pairwise r is the "
             "Pearson r between two runs' 56 weights (mean and minimum over all pairs of runs): 1 = every "
             "run learned the same emotion layer up to scale. Sign agreement is, per weight, the share of "
             "runs whose sign is the most common one (mean and minimum over the 56 weights): 1 = all runs "
             "agree on every effect's direction; a weight on which two runs split scores 0.50. "
             "Stability needs 2+ runs.", ""]
    rows = []
    for key, label in EXPLANATION_MODELS.items():
        if key in stability:
            rows.append(_stability_row(label, stability[key]))
        else:
            rows.append([label, skipped.get(key, "no results"), "", "", "", ""])
    lines += _md_table(["Model", "pairwise r (mean)", "pairwise r (min)", "sign agreement (mean)",
                        "sign agreement (min)", "runs"], rows) + [""]
    for key, label in EXPLANATION_MODELS.items():
        s = stability.get(key)
        if s and s["n_runs"] >= 2 and s["degenerate_runs"]:
            pairs = s["n_runs"] * (s["n_runs"] - 1) // 2
            lines += [f"- {label}: {s['degenerate_runs']} run(s) with a constant or non-finite emotion layer, "
                      f"whose r with any run is undefined; pairwise r is over the other {s['n_pairs']} of "
                      f"{pairs} pairs" + (" (none: n/a)" if not s["n_pairs"] else "") + "."]
    if any(s["n_runs"] >= 2 and s["degenerate_runs"] for s in stability.values()):
        lines += [""]
    if result.get("output_init") == "train_mean" and "joint" in stability:
        lines += ["A2Mid2E-Joint's emotion layer started at each run's Mid2E least-squares fit "
                  "(`train.output_init: train_mean`), so its stability largely reflects that start.", ""]
    signs = (result.get("stability_sign_agreement") or {}).get("joint")
    if signs is not None:
        lines += [f"Sign agreement per weight, A2Mid2E-Joint ({stability['joint']['n_runs']} runs; rows "
                  "emotions, columns mid-level features):", ""]
        lines += _md_table(["Emotion"] + list(MIDLEVEL_FEATURES),
                           [[e] + [_fmt(float(x)) for x in row] for e, row in zip(EMOTIONS, signs)]) + [""]
    return lines


def footer_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    return ["Table 4 (song-level profiles of Soundtracks #153 and #322) is kept in the reference file "
            "for the song-level explanation, not evaluated here.", ""]


#: The report's sections, in order.
def verdict_section(result: Mapping[str, Any], reference: Mapping[str, Any]) -> list[str]:
    """The verdict (:mod:`midlevel_emotion.evaluation.check`): the paper's bands, or the embedded expectations."""
    verdict = result.get("verdict")
    if verdict is None:
        return []
    return ["## Verdict", "", "`midlevel-emotion check` prints the same table; "
            "`midlevel-emotion check --against <revision>` compares two revisions run by run.", "",
            verdict.markdown().replace("### ", "#### ", 1)]


SECTIONS: tuple[Section, ...] = (header_section, verdict_section, table2_section, coe_section, later_rerun_section, table3_section,
                                 calibration_section, leak_section, truth_section, stability_section, footer_section)


def render_report(result: Mapping[str, Any], reference: Mapping[str, Any]) -> str:
    """The Markdown report: Tables 2 and 3 as in the paper, ours beside the paper's values.

    Parameters
    ----------
    result : mapping
        What :func:`midlevel_emotion.evaluation.evaluate_stage.evaluate` computed: ``corpus``, ``seeds``,
        ``synthetic``, ``metrics``, ``not_run`` (model -> reason), ``leak_check``,
        ``truth_skipped``, ``truth_error``, ``stability_skipped``, ``stability_sign_agreement``,
        ``reference_path``, ``output_init``.
    reference : mapping
        The paper's values (:func:`midlevel_emotion.evaluation.evaluate_stage.load_reference`).
    """
    return "\n".join(line for section in SECTIONS for line in section(result, reference))
