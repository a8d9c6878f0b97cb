"""DVC stage `train_joint`: A2Mid2E-Joint, one model per run (seed and split).

    python stages/train_joint.py --models models/joint --results results/joint --metrics metrics/joint.json --plots plots/training/joint
"""

from _common import configure_cpu_from_params, parse, run

configure_cpu_from_params()  # train.reproducible: before numpy and torch load

from midlevel_emotion.experiments.protocol import Context, train_emotion_runs  # noqa: E402


def main() -> None:
    args, params = parse(__doc__.splitlines()[0], "models", "results", "metrics", "plots")
    metrics = train_emotion_runs(Context.load(args.raw, args.spectrograms, params), "joint",
                                 args.models, args.results, args.metrics, args.plots)
    print("train_joint:", metrics.get("status") or "per-run Pearson r in " + args.metrics)


if __name__ == "__main__":
    run(main, "train_joint")
