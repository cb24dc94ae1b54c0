#!/usr/bin/env bash
# Set up (tools/setup.sh) and run the whole test suite. Exit code: pytest's; "no tests collected" (5) fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# tests/test_report.py renders the evidence report in headless Chromium (/usr/bin/chromium): install it if missing
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
  echo "installing chromium for tests/test_report.py (apt-get)"
  { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "warning: could not install chromium; tests/test_report.py will fail" >&2
fi
VENV=${VENV:-.venv}
set +e
"$VENV/bin/python" -m pytest -q --durations=15 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
fi
exit "$rc"
