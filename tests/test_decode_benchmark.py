"""Smoke test of benchmarks/decode.py: its --quick path runs end to end and prints sane tables.

Runs the benchmark in a subprocess (as a user would) and reads the markdown tables it prints: every clip x spec x
path row is there with positive numbers; the new path converts at most the standard clip's frames, the old one
every source frame; on the longer clip the new path's peak RSS is below the old path's; the resize used is the
reference of its own table (difference 0).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC_FRAMES = {"tiny": 17, "paper": 81}


def _rows(text: str, header_start: str) -> list[list[str]]:
    """The body rows (cells stripped) of the markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_decode_benchmark_quick():
    out = subprocess.run([sys.executable, "benchmarks/decode.py", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert text.startswith("\nmachine: ")
    rows = _rows(text, "| clip | spec | path |")
    cells = {(r[0], r[1], r[2]): r for r in rows}
    clips = {"2 s 64x64": 60, "6 s 360p30": 180}  # source frames
    paths = ("new (load_video)", "new, AUTO threads", "old (decode_video + standardize)")
    assert set(cells) == {(c, s, p) for c in clips for s in SPEC_FRAMES for p in paths}
    peak = {}
    for (clip, spec, path), r in cells.items():
        rss, wall, cpu, converted = float(r[3]), float(r[4]), float(r[5]), int(r[6])
        assert 20 < rss < 4000 and 0 < wall < 60 and 0 <= cpu < 120, r
        if path.startswith("new"):
            assert 1 <= converted <= min(SPEC_FRAMES[spec], clips[clip]), r
            assert re.fullmatch(r"\d+\.\d\dx", r[7]) and re.fullmatch(r"\d+\.\dx", r[8]), r
        else:
            assert converted == clips[clip] and r[7] == r[8] == "-", r
        peak[clip, spec, path] = rss
    # the 6 s clip at full size is ~125 MB (and np.stack copies it): the new path holds a few frames
    assert peak["6 s 360p30", "tiny", paths[0]] < peak["6 s 360p30", "tiny", paths[2]] - 50
    for line in re.findall(r"new path's peak RSS ([+-]\d+) MB over", text):
        assert int(line) < 500
    resize = _rows(text, "| spec | method |")
    used = [r for r in resize if r[1].endswith("(used)")]
    assert [r[0] for r in used] == ["tiny", "paper"] and all(float(r[3]) == 0 for r in used)
    assert all(float(r[2]) > 0 and float(r[3]) >= 0 for r in resize)
