# Sourced by repro.sh and test.sh: create .venv on first use, re-install when the
# dependency files change, then activate it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $("$PYTHON" --version)" >&2
    "$PYTHON" -m venv .venv
fi
stamp=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
    # constraints.txt pins every package (torch 2.13.0 CPU build included) so a
    # reproduction installs the versions this project was tested with.
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
    echo "$stamp" > .venv/.installed
fi
# shellcheck disable=SC1091
source .venv/bin/activate
