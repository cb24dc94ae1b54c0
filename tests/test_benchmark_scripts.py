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
    """The README's `benchmarks/run_all.py --quick`: every part runs and prints its table (curation's quick run
    is tests/test_curation.py's, in-process, with its own checks)."""
    text = _run("benchmarks/run_all.py", "--quick", "--only", "quality,fidelity,peer_check,search,memorization")
    for part in ("quality", "fidelity", "peer_check", "search", "memorization"):
        assert f"## {part}:" in text, part
    assert re.search(r"\| influence \(flow mask\) \| 2 \| [01]\.\d\d \|", text)   # memorization's table
    assert "FAILED" not in text
    q_text = text[text.index("## quality:"):]
    q_text = q_text[:q_text.index("\n## ", 1)] if "\n## " in q_text[1:] else q_text   # the quality part alone
    quality = {r[0]: r for r in _rows(q_text, "influence") + _rows(q_text, "motion features")
               + _rows(q_text, "chance")}
    for kind in ("influence mse, flow mask", "influence mse, no mask", "influence td, flow mask",
                 "influence mse, flow mask, mask-swap", "motion features (both)", "chance"):
        assert kind in quality, kind
        precision = float(quality[kind][1].split("±")[0])
        assert 0.0 <= precision <= 1.0
    assert quality["influence mse, flow mask, mask-swap"][3].strip()  # the donor column is filled for swaps
    assert re.search(r"\| total \| \d+ \|", text)


def test_search_benchmark_json_has_every_field():
    """`benchmarks/search.py --json`: one JSON object per (data, kind) with the fields the issue names."""
    import json

    text = _run("benchmarks/search.py", "--n", "4000", "--dim", "32", "--data", "clustered", "--kind",
                "compressed", "--clusters", "40", "--queries", "20", "--batch", "50", "--json")
    rows = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(rows) == 1
    r = rows[0]
    for key in ("n", "dim", "kind", "build_s", "p50_ms", "p99_ms", "batch_qps", "recall_at_10", "resident_bytes",
                "catchup_ms", "add_10k_s"):
        assert key in r, key
    assert r["n"] == 4000 and r["kind"] == "compressed" and r["built"] == "compressed" and r["add_ok"]
    assert r["recall_at_10"] >= 0.9 and 0 < r["resident_bytes"] < 4000 * 32 * 4 and r["catchup_ms"] > 0


def test_vae_sweep_benchmark_quick():
    text = _run("benchmarks/vae_sweep.py", "--seconds", "2", "--variants", "shipped", "base", "--clips", "1",
                "--pool", "4")
    rows = {r[0]: r for r in _rows(text, "shipped") + _rows(text, "base")}
    assert set(rows) == {"shipped", "base"} and rows["shipped"][1] == "0" and int(rows["base"][1]) >= 1
    assert float(rows["base"][4]) > 0
    # the shipped VAE (thousands of steps) reconstructs held-out shapes better than one trained for two seconds
    assert float(rows["shipped"][5]) > float(rows["base"][5]) + 3
