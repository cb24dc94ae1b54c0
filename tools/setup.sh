#!/usr/bin/env bash
# Create (or reuse) a virtualenv with motive-index and its test tools installed.
#   bash tools/setup.sh            -> .venv/ (override with VENV=path)
# torch goes in first, so pip does not pull a multi-GB CUDA build on a CPU machine; set TORCH_SPEC to choose
# another build (e.g. TORCH_SPEC="torch" on a CUDA machine).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
echo "motive-index installed in $VENV"
