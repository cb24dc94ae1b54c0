#!/usr/bin/env python3
"""Render an HTML page (e.g. a motive-index evidence report) in headless Chromium and save a PNG screenshot.

    python tools/screenshot_report.py REPORT.html OUT.png [--width 1280] [--height H]

Without ``--height`` the whole page is captured: a first pass measures its height (``--dump-dom`` of a copy
carrying a small probe script), a second takes the screenshot at that size (at most ``MAX_HEIGHT`` px).
Needs ``/usr/bin/chromium`` (Debian/Ubuntu: ``apt-get install chromium``; or set ``CHROMIUM=/path``); exits 2
with that message if it is missing, 1 if Chromium fails. Nothing is fetched from the network: the flags turn
off Chromium's own background traffic, and a report is self-contained.

The helpers (:func:`find_chromium`, :func:`probe`, :func:`screenshot`) are imported by tests/test_report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
MAX_HEIGHT = 16384
TIMEOUT_S = 90
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-extensions", "--mute-audio"]
PROBE_ID = "motive-probe"
# Written into the page's DOM once it has loaded: how many <img> there are, how many decoded (complete with a
# natural width), and the page's size.
PROBE = ("<script>window.addEventListener('load',function(){var im=Array.prototype.slice.call(document.images);"
         "var ok=im.filter(function(i){return i.complete&&i.naturalWidth>0;}).length;"
         "var p=document.createElement('pre');p.id='" + PROBE_ID + "';p.textContent=JSON.stringify({images:"
         "im.length,loaded:ok,height:document.documentElement.scrollHeight,width:document.documentElement."
         "scrollWidth});document.body.appendChild(p);});</script>")


class ChromiumMissing(RuntimeError):
    pass


def find_chromium() -> str:
    """The Chromium binary: ``$CHROMIUM``, else /usr/bin/chromium, else chromium/chromium-browser on PATH."""
    for cand in (os.environ.get("CHROMIUM"), CHROMIUM, shutil.which("chromium"), shutil.which("chromium-browser")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise ChromiumMissing(f"headless Chromium is needed and {CHROMIUM} was not found: install it "
                          f"(Debian/Ubuntu, as root: apt-get install -y chromium; bash tools/test.sh does this) or "
                          f"set CHROMIUM=/path/to/chromium")


def _run(args: list[str], timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="motive-chromium-") as profile:
        cmd = [find_chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
        env = {**os.environ, "HOME": profile}  # nothing written to the real home
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"chromium did not finish within {timeout:.0f} s: {' '.join(cmd)}") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
        raise RuntimeError(f"chromium exited {proc.returncode}: {' '.join(cmd)}\n{tail}")
    return proc


def probe(html: str | Path, width: int = 1280, height: int = 900) -> dict:
    """Load a copy of the page with the probe script in headless Chromium (``--dump-dom``) and return what it
    measured: ``{"images", "loaded", "height", "width"}``."""
    text = Path(html).read_text(encoding="utf-8")
    text = text.replace("</body>", PROBE + "</body>", 1) if "</body>" in text else text + PROBE
    with tempfile.TemporaryDirectory(prefix="motive-probe-") as d:
        page = Path(d) / "page.html"
        page.write_text(text, encoding="utf-8")
        proc = _run(["--dump-dom", "--virtual-time-budget=5000", f"--window-size={width},{height}",
                     page.resolve().as_uri()])
    m = re.search(r'<pre id="' + PROBE_ID + r'">(.*?)</pre>', proc.stdout, re.S)
    if not m:
        raise RuntimeError("chromium loaded the page but the probe wrote nothing (the load event never came?)")
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def screenshot(html: str | Path, out_png: str | Path, width: int = 1280, height: int | None = None) -> Path:
    """Save a PNG of the page at ``width`` px wide; ``height`` None: the page's full height."""
    html, out = Path(html).resolve(), Path(out_png).resolve()
    if height is None:
        height = min(MAX_HEIGHT, max(200, int(probe(html, width)["height"])))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    _run([f"--screenshot={out}", f"--window-size={width},{height}", "--virtual-time-budget=5000", html.as_uri()])
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {str(out)!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="the HTML page to render")
    ap.add_argument("out", help="the PNG to write")
    ap.add_argument("--width", type=int, default=1280, help="viewport width in px (default 1280)")
    ap.add_argument("--height", type=int, default=None, help="viewport height in px (default: the whole page)")
    a = ap.parse_args(argv)
    if not Path(a.report).is_file():
        print(f"error: {a.report!r} is not a file", file=sys.stderr)
        return 2
    try:
        out = screenshot(a.report, a.out, a.width, a.height)
    except ChromiumMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
