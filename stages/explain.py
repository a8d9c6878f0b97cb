"""DVC stage `explain`: Figures 3-5, Table 4 and their plot data (paper Section 7).

    python stages/explain.py --raw data/raw --spectrograms data/spectrograms --models models --plots plots --reports reports --params params.yaml
"""

import argparse

from _common import configure_cpu_from_params, read_params, run

configure_cpu_from_params()  # train.reproducible: the same forward passes, so the same plot data, anywhere

from midlevel_emotion.explanation.explain_stage import explain_stage  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", default="data/raw")
    parser.add_argument("--spectrograms", default="data/spectrograms")
    parser.add_argument("--models", default="models")
    parser.add_argument("--plots", default="plots")
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    summary = explain_stage(args.raw, args.spectrograms, args.models, args.plots, args.reports,
                            read_params(args.params))
    reasons: dict[str, list[str]] = {}
    for name, reason in summary["not_run"].items():
        reasons.setdefault(reason, []).append(name)
    for reason, names in reasons.items():
        print(f"explain: not made ({', '.join(names)}): {reason} A placeholder stating this was written instead.")
    if summary["pair"]:
        pair = summary["pair"]
        print(f"explain: song pair #{pair['a']} / #{pair['b']} (rule {pair['rule']}) -> {args.reports}/song_pair.md")
    print(f"explain: wrote {', '.join(summary['written']) or 'no figures'} under {args.plots} and {args.reports}")
    return 0


if __name__ == "__main__":
    run(main, "explain")
