#!/usr/bin/env bash
# Run the test suite, creating .venv if needed. Extra arguments go to pytest.
source "$(dirname "$0")/venv.sh"
exec python -m pytest "$@"
