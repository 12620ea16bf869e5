#!/usr/bin/env bash
# Sets up everything bokehkit needs in ./.venv from the repository's own pinned files.
#   scripts/setup.sh          the engine (light: no torch)
#   scripts/setup.sh --dev    plus what the tests and benchmarks need
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "bokehkit needs Python 3.10 or newer"'
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip_install() { .venv/bin/python -m pip install --disable-pip-version-check -q "$@"; }
if [ "${1:-}" = "--dev" ]; then
    pip_install -r requirements/dev.txt
else
    pip_install -r requirements/core.txt
fi
pip_install --no-deps -e .
echo "bokehkit is set up in .venv ($(.venv/bin/bokehkit --version))" >&2
