"""Smoke test of benchmarks/distributed.py: its --quick --json path runs end to end and its document is sane.

Runs the benchmark in a subprocess (as a user would): real synthetic mp4s, the tiny Wan saved to disk, a local
build and a Ray build with 1 worker on a local Ray runtime (``ray.init(num_cpus=2)``), then one old/new pair of
local builds, the old code from a git worktree of the commit before the refactor, then one build into a local
folder and one into moto's S3 server. Both rows are there and
finished with every clip, clips/s > 0, the Ray build's vectors equal the local build's (<= 1e-5), the old and
the new code really were the ones imported, their vectors equal too, and the ratio new / old is present and
positive; the worktree is gone afterwards. The before/after part may skip itself only where this checkout has
no git history of the refactor (checked here with git, so a skip anywhere else fails).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = "pipeline.py: the build loop out of api.py"
BOUND = 1e-5  # the ray extra is part of the test install: missing, the benchmark fails (never skips)


def _has_refactor_history() -> bool:
    """Whether this checkout's git history holds the refactor's commit and its parent."""
    try:
        log = subprocess.run(["git", "log", "--format=%H %s", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    found = [line.split(" ", 1)[0] for line in log.stdout.splitlines() if line.split(" ", 1)[-1].startswith(SUBJECT)]
    if log.returncode or not found:
        return False
    parent = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{found[-1]}^"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    return parent.returncode == 0


def test_distributed_benchmark_quick_json():
    out = subprocess.run([sys.executable, "benchmarks/distributed.py", "--quick", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-4000:]
    doc = json.loads(out.stdout)
    assert doc["machine"] and doc["matmul_anchor_ms"] > 0 and doc["exit_code"] == 0
    cfg = doc["config"]
    n = cfg["clips"]
    assert cfg["quick"] and n == 6 and cfg["ray_workers"] == [1] and cfg["pairs"] == 1

    # 1: the local row and the Ray row with 1 worker, both finished with every clip; Ray's startup apart
    ray_doc = doc["ray"]
    assert ray_doc["ray_init_s"] > 0 and not ray_doc["stuck"]
    rows = {(r["build"], r["workers"]): r for r in ray_doc["rows"]}
    assert set(rows) == {("local", None), ("ray", 1)}
    for r in rows.values():
        assert r["status"] == "ok", r
        assert r["added"] == n and r["failed"] == 0 and r["stored"] == n, r
        assert 0 < r["wall_s"] < 400 and r["clips_per_s"] > 0, r
        assert math.isclose(r["clips_per_s"], n / r["wall_s"], rel_tol=1e-9), r
        assert 0 < r["first_clip_s"] <= r["wall_s"] and r["steady_s_per_clip"] > 0, r
    local, ray_row = rows["local", None], rows["ray", 1]
    assert local["max_abs_diff"]["max"] == 0.0
    d = ray_row["max_abs_diff"]
    assert set(d) == {"influence", "motion", "max"} and 0 <= d["max"] <= BOUND, d
    assert math.isclose(ray_row["overhead_s_per_clip"], (ray_row["wall_s"] - local["wall_s"]) / n, rel_tol=1e-9)
    assert ray_row["plan"] and "_Embed" in ray_row["plan"], ray_row  # the Ray Data plan was read from its log
    assert ray_doc.get("ray_task_torch_threads", 0) >= 1

    # 3: the same build into a local folder and into moto's S3 server (its own process), vectors equal
    st = doc["store"]
    assert st["status"] == "ok", st
    assert cfg["store_pairs"] == 1 and [r["store"] for r in st["runs"]] == ["local", "s3"]
    for r in st["runs"]:
        assert r["status"] == "ok" and r["added"] == n and r["failed"] == 0, r
        assert r["s_per_clip"] > 0 and r["store_s_per_clip"] > 0 and r["open_s"] > 0 and r["query_p50_ms"] > 0, r
        assert r["max_abs_diff"]["max"] <= BOUND, r
    assert st["ratio"]["s_per_clip"] > 0 and st["s3"]["runs"] == st["local"]["runs"] == 1

    # 2: before / after the refactor, in the same run
    ba = doc["before_after"]
    if ba["status"] == "skipped":
        assert not _has_refactor_history(), f"the before/after part skipped though the history is here: {ba}"
        assert ba["reason"]
        return
    assert ba["status"] == "ok", ba
    assert [r["code"] for r in ba["runs"]] == ["old", "new"]
    for r in ba["runs"]:
        assert r["status"] == "ok" and r["added"] == n and r["failed"] == 0, r
        assert r["s_per_clip"] > 0 and r["steady_s_per_clip"] > 0 and r["cpu_s_per_clip"] > 0, r
        assert r["max_abs_diff_vs_new"]["max"] <= BOUND, r
    worktree = Path(ba["worktree"])
    old_file, new_file = Path(ba["runs"][0]["file"]), Path(ba["runs"][1]["file"])
    assert worktree in old_file.parents and ROOT not in old_file.parents  # the old code was imported
    assert ROOT in new_file.parents
    assert ba["old_commit"] != ba["new_commit"] and len(ba["old_commit"]) == 40
    assert math.isfinite(ba["ratio"]) and ba["ratio"] > 0
    assert math.isclose(ba["ratio"], ba["new"]["s_per_clip"] / ba["old"]["s_per_clip"], rel_tol=1e-9)
    assert math.isfinite(ba["steady_ratio"]) and ba["steady_ratio"] > 0
    assert math.isfinite(ba["cpu_ratio"]) and ba["cpu_ratio"] > 0
    assert len(ba["pair_ratios"]) == 1 and math.isclose(ba["pair_ratios"][0], ba["ratio"], rel_tol=1e-9)
    assert doc["max_abs_diff"] <= BOUND
    # the worktree is removed again
    listed = subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    assert str(worktree) not in listed.stdout and not worktree.exists()
