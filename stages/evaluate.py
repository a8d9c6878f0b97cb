"""DVC stage `evaluate`: Tables 2 and 3, the cost of explainability with paired tests, and the report.

    python stages/evaluate.py --results results --models models --raw data/raw \
        --reference reference/paper.json --out-metrics metrics/evaluate.json \
        --headline metrics/headline.json --checks reference/checks.json --report reports/evaluation.md --params params.yaml

All logic lives in :func:`midlevel_emotion.evaluation.evaluate_stage.evaluate`; this script only parses
arguments and writes the three outputs atomically.
"""

import argparse

from _common import run

from midlevel_emotion.evaluation.evaluate_stage import evaluate
from midlevel_emotion.core.fileio import write_json, write_text
from midlevel_emotion.core.params import load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="the training stages' results folders")
    parser.add_argument("--models", default="models", help="models/ (linear.json, Joint checkpoints)")
    parser.add_argument("--raw", default="data/raw", help="data/raw (synthetic_truth.json, if any)")
    parser.add_argument("--reference", default="reference/paper.json", help="the paper's published values")
    parser.add_argument("--out-metrics", required=True, help="scalar metrics JSON to write")
    parser.add_argument("--headline", required=True, help="the headline metrics JSON to write")
    parser.add_argument("--checks", default="reference/checks.json", help="the verdict's rules")
    parser.add_argument("--report", required=True, help="Markdown report to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    result = evaluate(args.results, args.models, args.raw, args.reference, load_params(args.params),
                      checks_path=args.checks)
    write_json(args.out_metrics, result["metrics"])
    write_json(args.headline, result["headline"])
    write_text(args.report, result["report"])
    not_run = ", ".join(sorted(result["not_run"])) or "none"
    print(f"evaluate: {len(result['seeds'])} runs on the {result['corpus']} corpus; not run: {not_run}; "
          f"wrote {args.out_metrics} and {args.report}")
    return 0


if __name__ == "__main__":
    run(main, "evaluate")
