#!/usr/bin/env bash
# Run the whole pipeline (default: the embedded synthetic corpus), creating .venv if needed.
#   bash scripts/repro.sh            # = dvc repro
#   bash scripts/repro.sh evaluate   # any dvc repro arguments
source "$(dirname "$0")/venv.sh"
exec dvc repro "$@"
