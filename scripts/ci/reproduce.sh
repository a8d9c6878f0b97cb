#!/usr/bin/env bash
# Reproduce the paper: apply a profile, get the data (DVC remote, else the download stage),
# run the pipeline, check the verdict, push results to the remote.
#
#   bash scripts/ci/reproduce.sh [PROFILE] [OUT.md]     # PROFILE: paper (default), or a .yaml path
#
# Exits with the verdict's status (1 = outside the bands), after pushing what was computed.
# A GPU runner installs a CUDA build of torch first: TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../venv.sh"
profile="${1:-paper}"
out="${2:-verdict.md}"
python scripts/profile.py "$profile"
has_remote=$(dvc remote list | wc -l)
if [ "$has_remote" -gt 0 ]; then
    # Whatever the remote already holds for these params (data, spectrograms, models) is
    # pulled instead of recomputed; missing outputs are simply computed by `dvc repro`.
    dvc pull --allow-missing || echo "dvc pull: some outputs are not on the remote yet; computing them" >&2
fi
dvc repro
status=0
midlevel-emotion check --out "$out" || status=1
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$out" >> "$GITHUB_STEP_SUMMARY"
fi
if [ "$has_remote" -gt 0 ]; then
    dvc push
fi
echo "verdict written to $out (exit $status)" >&2
exit "$status"
