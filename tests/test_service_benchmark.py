"""Smoke test of benchmarks/service.py: its --quick --json path runs end to end and its document is sane.

Runs the benchmark in a subprocess (as a user would): a real ``motive-index serve`` process on loopback, real
uploads of synthetic mp4s, the tiny Wan. Every row is there (HTTP and in-process at each client count, lookup at
each client count), no request failed (every status 200), latencies are positive with p99 >= p50, the HTTP /
in-process ratios are present, and the where-the-time-goes table adds up to its total.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")


def _check_row(r: dict, requests: int) -> None:
    assert r["requests"] == requests and r["failed"] == 0, r
    assert set(r["statuses"]) <= {"200", "ok"}, r
    assert 0 < r["p50_ms"] <= r["p99_ms"] < 600_000, r
    assert r["rps"] > 0 and r["wall_s"] > 0, r


def test_service_benchmark_quick_json():
    out = subprocess.run([sys.executable, "benchmarks/service.py", "--quick", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    doc = json.loads(out.stdout)
    assert doc["machine"] and doc["matmul_anchor_ms"] > 0
    cfg = doc["config"]
    clients, requests = cfg["clients"], cfg["requests"]
    assert clients == [1, 2] and requests == 3 and cfg["queue"] >= max(clients)

    # 1 and 2: every (mode, clients) row, none failed, stage times from the responses and the access log
    rows = {(r["mode"].split(" ")[0], r["clients"]): r for r in doc["query"]["rows"]}
    assert set(rows) == {(m, n) for m in ("http", "in-process") for n in clients}
    for (mode, n), r in rows.items():
        _check_row(r, requests)
        st = r["stages_ms"]
        assert {"decode", "flow", "vae", "fwd_bwd", "search", "total"} <= set(st), st
        assert all(v >= 0 for v in st.values()) and st["total"] > 0
        assert st["total"] <= r["mean_ms"] * 1.01 + 1
        if mode == "http":
            assert "upload" in st and r["server_ms"] > 0 and r["access_log_lines"] == requests
            assert r["server_ms"] <= r["mean_ms"] + 1  # the client waits at least as long as the server works
    ratios = {r["clients"]: r for r in doc["query"]["ratios"]}
    assert set(ratios) == set(clients)
    for r in ratios.values():
        assert math.isfinite(r["p50_ratio"]) and r["p50_ratio"] > 0 and r["rps_ratio"] > 0

    # 3: lookup at the quick store size
    lk = doc["lookup"]
    assert lk["n"] == cfg["lookup_n"] == 2000 and lk["dim"] == doc["dim"]
    assert lk["fill_s"] > 0 and lk["ready_s"] > 0 and lk["search"]["kind"] in ("flat", "ivf")
    lrows = {(r["mode"].split(" ")[0], r["clients"]): r for r in lk["rows"]}
    assert set(lrows) == {(m, n) for m in ("http", "in-process") for n in cfg["lookup_clients"]}
    for (mode, _), r in lrows.items():
        _check_row(r, cfg["lookup_requests"])
        if mode == "http":
            assert 0 < r["server_ms"] and r["stages_ms"]["search"] > 0
    assert {r["clients"] for r in lk["ratios"]} == set(cfg["lookup_clients"])
    assert all(r["p50_ratio"] > 0 and r["rps_ratio"] > 0 for r in lk["ratios"])
    for split in (lk["split_ms"], doc["query"]["split_ms"]):
        assert len(split) == 5 and all(v > 0 for v in split.values()), split

    # 4: where the time goes adds up to the serial query's latency
    b = doc["breakdown"]
    assert b["queries"] == requests
    total = b["rows"][-1]
    assert total["local_share"] == total["http_share"] == 1.0
    parts = b["rows"][:-1]
    assert {"vae", "fwd_bwd", "decode"} <= {r["stage"] for r in parts}
    assert sum(r["local_ms"] or 0 for r in parts) == pytest.approx(total["local_ms"], rel=1e-6)
    assert sum(r["http_ms"] or 0 for r in parts) == pytest.approx(total["http_ms"], rel=1e-6)
    vae = doc["vae"]
    assert vae["default_ms"] > 0 and vae["one_thread_ms"] > 0 and vae["shape"][0] == 17
    assert sum(g["share"] for g in vae["split"].values()) == pytest.approx(1.0)
