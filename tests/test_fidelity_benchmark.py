"""Smoke test of benchmarks/fidelity.py: its --quick path runs end to end and prints sane tables.

Runs the benchmark in a subprocess (as a user would) and reads the markdown tables it prints: the expected rows
are there, every correlation is in [-1, 1] and every overlap in [0, 1], and the numbers say what a working
projection and estimator must (more dims never make the projection much worse; Fastfood 512 is about as good as
a dense Gaussian 512; projecting changes the query rankings little).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PM = re.compile(r"^(-?\d+\.\d+) ± (\d+\.\d+)$")


def _mean(cell: str) -> float:
    m = PM.match(cell.strip())
    assert m, f"not a 'mean ± sd' cell: {cell!r}"
    return float(m.group(1))


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """The body rows (cells stripped) of the markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fidelity") / "fidelity.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fidelity.py"), "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout, json.loads(out.read_text())


def test_projection_table_has_the_rows_and_sane_values(run):
    text, _ = run
    rows = _table_rows(text, "| dim | projection |")
    got = {(int(r[0]), r[1]): r for r in rows}
    assert set(got) == {(128, "fastfood"), (512, "fastfood"), (2048, "fastfood"),
                        (128, "dense gaussian"), (512, "dense gaussian")}, sorted(got)
    for (dim, _), r in got.items():
        spearman, pearson, err = _mean(r[2]), _mean(r[3]), _mean(r[4])
        assert -1 <= spearman <= 1 and -1 <= pearson <= 1, r
        assert 0 <= err <= 2, r
        assert float(r[5]) == pytest.approx(1 / math.sqrt(dim), abs=1e-3)
    sp = {key: _mean(r[2]) for key, r in got.items()}
    assert sp[(2048, "fastfood")] > sp[(128, "fastfood")] - 0.05, sp
    assert sp[(512, "fastfood")] > 0.8, sp                       # 0.97 measured: cosines survive projection
    assert abs(sp[(512, "fastfood")] - sp[(512, "dense gaussian")]) < 0.1, sp
    err = {key: _mean(r[4]) for key, r in got.items()}
    assert err[(2048, "fastfood")] < err[(128, "fastfood")], err   # the error shrinks with dim
    assert "Spearman 0.747 at 512" in text


def test_estimator_table_has_the_rows_and_sane_values(run):
    text, _ = run
    rows = _table_rows(text, "| A | B |")
    assert len(rows) == 7, rows
    assert rows[0][0].startswith("1 sample (t=751, ε seed 0), fastfood 512")
    assert rows[0][1].startswith("4 samples (t=125..875, ε seed 0), fastfood 512")
    for r in rows:
        overlap, rho = _mean(r[2]), _mean(r[3])
        assert 0 <= overlap <= 1 and -1 <= rho <= 1, r
    projection_only = rows[-1]
    assert projection_only[0].endswith("fastfood 512") and projection_only[1].endswith("exact")
    assert _mean(projection_only[3]) > 0.7, projection_only     # 0.97 measured
    assert "66% agreement" in text


def test_header_and_json_agree_with_the_tables(run):
    text, data = run
    assert text.lstrip().startswith("machine: ") and "total wall time" in text
    assert data["engine_check_max_abs"] < 1e-4
    assert data["num_params"] > 0 and data["args"]["quick"] is True
    fast512 = next(r for r in data["projection"]["rows"] if r["dim"] == 512 and r["kind"] == "fastfood")
    assert len(fast512["per_seed"]) == len(data["args"]["seeds"]) == 2
    assert f"| 512 | fastfood | {fast512['spearman'][0]:.3f} ± {fast512['spearman'][1]:.3f} |" in text
    for r in data["estimator"]["rows"]:
        assert len(r["overlap_per_query"]) == len(r["spearman_per_query"]) == data["args"]["queries"]
