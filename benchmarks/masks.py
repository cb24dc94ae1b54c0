"""Motion masks measured against ground truth: flow accuracy, mask IoU with and without camera motion, and cost.

    python benchmarks/masks.py [--quick] [--seeds 30] [--flow dis|farneback] [--preset auto] [--pans-only]

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
4. Textured pans (``--pans-only`` runs this part alone): a camera moving over a real photograph shipped with
   scikit-image (``synthetic.photo_texture``: gravel, grass, brick, astronaut), tiled, while a disk textured
   with another photo (coffee) moves against it (``synthetic.render_pan``), rendered at the source rate, then
   standardized as a build does (``standardize`` + ``between_frames``). Tiny shape (17x64x64 at 8 fps) from
   96x96 sources at 16 and 30 fps: diagonal pans at 2, 4, 8 and 16 source px per frame, and the same with a 1 %
   zoom per frame, disks of radius 0.1 and 0.25 of the side; paper shape (81x480x832 at 16 fps) from 480x832
   at 30 fps, gravel, pans of 4 and 16 px per frame (``--quick``: 4 only). Each clip's object mask under the
   settings of ``PAN_SETTINGS`` (``flow_steps`` 1 with the camera fitted to sparse tracks and no gate: indexes
   before flow_steps; ``flow_steps`` 4 so: indexes before camera_fit and camera_gate; the camera fitted to the
   dense flow; then the camera gate; today's default, which adds ``out_of_view``): the mean weight inside the
   mover over the mean weight outside it (the frame's interior: 4 px at 64, 16 at 480 left out; target >= 10), and the end-point
   error of the raw flow on the background (the still world, true flow from ``render_pan`` composed over each
   standard interval and brought to the standard shape). Then the cost per clip from an mp4 (``load_video`` +
   ``motion_mask``) under ``PAPER_SETTINGS``, at both shapes, median of 2 runs.
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


# ------------------------------------------------------------------------------------------------ textured pans

PAN_TEXTURES = ("gravel", "grass", "brick", "astronaut")
# the mask settings compared on textured pans: the first is what indexes made before flow_steps use, the second
# what they made before camera_fit / camera_gate, the fourth before out_of_view, the last today's default
PAN_SETTINGS = {
    "steps 1, tracks": MaskConfig(flow_steps=1, camera_fit="tracks", camera_gate=0.0),
    "steps 4, tracks": MaskConfig(flow_steps=4, camera_fit="tracks", camera_gate=0.0),
    "steps 4, flow fit": MaskConfig(flow_steps=4, camera_fit="flow", camera_gate=0.0),
    "flow fit, gate": MaskConfig(out_of_view=False),
    "default": MaskConfig(),
}
PAPER_SETTINGS = ("steps 1, tracks", "steps 4, tracks", "default")  # 30 fps over 16: steps 2 and 4 are the same
TINY, PAPER = VideoSpec(), VideoSpec(frames=81, fps=16.0, height=480, width=832)


def _std_mask(mover: np.ndarray, fps: float, vs: VideoSpec) -> np.ndarray:
    return standardize(np.repeat(mover[..., None].astype(np.uint8) * 255, 3, -1), fps, vs)[..., 0] > 127


def _std_flow(flow: np.ndarray, fps: float, vs: VideoSpec, src_hw: tuple[int, int]) -> np.ndarray:
    """The true flow over each standard interval at the standard shape (T-1, h, w, 2): the per-source-frame
    flows composed between the interval's two source frames, resized and cropped as standardize does."""
    from motive_index.motion import compose_flows
    from motive_index.video import _resize_crop, _window

    idx = _window(flow.shape[0] + 1, fps, vs)
    h, w = src_hw
    scale = max(vs.height / h, vs.width / w)
    out = []
    for a, b in zip(idx[:-1], idx[1:]):
        f = compose_flows(list(flow[a:b])) if b > a else np.zeros((h, w, 2), np.float32)
        out.append(_resize_crop(f, vs) * scale)  # cv2.resize keeps the 2 channels; vectors scale with the frame
    return np.stack(out).astype(np.float32)


