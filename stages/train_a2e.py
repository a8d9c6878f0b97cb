"""DVC stage `train_a2e`: the A2E baseline, one model per run (seed and split).

    python stages/train_a2e.py --models models/a2e --results results/a2e --metrics metrics/a2e.json --plots plots/training/a2e
"""

from _common import configure_cpu_from_params, parse, run

configure_cpu_from_params()  # train.reproducible: before numpy and torch load

from midlevel_emotion.experiments.protocol import Context, train_emotion_runs  # noqa: E402


def main() -> None:
    args, params = parse(__doc__.splitlines()[0], "models", "results", "metrics", "plots")
    metrics = train_emotion_runs(Context.load(args.raw, args.spectrograms, params), "a2e",
                                 args.models, args.results, args.metrics, args.plots)
    print("train_a2e:", metrics.get("status") or "per-run Pearson r in " + args.metrics)


if __name__ == "__main__":
    run(main, "train_a2e")
