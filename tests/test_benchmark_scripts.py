"""The scale benchmarks still run (their --quick / tiny paths), and print tables with sane numbers."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _rows(text: str, first: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith(f"| {first}")]


def test_projection_benchmark_quick():
    text = _run("benchmarks/projection.py", "--quick", "--reps", "1")
    rows = _rows(text, "2^")
    assert [r[0] for r in rows] == ["2^20", "2^22"]
    for r in rows:
        streamed, dense = float(r[1].replace(",", "")), float(r[4].replace(",", ""))
        assert streamed > 0 and dense > 0
    assert re.search(r"final transform per clip [\d.]+ ms", text)


def test_wan_scale_benchmark_tiny_cpu():
    text = _run("benchmarks/wan_scale.py", "--preset", "tiny", "--device", "cpu", "--repeats", "1",
                "--precision", "fp32", "bf16", "--checkpointing", "off")
    rows = _rows(text, "bf16") + _rows(text, "fp32")
    assert len(rows) == 2
    for r in rows:
        assert float(r[2]) > 0 and float(r[3]) > 0 and float(r[4]) > 0 and r[5] == "-"
