"""DVC stage `train_a2mid`: A2Mid+, A2Mid and the A2Mid network behind A2Mid2E (Table 3).

    python stages/train_a2mid.py --models models/a2mid --metrics metrics/a2mid.json --plots plots/training/a2mid
"""

from _common import configure_cpu_from_params, parse

configure_cpu_from_params()  # train.reproducible: before numpy and torch load

from midlevel_emotion.protocol import Context, train_a2mid  # noqa: E402

if __name__ == "__main__":
    args, params = parse(__doc__.splitlines()[0], "models", "metrics", "plots")
    metrics = train_a2mid(Context.load(args.raw, args.spectrograms, params), args.models, args.metrics, args.plots)
    print("train_a2mid:", metrics.get("status") or {k: v["test"]["mean"] for k, v in metrics.items()
                                                   if isinstance(v, dict) and v.get("test")})