def pan_case(texture: str, spec, vs: VideoSpec, settings=tuple(PAN_SETTINGS)) -> dict:
    """{setting: (inside / outside, background EPE, seconds)} for one textured pan."""
    from motive_index.synthetic import photo_texture, render_pan
    from motive_index.video import between_frames

    frames, mover, flow = render_pan(photo_texture(texture), photo_texture("coffee"), spec)
    std = standardize(frames, spec.fps, vs)
    gt = _std_mask(mover, spec.fps, vs)
    true = _std_flow(flow, spec.fps, vs, (spec.height, spec.width))
    b = 16 if vs.height >= 256 else 4
    inner = np.zeros(gt.shape[1:], bool)
    inner[b:-b, b:-b] = True
    bg_flow = ~gt[:-1] & ~gt[1:] & inner  # background in both frames of a pair, away from the edges
    out = {}
    for name in settings:
        cfg = PAN_SETTINGS[name]
        k = cfg.flow_steps
        t = time.perf_counter()
        mm = motion_mask(std, cfg, between=between_frames(frames, spec.fps, vs, k) if k > 1 else None)
        sec = time.perf_counter() - t
        w = mm.weight[:, inner]
        g = gt[:, inner]
        ratio = float(w[g].mean() / max(float(w[~g].mean()), 1e-6))
        epe = float(np.linalg.norm(mm.flows - true, axis=-1)[bg_flow].mean())
        out[name] = (ratio, epe, sec)
    return out


def textured_pans(quick: bool) -> dict:
    from motive_index.synthetic import PanSpec

    tiny = {}
    textures = PAN_TEXTURES[:2] if quick else PAN_TEXTURES
    for fps, n in ((16.0, 36), (30.0, 68)):
        for camera in ("pan", "pan+zoom"):
            for speed in ((4.0, 8.0) if quick else (2.0, 4.0, 8.0, 16.0)):
                for sprite in ((0.1,) if quick else (0.1, 0.25)):
                    for tex in textures:
                        spec = PanSpec(frames=n, fps=fps, speed=speed, sprite=sprite,
                                       zoom=0.01 if camera == "pan+zoom" else 0.0)
                        tiny.setdefault((fps, camera, speed), []).append((tex, sprite, pan_case(tex, spec, TINY)))
        print(f"  textured pans tiny {fps:g} fps done", file=sys.stderr)
    paper = {}
    for speed in ((4.0,) if quick else (4.0, 16.0)):
        spec = PanSpec(frames=156, fps=30.0, height=480, width=832, speed=speed, sprite=0.1, sprite_speed=12.0)
        paper[speed] = pan_case("gravel", spec, PAPER, settings=PAPER_SETTINGS)
        print(f"  textured pans paper {speed:g} px/frame done", file=sys.stderr)
    return {"tiny": tiny, "paper": paper, "cost": pan_cost(quick)}


def pan_cost(quick: bool) -> list[tuple]:
    """(shape, setting, decode s, mask s) per clip from an mp4, median of 2 runs."""
    import tempfile

    from motive_index.motion import make_flow_estimator
    from motive_index.synthetic import PanSpec, photo_texture, render_pan
    from motive_index.video import load_video, write_video

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape, vs, spec in (("tiny 17x64x64", TINY, PanSpec(frames=68, fps=30.0, speed=4.0)),
                               ("paper 81x480x832", PAPER, PanSpec(frames=156, fps=30.0, height=480, width=832,
                                                                   speed=4.0, sprite_speed=12.0))):
            frames, _, _ = render_pan(photo_texture("gravel"), photo_texture("coffee"), spec)
            path = Path(tmp) / f"{vs.height}.mp4"
            write_video(path, frames, spec.fps)
            for name in PAPER_SETTINGS:
                cfg = PAN_SETTINGS[name]
                est = make_flow_estimator(cfg)
                dec, msk = [], []
                for _ in range(1 if quick and vs.height > 64 else 2):
                    t = time.perf_counter()
                    video = load_video(path, vs, flow_steps=cfg.source_steps)
                    t1 = time.perf_counter()
                    motion_mask(video.frames, cfg, est, between=video.between)
                    dec.append(t1 - t)
                    msk.append(time.perf_counter() - t1)
                rows.append((shape, name, statistics.median(dec), statistics.median(msk)))
    return rows


