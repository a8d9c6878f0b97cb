"""DVC stage `fit_mid2e`: linear Mid2E on annotations and the A2Mid2E linear layer, per run.

    python stages/fit_mid2e.py --a2mid models/a2mid/a2mid_for_a2mid2e.pt --models models/mid2e --results results/mid2e --metrics metrics/mid2e.json
"""

from _common import configure_cpu_from_params, parse, run

configure_cpu_from_params()  # train.reproducible: before numpy and torch load

from midlevel_emotion.experiments.protocol import Context, fit_mid2e  # noqa: E402


def main() -> None:
    args, params = parse(__doc__.splitlines()[0], "a2mid", "models", "results", "metrics")
    metrics = fit_mid2e(Context.load(args.raw, args.spectrograms, params), args.a2mid, args.models,
                        args.results, args.metrics)
    print("fit_mid2e:", metrics.get("status") or "per-run Pearson r in " + args.metrics)


if __name__ == "__main__":
    run(main, "fit_mid2e")
