"""Motion masks measured against ground truth: flow accuracy, mask IoU with and without camera motion, and cost.

    python benchmarks/masks.py [--quick] [--seeds 30] [--flow dis|farneback] [--preset auto]

1. Flow accuracy: end-point error (px, mean over valid pixels) of each estimator on frame pairs with a known
   displacement: a smooth-noise texture translated by a known sub-pixel (dx, dy) (cv2.warpAffine), alone and
   with a textured square moving by a different known displacement (a band around the square's edges, where
   the true flow is ambiguous, and the frame border are left out; background and square are reported apart).
   At 64x64 and 480x832 (``--quick`` skips 480x832).
2. Mask quality: IoU of the thresholded pixel mask (weight >= 0.5) with ``synthetic.moving_mask`` (what moves
   in the world) on 17-frame 64x64 synthetic clips, standardized with ``VideoSpec()``, per motion class, camera
   static vs pan, ``motion`` all vs object, ``normalize`` minmax vs percentile; mean ± sd over seeds. The second
   number is the IoU at the best threshold of a small grid, chosen per cell on the same clips (an oracle, an
   upper bound: no deployed mask gets to pick it). Camera-only clips (the ``pan`` class: nothing moves in the
   world) report the share flagged static and the mean weight.
3. Cost: ms per frame pair of each estimator at 480x832 and 64x64, and what camera compensation adds
   (``motion_mask`` with motion=object minus motion=all, per frame pair).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, matmul_anchor_ms  # noqa: E402

from motive_index.config import DIS_PRESETS, MaskConfig, VideoSpec  # noqa: E402
from motive_index.motion import flow_fields, make_flow_estimator, motion_mask  # noqa: E402
from motive_index.synthetic import COLOURS, SHAPES, TEXTURES, SynthSpec, moving_mask, render_clip  # noqa: E402
from motive_index.video import standardize  # noqa: E402

ESTIMATORS = [("dis ultrafast", MaskConfig(flow="dis", dis_preset="ultrafast")),
              ("dis fast", MaskConfig(flow="dis", dis_preset="fast")),
              ("dis medium", MaskConfig(flow="dis", dis_preset="medium")),
              ("farneback", MaskConfig(flow="farneback"))]
OBJECT_MOTIONS = ("translate", "oscillate", "bounce", "rotate", "scale")
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# per size: background and square displacement (px/frame), the square's side, the band left out around its edges
EPE_CASES = {(64, 64): ((1.3, -0.7), (-1.6, 1.2), 20, 3),
             (480, 832): ((4.3, -2.6), (-5.4, 3.7), 140, 8)}


def ms(s: float) -> str:
    return f"{s * 1000:.1f}" if s < 10 else f"{s * 1000:.0f}"


def pm(xs) -> str:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return "-"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.fmean(xs):.2f} ± {sd:.2f}"


# ------------------------------------------------------------------------------------------------ flow EPE


def smooth_noise(rng: np.random.Generator, h: int, w: int, mean: float, std: float) -> np.ndarray:
    """(h, w) float32 texture: octaves of bicubic-upsampled noise from blobs ~min(h, w)/12 px across down to
    ~3 px (amplitude 0.7 per halving), so large frames keep fine texture as real footage does."""
    out = np.zeros((h, w), np.float32)
    cell, amp = max(3.0, min(h, w) / 12), 1.0
    while True:
        c = max(3, round(cell))
        small = rng.standard_normal((h // c + 3, w // c + 3)).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[:h, :w]
        if c <= 3:
            break
        cell, amp = cell / 2, amp * 0.7
    out = cv2.GaussianBlur(out, (0, 0), 0.8)
    return mean + std * (out - out.mean()) / (out.std() + 1e-6)


def shifted(img: np.ndarray, dx: float, dy: float, size: tuple[int, int], interp=cv2.INTER_LINEAR) -> np.ndarray:
    """``img`` moved by (dx, dy) px (content at p goes to p + d), cropped to ``size`` (w, h)."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, size, flags=interp, borderMode=cv2.BORDER_REFLECT)


