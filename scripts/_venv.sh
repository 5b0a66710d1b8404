# Shared by scripts/up and scripts/test: a project virtualenv with casewatch installed.
# Sourced, not run. Uses $PYTHON (default: python3, which must be 3.11 or newer).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "casewatch needs Python 3.11 or newer; '$PYTHON' is $("$PYTHON" --version 2>&1 || echo missing)." >&2
    echo "Set PYTHON=/path/to/python3.11 and run again." >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$PYTHON" -m venv .venv; then
        rm -rf .venv
        echo "Could not create a virtualenv with '$PYTHON -m venv'." >&2
        echo "On Debian or Ubuntu: apt install python3-venv, then run again." >&2
        exit 2
    fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$CASEWATCH_EXTRAS]"
