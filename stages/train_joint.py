"""DVC stage `train_joint`: A2Mid2E-Joint, one model per run (seed and split).

    python stages/train_joint.py --models models/joint --metrics metrics/joint.json --plots plots/training/joint
"""

from _common import configure_cpu_from_params, parse

configure_cpu_from_params()  # train.reproducible: before numpy and torch load

from midlevel_emotion.protocol import Context, train_emotion_runs  # noqa: E402

if __name__ == "__main__":
    args, params = parse(__doc__.splitlines()[0], "models", "metrics", "plots")
    metrics = train_emotion_runs(Context.load(args.raw, args.spectrograms, params), "joint",
                                 args.models, args.metrics, args.plots)
    print("train_joint:", metrics.get("status") or "per-run Pearson r in " + args.metrics)
