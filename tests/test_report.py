"""The evidence page of a query (report.render_report / render_sheet), rendered for real in headless Chromium.

Chromium (/usr/bin/chromium) is required, not optional: tools/test.sh installs it; without it these tests fail.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from motive_index.api import MotiveIndex
from motive_index.manifest import read_manifest
from motive_index.report import opposed_hits, render_report, render_sheet

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "screenshot_report.py"


def _tool():
    spec = importlib.util.spec_from_file_location("screenshot_report", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def queried(built_index, dataset):
    """A real query (k=3) of a training clip on the built index, and its opposed hits."""
    idx = MotiveIndex.open(built_index)
    clip = read_manifest(dataset)[2]
    res = idx.query(clip.path, prompt=clip.caption, k=3)
    assert res.hits and res.similar
    return idx, clip, res


def _srcs(page: str) -> list[str]:
    return re.findall(r'\bsrc\s*=\s*"([^"]*)"', page, re.I)


def test_report_is_self_contained_complete_and_renders_in_chromium(queried, tmp_path):
    idx, clip, res = queried
    page = render_report(idx, res, clip.path, title="Review <case 7>")  # opposed hits: by a second query
    opposed = opposed_hits(idx, res)
    assert len(opposed) == 3 and {h.clip_id for h in opposed}.isdisjoint({h.clip_id for h in res.hits})

    # self-contained: every image is an inline PNG, nothing is fetched, no script
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|iframe|object|embed)\b", page, re.I)
    assert "url(" not in page and "@import" not in page
    srcs = _srcs(page)
    n_img = len(re.findall(r"<img\b", page))
    assert len(srcs) == n_img > 0
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and min(img.shape[:2]) >= 64

    # what a reviewer needs: the query's keyframes and heatmap, every hit's card, the labelled sections
    assert "Review &lt;case 7&gt;" in page and "<case 7>" not in page
    assert len(re.findall(r'alt="query frame \d+"', page)) == 4
    assert len(re.findall(r'alt="motion heatmap, frame \d+"', page)) == 4
    assert 'alt="motion heatmap, peak over all frames"' in page
    for title in ("Keyframes", "Motion heatmap", "Most influential (helped this motion)",
                  "Most opposed (pushed against it)", "Motion similarity — not influence", "not evidence"):
        assert title in page
    # the influence and opposed columns sit side by side, before the similarity section
    assert page.index("Most influential") < page.index("Most opposed") < page.index('id="similarity"')
    sim_part = page[page.index('id="similarity"'):]
    for h in res.hits + opposed:
        assert f">{h.clip_id}<" in page
    for h in res.similar:
        assert f">{h.clip_id}<" in sim_part
        assert f'alt="keyframes of {h.clip_id}"' in sim_part
    assert page.count('class="card"') == len(res.hits) + len(opposed) + len(res.similar)
    for h in res.hits:
        assert f"<b>{h.score:+.4f}</b>" in page
        pct = getattr(h, "percentile", None)
        assert (f"{pct:.1f}" if pct is not None else "—") in page
        assert h.caption in page
    assert "the query video itself" in page  # the query is a stored clip: its own card says so

    # real headless Chromium: every image decodes, and the screenshot is a picture, not a blank page
    out = tmp_path / "report.html"
    out.write_text(page, encoding="utf-8")
    measured = _tool().probe(out)
    assert measured["images"] == n_img and measured["loaded"] == n_img
    assert measured["height"] > 1500  # the whole page laid out, not a stub
    shot = tmp_path / "report.png"
    run = subprocess.run([sys.executable, str(TOOL), str(out), str(shot), "--width", "1280"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[1] == 1280 and img.shape[0] >= measured["height"] - 2
    assert img.std() > 20
    colours = np.unique((img[::4, ::4] // 16).reshape(-1, 3), axis=0)
    assert len(colours) > 100  # frames, heatmap colours, text: not a flat page


def test_unreadable_hit_gets_a_placeholder_and_warnings_are_escaped(queried, tmp_path):
    idx, clip, res = queried
    gone = tmp_path / "gone.mp4"
    shutil.copy(res.hits[0].path, gone)
    gone.unlink()  # a licence withdrawn, a disk moved: the stored path no longer exists
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    hits = [dataclasses.replace(res.hits[0], path=str(gone)), dataclasses.replace(res.hits[1], path=str(broken)),
            res.hits[2]]
    query = {**res.query, "warnings": ["<script>alert(1)</script> decoded 3 of 5 frames"]}
    bad = dataclasses.replace(res, hits=hits, query=query)
    page = render_report(idx, bad, clip.path, opposed=[])
    assert page.count("video unavailable") == 2
    cards = page.split('class="card"')[1:]
    assert "video unavailable" in cards[0] and "not found" in cards[0] and str(gone) in cards[0]
    assert "video unavailable" in cards[1] and f'alt="keyframes of {hits[1].clip_id}"' not in cards[1]
    assert f'alt="keyframes of {hits[2].clip_id}"' in cards[2]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    assert 'id="warnings"' in page and "shown as placeholders" in page
    assert "not computed (none given)" in page  # opposed=[]: no second query, and the page says so
    out = tmp_path / "bad.html"
    out.write_text(page, encoding="utf-8")
    measured = _tool().probe(out)
    assert measured["images"] == measured["loaded"] == len(_srcs(page))

    sheet = render_sheet(idx, bad, clip.path, tmp_path / "bad.png", opposed=[])
    assert cv2.imread(str(sheet)) is not None


def test_sheet_is_a_png_of_the_same_evidence(queried, tmp_path):
    idx, clip, res = queried
    opposed = opposed_hits(idx, res)
    out = render_sheet(idx, res, None, tmp_path / "sheets" / "sheet.png", opposed=opposed)  # video: the query's
    assert out == tmp_path / "sheets" / "sheet.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(out))
    assert img is not None and img.ndim == 3
    h, w = img.shape[:2]
    rows = 1 + max(len(res.hits), len(opposed)) + (len(res.similar) + 1) // 2  # the query, then hit rows
    assert 900 <= w <= 1400 and h >= rows * 128
    assert img.std() > 20
    with pytest.raises(ValueError, match="png"):
        render_sheet(idx, res, None, tmp_path / "sheet.jpg", opposed=opposed)


def test_screenshot_tool_without_chromium_exits_2_saying_how_to_install(tmp_path, monkeypatch, capsys):
    tool = _tool()
    monkeypatch.setattr(tool, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    page = tmp_path / "p.html"
    page.write_text("<!DOCTYPE html><html><body>x</body></html>")
    assert tool.main([str(page), str(tmp_path / "p.png")]) == 2
    assert "apt-get install -y chromium" in capsys.readouterr().err
