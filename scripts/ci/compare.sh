#!/usr/bin/env bash
# Pull-request verdict: the headline metrics diff against the base revision and the
# noise-aware comparison of `midlevel-emotion check --against`, as Markdown.
#
#   bash scripts/ci/compare.sh BASE_REV [OUT.md]
#
# Writes OUT.md (default verdict.md), appends it to $GITHUB_STEP_SUMMARY when set, and
# exits 1 when the check finds a regression beyond run-to-run noise or when the working
# tree's own run fails its expectations. Needs the results of `dvc repro` in the working tree.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../venv.sh"
base="${1:?usage: compare.sh BASE_REV [OUT.md]}"
out="${2:-verdict.md}"
status=0
{
    echo "## midlevel-emotion: this change against \`$base\`"
    echo
    echo "### Headline metrics (\`dvc metrics diff $base\`)"
    echo
    dvc metrics diff --md "$base" || echo "(dvc metrics diff failed)"
    echo
} > "$out"
midlevel-emotion check --against "$base" --out "$out.against" || status=1
midlevel-emotion check --out "$out.own" || status=1
cat "$out.against" "$out.own" >> "$out"
rm -f "$out.against" "$out.own"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    cat "$out" >> "$GITHUB_STEP_SUMMARY"
fi
echo "verdict written to $out (exit $status)" >&2
exit "$status"
