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


def test_run_all_quick_prints_every_trust_table():
    """The README's `benchmarks/run_all.py --quick`: every part runs and prints its table."""
    text = _run("benchmarks/run_all.py", "--quick")
    for part in ("quality", "fidelity", "peer_check", "search", "curation"):
        assert f"## {part}:" in text, part
    assert "FAILED" not in text
    quality = {r[0]: r for r in _rows(text, "influence") + _rows(text, "motion features") + _rows(text, "chance")}
    for kind in ("influence mse, flow mask", "influence mse, no mask", "influence td, flow mask",
                 "influence mse, flow mask, mask-swap", "motion features (both)", "chance"):
        assert kind in quality, kind
        precision = float(quality[kind][1].split("±")[0])
        assert 0.0 <= precision <= 1.0
    assert quality["influence mse, flow mask, mask-swap"][3].strip()  # the donor column is filled for swaps
    assert re.search(r"\| total \| \d+ \|", text)