def epe_pair(h: int, w: int, seed: int, with_square: bool):
    """Two gray uint8 frames with known motion, the true flow (H, W, 2) and valid masks (bg, square)."""
    d_bg, d_sq, side, band = EPE_CASES[(h, w)]
    rng = np.random.default_rng(seed)
    pad = 16
    world = smooth_noise(rng, h + 2 * pad, w + 2 * pad, 128, 30)
    frames, alphas = [], []
    sq_tex = smooth_noise(rng, side, side, 80, 40)
    x0, y0 = w / 2 - side / 2 + rng.uniform(-3, 3), h / 2 - side / 2 + rng.uniform(-3, 3)
    for k in (0, 1):
        bg = shifted(world, k * d_bg[0] - pad, k * d_bg[1] - pad, (w, h))
        if with_square:
            sx, sy = x0 + k * d_sq[0], y0 + k * d_sq[1]
            m = np.float32([[1, 0, sx], [0, 1, sy]])
            tex = cv2.warpAffine(sq_tex, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
            alpha = cv2.warpAffine(np.ones((side, side), np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                                   borderValue=0)
            bg = bg * (1 - alpha) + tex * alpha
            alphas.append(alpha)
        frames.append(np.clip(bg + 0.5, 0, 255).astype(np.uint8))
    true = np.empty((h, w, 2), np.float32)
    true[...] = d_bg
    margin = int(math.ceil(max(abs(v) for v in d_bg + d_sq))) + 2
    inner = np.zeros((h, w), bool)
    inner[margin:-margin, margin:-margin] = True
    if not with_square:
        return frames, true, inner, None
    ker = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    sq0 = alphas[0] > 0.5
    true[sq0] = d_sq
    core = cv2.erode(sq0.astype(np.uint8), ker).astype(bool)
    near0 = cv2.dilate(sq0.astype(np.uint8), ker).astype(bool)
    near1 = cv2.dilate((alphas[1] > 0.5).astype(np.uint8), ker)
    near1_at0 = shifted(near1, -d_bg[0], -d_bg[1], (w, h), cv2.INTER_NEAREST).astype(bool)  # lands there
    return frames, true, inner & ~near0 & ~near1_at0, inner & core


def flow_accuracy(sizes, seeds: int) -> list[tuple]:
    rows = []
    for h, w in sizes:
        cases = {s: [epe_pair(h, w, 100 + s, False), epe_pair(h, w, 100 + s, True)] for s in range(seeds)}
        for name, cfg in ESTIMATORS:
            est = make_flow_estimator(cfg)
            only, bg, sq = [], [], []
            for s in range(seeds):
                (f, true, valid, _), (g, true2, vbg, vsq) = cases[s]
                err = np.linalg.norm(est.flow(f[0], f[1]) - true, axis=-1)
                only.append(float(err[valid].mean()))
                err2 = np.linalg.norm(est.flow(g[0], g[1]) - true2, axis=-1)
                bg.append(float(err2[vbg].mean()))
                sq.append(float(err2[vsq].mean()))
            rows.append((f"{h}x{w}", name, pm(only), pm(bg), pm(sq)))
            print(f"  epe {h}x{w} {name}: {statistics.fmean(only):.3f} / {statistics.fmean(bg):.3f} / "
                  f"{statistics.fmean(sq):.3f}", file=sys.stderr)
    return rows


# ------------------------------------------------------------------------------------------------ mask IoU


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else float("nan")


def standard_clip(motion: str, camera: str, seed: int, vspec: VideoSpec):
    """A synthetic clip at the standard shape, its true moving mask, and whether standardize kept it as is."""
    rng = np.random.default_rng([seed, 7])
    spec = SynthSpec(motion, str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), str(rng.choice(TEXTURES)),
                     frames=vspec.frames, fps=vspec.fps, height=vspec.height, width=vspec.width, seed=seed,
                     camera=camera)
    frames, masks = render_clip(spec)
    std = standardize(frames, spec.fps, vspec, name=f"{motion}/{camera}/{seed}")
    if not np.array_equal(std, frames):  # rendered at the standard shape: standardize must be the identity
        raise RuntimeError("standardize changed a clip rendered at the standard shape; the gt masks would not align")
    return std, moving_mask(spec, masks)


MASK_CONFIGS = [(motion, norm) for motion in ("all", "object") for norm in ("minmax", "percentile")]


def mask_quality(seeds: int, base: MaskConfig, vspec: VideoSpec):
    """{(camera, motion_class): {(motion, normalize): [(iou@0.5, {t: iou}), ...]}} and the camera-only stats."""
    cells: dict = {}
    for camera in ("static", "pan"):
        for cls in OBJECT_MOTIONS:
            per = cells.setdefault((camera, cls), {c: [] for c in MASK_CONFIGS})
            for seed in range(seeds):
                frames, gt = standard_clip(cls, camera, seed, vspec)
                for motion, norm in MASK_CONFIGS:
                    cfg = MaskConfig(**(base.to_dict() | dict(motion=motion, normalize=norm)))
                    mm = motion_mask(frames, cfg)
                    per[(motion, norm)].append((iou(mm.weight >= 0.5, gt),
                                                {t: iou(mm.weight >= t, gt) for t in THRESHOLDS}, mm.static))
        print(f"  masks camera={camera} done", file=sys.stderr)
    pan = {}
    for motion, norm in MASK_CONFIGS:
        cfg = MaskConfig(**(base.to_dict() | dict(motion=motion, normalize=norm)))
        out = []
        for seed in range(seeds):
            frames, gt = standard_clip("pan", "static", seed, vspec)
            assert not gt.any()
            mm = motion_mask(frames, cfg)
            out.append((mm.static, float(mm.weight.mean()), float((mm.weight >= 0.5).mean())))
        pan[(motion, norm)] = out
    return cells, pan


def best_threshold(results) -> tuple[float, list[float]]:
    """The grid threshold with the highest mean IoU over a cell's clips, and the IoUs there."""
    t = max(THRESHOLDS, key=lambda t: np.nanmean([r[1][t] for r in results]))
    return t, [r[1][t] for r in results]


# ------------------------------------------------------------------------------------------------ cost


def timed(fn, reps: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cost(quick: bool, base: MaskConfig):
    rows, comp = [], []
    for (h, w), reps in (((480, 832), 3 if quick else 5), ((64, 64), 20 if quick else 50)):
        (f, _, _, _) = epe_pair(h, w, 0, True)[:4]
        for name, cfg in ESTIMATORS:
            est = make_flow_estimator(cfg)
            rows.append((f"{h}x{w}", name, timed(lambda: est.flow(f[0], f[1]), reps)))
        n = 9 if (h, w) == (480, 832) else 17
        frames, _ = render_clip(SynthSpec("translate", "square", "red", "striped", n, height=h, width=w, seed=0,
                                          camera="pan"))
        est = make_flow_estimator(base)
        t_flow = timed(lambda: flow_fields(frames, est), 1 if h > 64 else 3) / (n - 1)
        t_all = timed(lambda: motion_mask(frames, MaskConfig(**(base.to_dict() | {"motion": "all"}))),
                      2 if h > 64 else 5) / (n - 1)
        t_obj = timed(lambda: motion_mask(frames, MaskConfig(**(base.to_dict() | {"motion": "object"}))),
                      2 if h > 64 else 5) / (n - 1)
        comp.append((f"{h}x{w}", n, t_flow, t_all, t_obj))
        print(f"  cost {h}x{w} done", file=sys.stderr)
    return rows, comp


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds, no 480x832 flow accuracy (CI-sized)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per mask cell (default 30: the sd between clips is ~0.08, so 6 seeds leave a 0.03 standard error; --quick 2)")
    ap.add_argument("--flow", default="dis", choices=["dis", "farneback"], help="estimator for the mask tables")
    ap.add_argument("--preset", default=MaskConfig().dis_preset, choices=list(DIS_PRESETS),
                    help="DIS preset for the mask tables (default: MaskConfig's)")
    args = ap.parse_args()
    seeds = args.seeds or (2 if args.quick else 30)
    base = MaskConfig(flow=args.flow, dis_preset=args.preset)
    vspec = VideoSpec()
    t0 = time.perf_counter()

    sizes = [(64, 64)] if args.quick else [(64, 64), (480, 832)]
    epe = flow_accuracy(sizes, 2 if args.quick else 3)
    cells, pan = mask_quality(seeds, base, vspec)
    speed, comp = cost(args.quick, base)
    wall = time.perf_counter() - t0

    anchor = matmul_anchor_ms()
    est_name = "farneback" if args.flow == "farneback" else f"dis {args.preset}"
    if est_name == "dis auto":
        est_name += " (fast below 128 px, else medium)"
    print(f"\nmachine: {machine()}; OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads); "
          f"512x512 matmul {anchor:.2f} ms")
    print(f"benchmarks/masks.py{' --quick' if args.quick else ''}: wall {wall:.0f} s\n")

    print("### Flow accuracy: end-point error (px), mean ± sd over "
          f"{2 if args.quick else 3} textures\n")
    print("known motion per frame: 64x64 background (1.3, -0.7), square (-1.6, 1.2), side 20, 3 px band left out; "
          "480x832 background (4.3, -2.6), square (-5.4, 3.7), side 140, 8 px band\n")
    print("| size | estimator | translation only | with square: background | with square: square |")
    print("|---|---|---:|---:|---:|")
    for r in epe:
        print("| " + " | ".join(r) + " |")

    print(f"\n### Mask quality: IoU with the true moving mask (64x64, {vspec.frames} frames, {est_name}), "
          f"mean ± sd over {seeds} seeds\n")
    print("first number: IoU at weight >= 0.5; in brackets: IoU at the best threshold of "
          f"{THRESHOLDS[0]}..{THRESHOLDS[-1]} for that cell (oracle, chosen on the same clips) and that threshold\n")
    head = " | ".join(f"{m} / {n}" for m, n in MASK_CONFIGS)
    print(f"| camera | motion class | {head} |")
    print("|---|---|" + "---:|" * len(MASK_CONFIGS))
    summary: dict = {}
    for (camera, cls), per in cells.items():
        out = []
        for c in MASK_CONFIGS:
            res = per[c]
            t, best = best_threshold(res)
            out.append(f"{pm([r[0] for r in res])} [{pm(best)} @{t:.1f}]")
            summary.setdefault((camera, c), []).extend(r[0] for r in res)
        print(f"| {camera} | {cls} | " + " | ".join(out) + " |")
    for camera in ("static", "pan"):
        print(f"| {camera} | **all classes** | "
              + " | ".join(f"**{pm(summary[(camera, c)])}**" for c in MASK_CONFIGS) + " |")
    flagged = {c: sum(r[2] for cl in OBJECT_MOTIONS for cam in ("static", "pan") for r in cells[(cam, cl)][c])
               for c in MASK_CONFIGS}
    total = len(OBJECT_MOTIONS) * 2 * seeds
    print("| | flagged static (of clips with a mover) | "
          + " | ".join(f"{flagged[c]}/{total}" for c in MASK_CONFIGS) + " |")

    print(f"\n### Camera only (class pan: a pan over a still world; nothing should be weighted), {seeds} seeds\n")
    print("| motion / normalize | flagged static | mean weight | share of pixels with weight >= 0.5 |")
    print("|---|---:|---:|---:|")
    for c, out in pan.items():
        print(f"| {c[0]} / {c[1]} | {sum(r[0] for r in out)}/{len(out)} | {pm([r[1] for r in out])} | "
              f"{pm([r[2] for r in out])} |")

    print("\n### Cost: ms per frame pair (median)\n")
    print("| size | estimator | ms / pair |")
    print("|---|---|---:|")
    for size, name, s in speed:
        print(f"| {size} | {name} | {ms(s)} |")
    print(f"\n### Cost of camera compensation ({est_name}, ms per frame pair, clip of n frames)\n")
    print("| size | n | flow only | motion_mask all | motion_mask object | compensation (object - all) |")
    print("|---|---:|---:|---:|---:|---:|")
    for size, n, t_flow, t_all, t_obj in comp:
        print(f"| {size} | {n} | {ms(t_flow)} | {ms(t_all)} | {ms(t_obj)} | {ms(t_obj - t_all)} |")


if __name__ == "__main__":
    main()
