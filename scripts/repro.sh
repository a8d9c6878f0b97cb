#!/usr/bin/env bash
# Run the pipeline (`dvc repro`), creating .venv if needed. Extra arguments go to dvc repro.
#   bash scripts/repro.sh                    # the embedded default
#   bash scripts/repro.sh --profile paper    # apply profiles/paper.yaml to params.yaml first
source "$(dirname "$0")/venv.sh"
if [ "${1:-}" = "--profile" ]; then
    python scripts/profile.py "${2:?--profile needs a name in profiles/ or a .yaml path}"
    shift 2
fi
exec dvc repro "$@"
