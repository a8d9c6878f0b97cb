"""DVC stage `train_a2mid`: A2Mid+, A2Mid and the A2Mid network behind A2Mid2E (Table 3).

    python stages/train_a2mid.py --models models/a2mid --results results/a2mid --metrics metrics/a2mid.json --plots plots/training/a2mid
"""

from _common import configure_cpu_from_params, parse, run

configure_cpu_from_params()  # train.reproducible: before numpy and torch load

from midlevel_emotion.experiments.protocol import Context, train_a2mid  # noqa: E402


def main() -> None:
    args, params = parse(__doc__.splitlines()[0], "models", "results", "metrics", "plots")
    metrics = train_a2mid(Context.load(args.raw, args.spectrograms, params), args.models, args.results,
                          args.metrics, args.plots)
    print("train_a2mid:", metrics.get("status") or {model: run["midlevel"]["mean"] for model, runs in metrics.items()
                                                   if isinstance(runs, dict) for run in runs.values()
                                                   if run.get("n_test")})


if __name__ == "__main__":
    run(main, "train_a2mid")
