#!/usr/bin/env bash
# Set up (tools/setup.sh) and run the whole test suite. Exit code: pytest's; "no tests collected" (5) fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
VENV=${VENV:-.venv}
set +e
"$VENV/bin/python" -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
fi
exit "$rc"
