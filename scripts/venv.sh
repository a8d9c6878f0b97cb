# Sourced by repro.sh and test.sh: create .venv on first use, re-install when the
# dependency files change, then activate it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${MIDLEVEL_EMOTION_ENV:-}" = "active" ]; then
    # Use the environment already on PATH as is (the test suite runs these scripts in
    # throwaway repositories this way, with the project's own .venv active).
    return 0
fi
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    # The oldest Python tested is 3.11.2 (Debian 12's python3; pyproject.toml's requires-python)
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "scripts/venv.sh: $("$PYTHON" --version 2>&1 || echo "$PYTHON: not found") is not supported:" \
             "midlevel-emotion needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    echo "creating .venv with $("$PYTHON" --version)" >&2
    "$PYTHON" -m venv .venv
fi
stamp=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
    # constraints.txt pins every package (torch 2.13.0 CPU build included) so a
    # reproduction installs the versions this project was tested with.
    .venv/bin/python -m pip install --quiet --upgrade pip
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        # e.g. https://download.pytorch.org/whl/cu130 on a GPU machine: the same torch
        # release as constraints.txt pins, built for CUDA (2.13.0+cu130 satisfies ==2.13.0)
        .venv/bin/python -m pip install --quiet -c constraints.txt --index-url "$TORCH_INDEX_URL" torch
    fi
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
    echo "$stamp" > .venv/.installed
fi
# shellcheck disable=SC1091
source .venv/bin/activate
