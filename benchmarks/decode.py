"""Bounded decoding: peak memory and wall time of ``load_video`` against the old decode-all path, as tables.

    python benchmarks/decode.py [--quick] [--reps 3] [--old-limit-gb 7.5] [--json decode.json]

Clips, written to a temporary folder with ``write_video`` (frames streamed to the encoder, so no clip is ever in
memory whole): a smooth colour texture panning 2 px per frame with a bright square crossing it.

- ``2 s 64x64``: 30 fps, 60 frames, write_video's defaults (libx264 crf 12, preset medium).
- ``20 s 720p60``: 1280x720 at 60 fps, 1200 frames, write_video's defaults (x264's keyframe every 250 frames).
- ``10 min 1080p10``: 1920x1080 at 10 fps, 6000 frames; libx264 ultrafast, crf 32, a keyframe every 100 frames
  (10 s), to keep writing it near a minute and a half.
``--quick`` writes the 2 s clip and ``6 s 360p30`` (640x360 at 30 fps, ultrafast, a keyframe every 60 frames).

For each clip and each spec (``tiny``: 17 frames at 8 fps, 64x64, the tiny Wan's; ``paper``: 81 frames at 16 fps,
480x832, Wan2.1's), each way of decoding runs in a fresh subprocess (this script with ``--child``), so its peak
RSS (``VmHWM``) is its own: ``new`` is ``load_video`` (threads: PyAV's default slice threads; ``new, AUTO`` with
``stream.thread_type = "AUTO"``), ``old`` is ``decode_video`` + ``standardize`` (every frame at full size), run
once, and skipped where its frames alone would exceed ``--old-limit-gb`` (list + stacked copy). Wall and CPU
time are the call's alone (not the interpreter's start or imports; their RSS, ~100 MB, is in the peak); the new
path's are medians of ``--reps`` runs. CPU time is the steadier number on a shared machine. "converted" counts
the frames turned into arrays. A second table compares resizing
in swscale (``to_ndarray(width=, height=)``) with the RGB conversion at full size + ``cv2.resize`` INTER_AREA
that load_video uses (bit-exact with ``standardize``), on frames of the largest clip.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SPECS = {"tiny": dict(frames=17, fps=8.0, height=64, width=64),  # backbones.wan.TINY_SPEC
         "paper": dict(frames=81, fps=16.0, height=480, width=832)}  # backbones.wan.PAPER_SPEC
FAST = {"preset": "ultrafast", "crf": "32"}
# name: (seconds, height, width, fps, encoder options or None for write_video's defaults)
CLIPS = {"2 s 64x64": (2, 64, 64, 30.0, None),
         "6 s 360p30": (6, 360, 640, 30.0, FAST | {"x264-params": "keyint=60"}),
         "20 s 720p60": (20, 720, 1280, 60.0, None),
         "10 min 1080p10": (600, 1080, 1920, 10.0, FAST | {"x264-params": "keyint=100"})}
QUICK = ["2 s 64x64", "6 s 360p30"]
FULL = ["2 s 64x64", "20 s 720p60", "10 min 1080p10"]


def texture_frames(n: int, h: int, w: int, seed: int = 0):
    """``n`` frames (h, w, 3) uint8, one at a time: a smooth colour texture panning 2 px a frame (jumping back
    every 256 frames, like a cut) and a bright square crossing it."""
    import cv2

    rng = np.random.default_rng(seed)
    span = w + 512
    tex = cv2.resize(rng.uniform(30, 220, (h // 16 + 2, span // 16 + 2, 3)).astype(np.float32), (span, h),
                     interpolation=cv2.INTER_CUBIC)
    tex = np.clip(tex, 0, 255).astype(np.uint8)  # (h, w + 512, 3)
    s = max(8, h // 6)
    for i in range(n):
        off = (2 * i) % 512
        frame = tex[:, off:off + w].copy()  # (h, w, 3)
        x, y = (7 * i) % max(1, w - s), (h - s) // 2
        frame[y:y + s, x:x + s] = (230, 60, 60)
        yield frame


# ------------------------------------------------------------------------------------------ child process


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (Linux; ru_maxrss would carry the parent's peak across fork + exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def child(job: dict) -> dict:
    """One measurement, in its own process: decode ``job['path']`` one way, report peak RSS and wall time."""
    import motive_index.video as V
    from motive_index.config import VideoSpec

    spec = VideoSpec(**job["spec"])
    converted = [0]
    to_rgb = V._to_rgb

    def counting(*a, **k):
        converted[0] += 1
        return to_rgb(*a, **k)

    V._to_rgb = counting
    if job.get("threads"):
        V.THREAD_TYPE = job["threads"]
    rss0 = peak_rss_mb()  # after imports
    cpu, t = time.process_time(), time.perf_counter()
    if job["mode"] == "old":
        frames, fps = V.decode_video(job["path"])
        out = V.standardize(frames, fps, spec)
        converted[0] = len(frames)
        del frames
    else:
        out = V.load_video(job["path"], spec).frames
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert out.shape == (spec.frames, spec.height, spec.width, 3)
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak_rss_mb(), "imports_mb": rss0, "converted": converted[0]}


def measure(job: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True,
                         timeout=1800)
    if out.returncode:
        raise RuntimeError(f"child {job} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ resize choice


def resize_table(path: str, n: int = 12) -> list[dict]:
    """ms per frame and mean / max abs difference against load_video's resize (full-size RGB + INTER_AREA)."""
    import av

    import motive_index.video as V
    from motive_index.config import VideoSpec

    with av.open(path) as c:
        frames = [f for i, f in enumerate(c.decode(video=0)) if i < 40 * n and i % 40 == 0]
    h, w = frames[0].height, frames[0].width
    rows = []
    for name, fields in SPECS.items():
        spec = VideoSpec(**fields)
        scale = max(spec.height / h, spec.width / w)
        rh, rw = max(spec.height, round(h * scale)), max(spec.width, round(w * scale))
        y0, x0 = (rh - spec.height) // 2, (rw - spec.width) // 2
        methods = {"full-size RGB + cv2 INTER_AREA (used)": lambda f: V._resize_crop(f.to_ndarray(format="rgb24"),
                                                                                     spec)}
        for interp in ("AREA", "BILINEAR", "FAST_BILINEAR"):
            methods[f"swscale {interp} to {rw}x{rh}"] = (
                lambda f, i=interp: f.to_ndarray(format="rgb24", width=rw, height=rh, interpolation=i)
                [y0:y0 + spec.height, x0:x0 + spec.width])
        ref = None
        for method, fn in methods.items():
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                got = [fn(f) for f in frames]
                best = min(best, (time.perf_counter() - t) / len(frames))
            ref = got if ref is None else ref
            d = [np.abs(a.astype(np.int16) - b) for a, b in zip(ref, got)]
            rows.append({"spec": name, "method": method, "ms_per_frame": best * 1000,
                         "mean_abs_diff": float(np.mean([x.mean() for x in d])),
                         "max_abs_diff": int(max(x.max() for x in d))})
    return rows


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="two small clips, one run each: well under a minute")
    ap.add_argument("--reps", type=int, default=None, help="runs of the new path per cell (default 3; --quick 1)")
    ap.add_argument("--old-limit-gb", type=float, default=7.5,
                    help="skip the old path where its frames would take more than this (default 7.5)")
    ap.add_argument("--json", type=Path, default=None, help="also write every number to this JSON file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return

    from _machine import machine

    from motive_index.backbones.wan import PAPER_SPEC, TINY_SPEC
    from motive_index.video import write_video

    for name, spec in (("tiny", TINY_SPEC), ("paper", PAPER_SPEC)):
        want = {k: v for k, v in spec.to_dict().items() if k in SPECS[name]}
        if want != SPECS[name]:
            raise RuntimeError(f"SPECS[{name!r}]={SPECS[name]} no longer matches backbones.wan: {want}")
    reps = args.reps or (1 if args.quick else 3)
    names = QUICK if args.quick else FULL
    results, gen = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name in names:
            secs, h, w, fps, opts = CLIPS[name]
            path = Path(tmp) / (name.replace(" ", "_") + ".mp4")
            t = time.perf_counter()
            write_video(path, texture_frames(round(secs * fps), h, w), fps, options=opts)
            gen[name] = {"seconds": time.perf_counter() - t, "mb": path.stat().st_size / 2**20}
            paths[name] = str(path)
        for name in names:
            secs, h, w, fps, _ = CLIPS[name]
            n = round(secs * fps)
            old_gb = 2 * n * h * w * 3 / 1e9  # the list of frames and np.stack's copy
            for sname, fields in SPECS.items():
                cell = {"clip": name, "spec": sname, "source_frames": n, "old_estimate_gb": old_gb}
                for mode, threads in (("new", None), ("new", "AUTO"), ("old", None)):
                    job = {"path": paths[name], "spec": fields, "mode": mode, "threads": threads}
                    key = mode if threads is None else f"{mode}, {threads}"
                    if mode == "old" and old_gb > args.old_limit_gb:
                        cell[key] = None
                        continue
                    runs = [measure(job) for _ in range(reps if mode == "new" else 1)]
                    cell[key] = {"wall_s": statistics.median(r["wall_s"] for r in runs),
                                 "cpu_s": statistics.median(r["cpu_s"] for r in runs),
                                 "peak_mb": statistics.median(r["peak_mb"] for r in runs),
                                 "imports_mb": statistics.median(r["imports_mb"] for r in runs),
                                 "converted": runs[0]["converted"], "runs": runs}
                results.append(cell)
        resize = resize_table(paths[names[-1]])

    print(f"\nmachine: {machine()}")
    print("clips written: " + "; ".join(f"{k} {v['mb']:.1f} MB in {v['seconds']:.1f} s" for k, v in gen.items()))
    print(f"new path: median of {reps} run(s), each in a fresh process; old path: one run, skipped where its frames "
          f"would exceed {args.old_limit_gb:g} GB\n")
    print("| clip | spec | path | peak RSS MB | wall s | CPU s | frames converted | RSS vs old | speed-up vs old |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for cell in results:
        old = cell["old"]
        for key in ("new", "new, AUTO", "old"):
            r = cell[key]
            label = {"new": "new (load_video)", "new, AUTO": "new, AUTO threads",
                     "old": "old (decode_video + standardize)"}[key]
            if r is None:
                print(f"| {cell['clip']} | {cell['spec']} | {label} | skipped: would hold "
                      f"~{cell['old_estimate_gb']:.0f} GB | - | - | {cell['source_frames']} | - | - |")
                continue
            vs = (f"{r['peak_mb'] / old['peak_mb']:.2f}x | {old['wall_s'] / r['wall_s']:.1f}x"
                  if old is not None and key != "old" else "- | -")
            print(f"| {cell['clip']} | {cell['spec']} | {label} | {r['peak_mb']:.0f} | {r['wall_s']:.2f} | "
                  f"{r['cpu_s']:.2f} | {r['converted']} | {vs} |")
    small = {c["spec"]: c["new"]["peak_mb"] for c in results if c["clip"] == names[0]}
    print()
    for cell in (c for c in results if c["clip"] != names[0]):
        more = cell["new"]["peak_mb"] - small[cell["spec"]]
        print(f"- {cell['clip']}, {cell['spec']}: new path's peak RSS {more:+.0f} MB over the {names[0]} clip's "
              f"(bound: 500 MB)")
    print(f"\nresize of a decoded frame to the standard size ({names[-1]} frames; differences in 8-bit levels "
          f"against the method used)\n")
    print("| spec | method | ms/frame | mean abs diff | max abs diff |")
    print("|---|---|---:|---:|---:|")
    for r in resize:
        print(f"| {r['spec']} | {r['method']} | {r['ms_per_frame']:.2f} | {r['mean_abs_diff']:.3f} | "
              f"{r['max_abs_diff']} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "clips": gen, "results": results, "resize": resize},
                                        indent=2))


if __name__ == "__main__":
    main()
