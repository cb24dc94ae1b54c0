"""Smoke test of benchmarks/faults.py: its --quick path kills, races and corrupts real processes and files, and
finds no clip lost, duplicated or resurrected.

Runs the suite in a subprocess (as CI would) and reads its --json document: every fault ran at least one trial,
the three counts that must be 0 are 0, and the exit code (non-zero whenever one of them is not) is 0. It takes
4-7 minutes on a busy 2-core CPU (every CLI process loads the model), hence the generous timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ["build-kill", "add-kill", "remove-kill", "purge-kill", "remove-vs-add", "writers-2add", "writers-3add",
          "writers-2build", "faiss-corrupt", "settings-corrupt"]


def test_fault_suite_quick_loses_duplicates_and_resurrects_nothing():
    out = subprocess.run([sys.executable, "benchmarks/faults.py", "--quick", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert out.stdout.strip(), out.stderr[-3000:]
    doc = json.loads(out.stdout)
    by_name = {r["fault"]: r for r in doc["faults"]}
    assert sorted(by_name) == sorted(FAULTS)
    for name, r in by_name.items():
        assert r["trials"] >= 1, name
        assert (r["lost"], r["duplicated"], r["resurrected"]) == (0, 0, 0), (name, r["other"])
    assert doc["ok"] is True
    assert out.returncode == 0, out.stderr[-3000:]