def print_pans(res: dict) -> None:
    names = list(PAN_SETTINGS)
    print("\n### Textured pans: mean weight inside the mover / outside (target >= 10) and background EPE (px per "
          "standard interval), by mask setting\n")
    print("tiny shape 17x64x64 at 8 fps from 96x96 sources; each row: the median over textures "
          f"({', '.join(PAN_TEXTURES)}) and disk sizes, [the worst], then the EPE's median. Settings: "
          + "; ".join(f"{n} = {_setting(PAN_SETTINGS[n])}" for n in names) + "\n")
    print("| source fps | camera | speed (px/frame at 96 px) | " + " | ".join(names) + " |")
    print("|---:|---|---:|" + "---|" * len(names))
    for (fps, camera, speed), cases in res["tiny"].items():
        cells = []
        for n in names:
            ratios = [c[2][n][0] for c in cases]
            epes = [c[2][n][1] for c in cases]
            cells.append(f"{statistics.median(ratios):.1f} [{min(ratios):.1f}] / {statistics.median(epes):.2f}")
        print(f"| {fps:g} | {camera} | {speed:g} | " + " | ".join(cells) + " |")
    per_tex: dict = {}
    for cases in res["tiny"].values():
        for tex, _, r in cases:
            for n in names:
                per_tex.setdefault((tex, n), []).append(r[n][0])
    print("| all | all | per texture: share of clips >= 10 | "
          + " | ".join(", ".join(f"{t} {sum(x >= 10 for x in per_tex[(t, n)])}/{len(per_tex[(t, n)])}"
                                 for t in PAN_TEXTURES if (t, n) in per_tex) for n in names) + " |")
    print("\npaper shape 81x480x832 at 16 fps from 480x832 at 30 fps, gravel, disk radius 48 px (30 fps over 16: "
          "flow_steps 2 and 4 are the same)\n")
    print("| speed (px/frame) | " + " | ".join(f"{n}: ratio / EPE / mask s" for n in PAPER_SETTINGS) + " |")
    print("|---:|" + "---|" * len(PAPER_SETTINGS))
    for speed, r in res["paper"].items():
        print(f"| {speed:g} | " + " | ".join(f"{r[n][0]:.1f} / {r[n][1]:.2f} / {r[n][2]:.1f}" for n in PAPER_SETTINGS)
              + " |")
    print("\ncost per clip from an mp4 (30 fps gravel pan at 4 px/frame), median of 2 runs\n")
    print(f"| shape | setting | decode s | mask s | decode + mask s | vs {PAPER_SETTINGS[0]} | "
          f"vs {PAPER_SETTINGS[1]} |")
    print("|---|---|---:|---:|---:|---:|---:|")
    base: dict = {}
    for shape, name, dec, msk in res["cost"]:
        base.setdefault(shape, []).append(dec + msk)
        first, prev = base[shape][0], base[shape][min(1, len(base[shape]) - 1)]
        print(f"| {shape} | {name} | {dec:.2f} | {msk:.2f} | {dec + msk:.2f} | x{(dec + msk) / first:.2f} | "
              f"x{(dec + msk) / prev:.2f} |")


def _setting(cfg: MaskConfig) -> str:
    return (f"flow_steps {cfg.flow_steps}, camera_fit {cfg.camera_fit}, camera_gate {cfg.camera_gate:g}, "
            f"out_of_view {cfg.out_of_view}")


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 seeds, no 480x832 flow accuracy (CI-sized)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per mask cell (default 30: the sd between clips is ~0.08, so 6 seeds leave a 0.03 standard error; --quick 2)")
    ap.add_argument("--flow", default="dis", choices=["dis", "farneback"], help="estimator for the mask tables")
    ap.add_argument("--preset", default=MaskConfig().dis_preset, choices=list(DIS_PRESETS),
                    help="DIS preset for the mask tables (default: MaskConfig's)")
    ap.add_argument("--pans-only", action="store_true", help="only part 4, the textured pans")
    args = ap.parse_args()
    if args.pans_only:
        t0 = time.perf_counter()
        res = textured_pans(args.quick)
        print(f"\nmachine: {machine()}; OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads); "
              f"512x512 matmul {matmul_anchor_ms():.2f} ms")
        print(f"benchmarks/masks.py --pans-only{' --quick' if args.quick else ''}: wall "
              f"{time.perf_counter() - t0:.0f} s")
        print_pans(res)
        return
    seeds = args.seeds or (2 if args.quick else 30)
    base = MaskConfig(flow=args.flow, dis_preset=args.preset)
    vspec = VideoSpec()
    t0 = time.perf_counter()

    sizes = [(64, 64)] if args.quick else [(64, 64), (480, 832)]
    epe = flow_accuracy(sizes, 2 if args.quick else 3)
    cells, pan = mask_quality(seeds, base, vspec)
    speed, comp = cost(args.quick, base)
    pans = textured_pans(args.quick)
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
    print_pans(pans)


if __name__ == "__main__":
    main()
