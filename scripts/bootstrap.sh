#!/bin/sh
# Creates .venv from the lock file, and again whenever the lock or pyproject changes.
# Silent when there is nothing to do (so `make -s env` prints only the exports).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LOCK=requirements-dev.lock
KSERVE_SDK_VERSION=0.21.0
STAMP=.venv/.installed
want=$(cat "$LOCK" pyproject.toml scripts/bootstrap.sh | sha256sum | cut -c1-16)
[ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && exit 0

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "mlflow-lab needs Python 3.11 (set PYTHON=/path/to/python3.11); found: $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -m venv .venv; then
    echo "creating the virtual environment failed; on Debian/Ubuntu run: sudo apt-get install python3-venv" >&2
    exit 1
fi
echo "installing the Python environment from $LOCK into .venv (first run takes a few minutes)" >&2
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$LOCK"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
# KServe's API types, for the tests that validate the lab's KServe objects offline
# (tests/static/api_types.py). Unpacked, not installed: the SDK package pins pandas < 3.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
    --target .venv/kserve-sdk "kserve==$KSERVE_SDK_VERSION"
echo "$want" > "$STAMP"
