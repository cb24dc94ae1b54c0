"""Procedural clips with a known motion class and a known appearance, for the demo, tests and benchmarks.

A coloured, textured shape over a static low-contrast gray noise background. The motion class decides how the
shape (or, for ``pan``, the camera) moves; the caption names only the appearance, never the motion, so
anything that recovers the motion class from attribution got it from the pixels' motion, not the text.
Deterministic given the seed.

``camera`` adds camera motion on top of the object's: with ``camera="pan"`` the frame is the world (background
+ the object moving by its motion class) seen through a view that pans in a straight line at constant speed.
The motion class ``pan`` is itself a camera pan over a static world, so for it ``camera`` changes nothing.
``camera="static"`` (the default) renders exactly what it always has; the camera's randomness comes from its
own generator, never from the clip's main stream. :func:`moving_mask` gives the pixels of what moves in the
world, the ground truth for masks that subtract the camera's motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

__all__ = ["MOTIONS", "SHAPES", "COLOURS", "TEXTURES", "CAMERAS", "SynthSpec", "render_clip", "moving_mask",
           "caption_for", "generate_dataset", "planted_dataset", "PHOTO_TEXTURES", "photo_texture", "PanSpec",
           "render_pan"]

MOTIONS = ("translate", "rotate", "scale", "oscillate", "bounce", "pan")
SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 80, 230), "yellow": (235, 210, 40),
           "purple": (150, 60, 200)}
TEXTURES = ("solid", "striped", "checkered")
CAMERAS = ("static", "pan")

_RADIUS = 0.14  # object radius as a fraction of the shorter side (diameter ~28%)


@dataclass(frozen=True)
class SynthSpec:
    """One synthetic clip: motion class, appearance, length and size, camera, and the seed for everything random.

    ``camera="pan"`` pans the view over the world while the object moves in it by its motion class (for the
    ``pan`` class, whose object is static in the world, it is the same clip as ``camera="static"``).
    """

    motion: str
    shape: str
    colour: str
    texture: str
    frames: int
    fps: float = 8.0
    height: int = 96
    width: int = 128
    seed: int = 0
    camera: str = "static"

    def __post_init__(self):
        for name, allowed in (("motion", MOTIONS), ("shape", SHAPES), ("colour", tuple(COLOURS)),
                              ("texture", TEXTURES), ("camera", CAMERAS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"SynthSpec: {name}={getattr(self, name)!r} is invalid; allowed: {allowed}")
        if not (isinstance(self.frames, int) and self.frames >= 2):
            raise ValueError(f"SynthSpec: frames={self.frames!r} is invalid; use an int >= 2")
        if not (isinstance(self.fps, (int, float)) and self.fps > 0):
            raise ValueError(f"SynthSpec: fps={self.fps!r} is invalid; use a positive number")
        for name in ("height", "width"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 32):
                raise ValueError(f"SynthSpec: {name}={v!r} is invalid; use an int >= 32")
        if not isinstance(self.seed, int):
            raise ValueError(f"SynthSpec: seed={self.seed!r} is invalid; use an int")


def caption_for(spec: SynthSpec) -> str:
    """Appearance only, e.g. ``"a red striped square on a gray background"``; never the motion."""
    return f"a {spec.colour} {spec.texture} {spec.shape} on a gray background"


# ---------------------------------------------------------------------------------------------- drawing


def _polygon(shape: str) -> np.ndarray:
    """The shape's outline in local units (the unit disk), (V, 2) as (u, v)."""
    if shape == "circle":
        a = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(a), np.sin(a)], 1)
    if shape == "square":
        return np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]])
    if shape == "triangle":
        a = np.deg2rad([-90, 30, 150])
        return np.stack([np.cos(a), np.sin(a)], 1)
    a = np.deg2rad(-90 + 36 * np.arange(10))  # star: 5 outer points, 5 inner
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smoothed gray noise, (h, w, 3) float32 around 128 with std ~14: low contrast, but trackable."""
    out = np.zeros((h, w), np.float32)
    for cell, amp in ((8, 1.0), (4, 0.5)):  # two octaves of blobs ~cell px across
        small = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    out = cv2.GaussianBlur(out, (0, 0), 1.0)
    out = 128 + 14 * (out - out.mean()) / (out.std() + 1e-6)
    return np.repeat(out[:, :, None], 3, axis=2)


def _draw(img: np.ndarray, mask: np.ndarray, cx: float, cy: float, radius: float, angle: float,
          shape: str, rgb: tuple, texture: str) -> None:
    """Draw the object into ``img`` ((H, W, 3) float32) and ``mask`` ((H, W) bool) in place.

    Local coordinates (u, v) rotate and scale with the object, so texture and marker turn with it; the dark
    marker dot off-centre makes every shape (the circle too) visibly not rotationally symmetric.
    """
    H, W = mask.shape
    ext = 1.2 * radius
    x0, x1 = max(0, int(cx - ext)), min(W, int(math.ceil(cx + ext)) + 1)
    y0, y1 = max(0, int(cy - ext)), min(H, int(math.ceil(cy + ext)) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    c, s = math.cos(angle), math.sin(angle)
    uv = _polygon(shape)  # (V, 2)
    xy = np.stack([cx + radius * (c * uv[:, 0] - s * uv[:, 1]) - x0,
                   cy + radius * (s * uv[:, 0] + c * uv[:, 1]) - y0], 1)  # (V, 2) patch coords
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(inside, [np.round(xy * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    inside = inside.astype(bool)  # (h, w)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xs - cx, ys - cy
    u, v = (c * dx + s * dy) / radius, (-s * dx + c * dy) / radius  # (h, w) local units
    if texture == "striped":
        dark = np.floor(u / 0.4).astype(int) % 2 == 1
    elif texture == "checkered":
        dark = (np.floor(u / 0.4).astype(int) + np.floor(v / 0.4).astype(int)) % 2 == 1
    else:
        dark = np.zeros_like(inside)
    marker = (u - 0.4) ** 2 + v ** 2 < 0.2 ** 2
    shade = np.where(marker, 0.15, np.where(dark, 0.45, 1.0)).astype(np.float32)  # (h, w)
    colour = shade[:, :, None] * np.asarray(rgb, np.float32)  # (h, w, 3)
    patch = img[y0:y1, x0:x1]
    patch[inside] = colour[inside]
    mask[y0:y1, x0:x1] |= inside


# ---------------------------------------------------------------------------------------------- motion


def _room(h: int, w: int, r: float) -> np.ndarray:
    """How far (dx, dy) the centre of an object of radius ``r`` can travel while it stays in the frame."""
    return np.array([w - 2 * r - 4, h - 2 * r - 4])


def _fit(d: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Shrink displacement ``d`` (dx, dy) to fit ``room``, keeping its direction."""
    return d * min(1.0, *(room[k] / abs(d[k]) for k in range(2) if abs(d[k]) > 1e-9))


def _direction(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    return np.array([math.cos(a), math.sin(a)])


def _trajectory(spec: SynthSpec, rng: np.random.Generator, r: float):
    """Per-frame object centre (N, 2) in world px, angle (N,), scale (N,), camera offset (N, 2) and world size."""
    n, h, w = spec.frames, spec.height, spec.width
    i = np.arange(n, dtype=np.float64)  # (N,)
    room = _room(h, w, r)  # (2,)
    mid = np.array([w / 2, h / 2])
    centre = mid + rng.uniform(-0.08, 0.08, 2) * min(h, w)  # for the classes that stay in place
    xy = np.tile(centre, (n, 1))  # (N, 2)
    angle = np.full(n, rng.uniform(0, 2 * np.pi))
    scale = np.ones(n)
    cam = np.zeros((n, 2))
    world = (h, w)
    if spec.motion in ("translate", "pan"):
        d = _fit(_direction(rng) * rng.uniform(1.0, 2.5) * (n - 1), room)  # total travel (2,)
        path = (i / (n - 1))[:, None] * d[None, :] - d / 2  # (N, 2), centred on 0
        start = mid + rng.uniform(-0.5, 0.5, 2) * (room - np.abs(d))  # jitter within the slack left
        if spec.motion == "translate":
            xy = start + path
        else:  # the camera moves by +path, so the static world (object included) moves by -path in frame
            pad = np.ceil(np.abs(d)).astype(int) + 4
            world = (h + pad[1], w + pad[0])
            cam = path + pad / 2  # top-left of the view in world px
            xy = np.tile(start + pad / 2, (n, 1))
    elif spec.motion == "rotate":
        angle = angle[0] + rng.choice([-1, 1]) * np.deg2rad(rng.uniform(10, 25)) * i
    elif spec.motion == "scale":
        small, large = rng.uniform(0.5, 0.7), rng.uniform(1.2, 1.4)
        s0, s1 = (small, large) if rng.random() < 0.5 else (large, small)
        scale = s0 + (s1 - s0) * i / (n - 1)
    elif spec.motion == "oscillate":
        amp = _fit(_direction(rng) * rng.uniform(0.3, 0.5) * w, room) / 2  # (2,) half the peak-to-peak
        period = rng.uniform(10, 20)  # frames
        xy = mid + np.sin(2 * np.pi * i / period + rng.uniform(0, 2 * np.pi))[:, None] * amp[None, :]
    elif spec.motion == "bounce":
        top, floor = r + 2, h - r - 2
        y, vy = top + rng.uniform(0, 0.2) * (floor - top), 0.0
        g = 2 * (floor - y) / rng.uniform(5, 8) ** 2  # px / frame^2: first impact after 5-8 frames
        e = rng.uniform(0.75, 0.9)  # restitution
        ys = []
        for _ in range(n):
            ys.append(y)
            for _ in range(4):  # 4 sub-steps per frame
                vy += g / 4
                y += vy / 4
                if y > floor:
                    y, vy = floor - (y - floor) * e, -vy * e
        xy = np.stack([np.full(n, centre[0]), np.array(ys)], 1)
    return xy, angle, scale, cam, world


def _camera_pan(spec: SynthSpec, xy: np.ndarray, r: float):
    """For ``camera="pan"``: the object's centre in the frame (N, 2), the view's top-left in world px (N, 2) and
    the world's size (h, w).

    The view moves in a straight line at a constant 1-2.5 px/frame (scaled by ``min(h, w) / 96``) in a random
    direction, over at most half the room an object of radius ``r`` has in the frame. The object keeps its
    own trajectory ``xy`` in the world, shrunk about its centre only if object and camera motion together
    would carry it out of the frame. Randomness from ``default_rng([seed, 1])``, not the clip's main stream.
    """
    rng = np.random.default_rng([spec.seed, 1])
    n, h, w = spec.frames, spec.height, spec.width
    i = np.arange(n, dtype=np.float64)
    room = _room(h, w, r)  # (2,)
    speed = rng.uniform(1.0, 2.5) * min(h, w) / 96  # px / frame
    d = _fit(_direction(rng) * speed * (n - 1), room / 2)  # total camera travel (2,)
    path = (i / (n - 1))[:, None] * d[None, :] - d / 2  # (N, 2) centred on 0
    lo, hi = xy.min(0), xy.max(0)
    span, free = hi - lo, room - np.abs(d)
    shrink = min([1.0] + [free[k] / span[k] for k in range(2) if span[k] > 1e-9])
    rel = (xy - (lo + hi) / 2) * shrink - path  # (N, 2): the world moves by -path in the frame
    rlo, rhi = rel.min(0), rel.max(0)
    obj = rel - (rlo + rhi) / 2 + np.array([w / 2, h / 2]) + rng.uniform(-0.5, 0.5, 2) * np.maximum(
        room - (rhi - rlo), 0)
    pad = np.ceil(np.abs(d)).astype(int) + 4
    return obj, path + pad / 2, (h + int(pad[1]), w + int(pad[0]))


def _view(world: np.ndarray, top_left: np.ndarray, h: int, w: int) -> np.ndarray:
    """The (h, w) window of ``world`` whose top-left corner is at sub-pixel ``top_left`` (x, y), bilinear."""
    return cv2.getRectSubPix(world, (w, h), (float(top_left[0] + (w - 1) / 2), float(top_left[1] + (h - 1) / 2)))


def render_clip(spec: SynthSpec) -> tuple[np.ndarray, np.ndarray]:
    """Frames uint8 (N, H, W, 3) RGB and the object's ground-truth mask bool (N, H, W)."""
    rng = np.random.default_rng(spec.seed)
    n, h, w = spec.frames, spec.height, spec.width
    r = _RADIUS * min(h, w)
    extent = r * np.linalg.norm(_polygon(spec.shape), axis=1).max()  # farthest point from the centre, px
    r_room = extent * (1.4 if spec.motion == "scale" else 1.0)
    xy, angle, scale, cam, (wh, ww) = _trajectory(spec, rng, r_room)
    panned = spec.camera == "pan" and spec.motion != "pan"
    if panned:  # the object moves in the world by its class while the view pans over it
        xy, cam, (wh, ww) = _camera_pan(spec, xy, r_room)
    bg = _background(rng, wh, ww)  # (wh, ww, 3) float32
    rgb = COLOURS[spec.colour]
    frames = np.empty((n, h, w, 3), np.uint8)
    masks = np.zeros((n, h, w), bool)
    if spec.motion == "pan":  # render the static world once, then move the camera over it
        world_mask = np.zeros((wh, ww), bool)
        _draw(bg, world_mask, xy[0, 0], xy[0, 1], r, angle[0], spec.shape, rgb, spec.texture)
        world_mask = world_mask.astype(np.float32)
        for k in range(n):
            frames[k] = np.clip(_view(bg, cam[k], h, w) + 0.5, 0, 255).astype(np.uint8)
            masks[k] = _view(world_mask, cam[k], h, w) > 0.5
        return frames, masks
    for k in range(n):
        img = _view(bg, cam[k], h, w) if panned else bg.copy()  # (H, W, 3) float32
        # xy is in frame px: drawn over the view, the object sits at xy + cam in the world
        _draw(img, masks[k], xy[k, 0], xy[k, 1], r * scale[k], angle[k], spec.shape, rgb, spec.texture)
        frames[k] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return frames, masks


def moving_mask(spec: SynthSpec, masks: np.ndarray) -> np.ndarray:
    """The pixels of what moves in the world, bool (N, H, W), from ``render_clip``'s object masks.

    The object moves in the world for every motion class but ``pan`` (a camera pan over a static world), where
    nothing does; the camera's own motion is never counted. Ground truth for ``--motion object`` masks.
    """
    if spec.motion == "pan":
        return np.zeros(masks.shape, bool)
    return np.asarray(masks, bool).copy()


# ---------------------------------------------------------------------------------------------- datasets


def generate_dataset(out_dir: str | Path, n_clips: int, seed: int = 0, *, frames_range: tuple[int, int] = (17, 40),
                     fps: float = 8.0, height: int = 96, width: int = 128, prefix: str = "clip",
                     motions: Sequence[str] = MOTIONS, cameras: Sequence[str] = ("static",),
                     progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``n_clips`` mp4 clips and ``manifest.csv`` to ``out_dir``; return the manifest's path.

    Clip ``i`` gets ``motions[i % len(motions)]`` (balanced classes) and camera
    ``cameras[(i // len(motions)) % len(cameras)]`` (each round of motion classes under the next camera);
    appearance, length (in ``frames_range``, both ends included) and the clip's seed are drawn from ``seed``.
    The manifest gets a ``camera`` column only when ``cameras`` is not the default ``("static",)``.
    """
    from .manifest import write_manifest
    from .video import write_video

    if not (isinstance(n_clips, int) and n_clips >= 1):
        raise ValueError(f"generate_dataset: n_clips={n_clips!r} is invalid; use an int >= 1")
    lo, hi = frames_range
    if not (isinstance(lo, int) and isinstance(hi, int) and 2 <= lo <= hi):
        raise ValueError(f"generate_dataset: frames_range={frames_range!r} is invalid; use (lo, hi) ints "
                         f"with 2 <= lo <= hi")
    motions = tuple(motions)
    bad = [m for m in motions if m not in MOTIONS]
    if not motions or bad:
        raise ValueError(f"generate_dataset: motions={motions!r} is invalid; choose from {MOTIONS}")
    cameras = tuple(cameras)
    if not cameras or any(c not in CAMERAS for c in cameras):
        raise ValueError(f"generate_dataset: cameras={cameras!r} is invalid; choose from {CAMERAS}")
    if height % 2 or width % 2:
        raise ValueError(f"generate_dataset: height={height}, width={width} must be even (mp4 yuv420p)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clips):
        spec = SynthSpec(motion=motions[i % len(motions)], shape=str(rng.choice(SHAPES)),
                         colour=str(rng.choice(list(COLOURS))), texture=str(rng.choice(TEXTURES)),
                         frames=int(rng.integers(lo, hi + 1)), fps=fps, height=height, width=width,
                         seed=int(rng.integers(2**31)), camera=cameras[(i // len(motions)) % len(cameras)])
        name = f"{prefix}_{i:04d}.mp4"
        write_video(out / name, render_clip(spec)[0], fps)
        row = {"clip_id": f"{prefix}_{i:04d}", "path": name, "caption": caption_for(spec), "motion": spec.motion}
        if cameras != ("static",):
            row["camera"] = spec.camera
        rows.append(row | {"shape": spec.shape, "colour": spec.colour, "texture": spec.texture,
                           "frames": spec.frames, "fps": spec.fps, "seed": spec.seed})
        if progress is not None:
            progress(i + 1, n_clips)
    return write_manifest(out / "manifest.csv", rows)


def planted_dataset(out_dir: str | Path, seed: int = 0, *, per_pair: int = 2, queries_per_pair: int = 3,
                    motions: Sequence[str] = MOTIONS, appearances: int | None = None,
                    frames_range: tuple[int, int] = (17, 40), fps: float = 8.0, height: int = 96, width: int = 128
                    ) -> tuple[Path, Path]:
    """A planted-motion set where motion and appearance vary independently: (train manifest, query manifest).

    ``appearances`` appearance classes (a distinct colour + shape each; default: one per motion class) are
    crossed with the motion classes. One (motion, appearance) pair per motion, and per appearance, is held out
    (a seeded Latin-square diagonal): the training set has ``per_pair`` clips of every other pair, the queries
    ``queries_per_pair`` clips of each held-out pair, so no query's combination was ever seen in training and
    a method can only find a query's motion class from motion, and its appearance class from appearance.
    Texture, length and every clip's own seed are drawn at random; captions name the appearance only. The
    manifests carry ``motion`` and ``appearance`` columns.
    """
    from .manifest import write_manifest
    from .video import write_video

    motions = tuple(motions)
    if not motions or any(m not in MOTIONS for m in motions):
        raise ValueError(f"planted_dataset: motions={motions!r} is invalid; choose from {MOTIONS}")
    n_app = len(motions) if appearances is None else appearances
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    if not (isinstance(n_app, int) and len(motions) <= n_app <= len(combos)):
        raise ValueError(f"planted_dataset: appearances={appearances!r} is invalid; need an int in "
                         f"[{len(motions)}, {len(combos)}] (at least one per motion class)")
    for name, v in (("per_pair", per_pair), ("queries_per_pair", queries_per_pair)):
        if not (isinstance(v, int) and v >= 1):
            raise ValueError(f"planted_dataset: {name}={v!r} is invalid; use an int >= 1")
    rng = np.random.default_rng(seed)
    # distinct colours first, so two appearance classes differ in colour whenever there are enough colours
    order = rng.permutation(len(combos))
    picked: list[tuple[str, str]] = []
    for want_new_colour in (True, False):
        for i in order:
            c = combos[i]
            if c not in picked and (not want_new_colour or c[0] not in {p[0] for p in picked}):
                picked.append(c)
            if len(picked) == n_app:
                break
        if len(picked) == n_app:
            break
    shift = int(rng.integers(n_app))
    held = {(m, (i + shift) % n_app) for i, m in enumerate(motions)}
    out = Path(out_dir)
    lo, hi = frames_range

    def write(sub: str, pairs: list[tuple[str, int]], per: int, prefix: str) -> Path:
        (out / sub).mkdir(parents=True, exist_ok=True)
        rows = []
        for m, a in pairs:
            colour, shape = picked[a]
            for _ in range(per):
                spec = SynthSpec(motion=m, shape=shape, colour=colour, texture=str(rng.choice(TEXTURES)),
                                 frames=int(rng.integers(lo, hi + 1)), fps=fps, height=height, width=width,
                                 seed=int(rng.integers(2**31)))
                cid = f"{prefix}_{len(rows):04d}"
                write_video(out / sub / f"{cid}.mp4", render_clip(spec)[0], fps)
                rows.append({"clip_id": cid, "path": f"{cid}.mp4", "caption": caption_for(spec), "motion": m,
                             "appearance": f"{colour} {shape}", "shape": shape, "colour": colour,
                             "texture": spec.texture, "frames": spec.frames, "fps": spec.fps, "seed": spec.seed})
        return write_manifest(out / sub / "manifest.csv", rows)

    train = [(m, a) for m in motions for a in range(n_app) if (m, a) not in held]
    queries = sorted(held, key=lambda p: motions.index(p[0]))
    return write("train", train, per_pair, "clip"), write("queries", queries, queries_per_pair, "query")


# ------------------------------------------------------------------------------------------ textured camera pans

#: real photos scikit-image ships inside its package (read from there: scikit-image is not imported)
PHOTO_TEXTURES = ("gravel", "grass", "brick", "astronaut", "coffee", "chelsea")


def photo_texture(name: str) -> np.ndarray:
    """A real photograph scikit-image ships (``PHOTO_TEXTURES``), (H, W, 3) uint8 RGB, read with OpenCV from the
    installed package's data folder (``pip install scikit-image``; it is part of the test install)."""
    import importlib.util

    if name not in PHOTO_TEXTURES:
        raise ValueError(f"texture={name!r} is invalid: one of {PHOTO_TEXTURES}")
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("photo textures are read from scikit-image's data: pip install scikit-image")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / f"{name}.png"
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{path}: not found or unreadable (scikit-image installed without its data?)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class PanSpec:
    """A camera moving over a real-photo texture while a textured disk moves on its own, at the source rate.

    ``speed``: the camera's pan in source px per source frame, along ``direction`` degrees (0: to the right,
    90: down); ``zoom``: its zoom per frame (0.01: 1 % closer each frame, about the frame's centre). The disk has
    radius ``sprite`` x the shorter side and moves ``sprite_speed`` px per frame along ``direction + 135``
    degrees (against the pan), through the middle of the clip."""

    frames: int = 36
    fps: float = 16.0
    height: int = 96
    width: int = 96
    speed: float = 4.0
    direction: float = 45.0
    zoom: float = 0.0
    sprite: float = 0.12
    sprite_speed: float = 3.0


def _world_to_image(spec: PanSpec, k: int) -> np.ndarray:
    """3x3 map from frame ``k``'s image pixels to texture (world) pixels."""
    a = math.radians(spec.direction)
    z = (1.0 + spec.zoom) ** k
    cx, cy = (spec.width - 1) / 2, (spec.height - 1) / 2
    px, py = k * spec.speed * math.cos(a), k * spec.speed * math.sin(a)
    return np.array([[1 / z, 0, cx - cx / z + px], [0, 1 / z, cy - cy / z + py], [0, 0, 1]], np.float64)


def render_pan(texture: np.ndarray, sprite_texture: np.ndarray, spec: PanSpec
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frames (N, H, W, 3) uint8, mover (N, H, W) bool, background flow (N-1, H, W, 2) float32)``: the
    true flow of the still world from frame k to k+1 (the camera's alone), in source pixels."""
    h, w, n = spec.height, spec.width, spec.frames
    big = max(h, w) + int(abs(spec.speed) * n) + 8
    reps = (big // texture.shape[0] + 2, big // texture.shape[1] + 2, 1)
    world = np.tile(texture, reps)                                    # large enough for the whole pan
    off = np.array([[1, 0, world.shape[1] / 4], [0, 1, world.shape[0] / 4], [0, 0, 1]])
    r = spec.sprite * min(h, w)
    b = math.radians(spec.direction + 135.0)
    d = np.array([math.cos(b), math.sin(b)]) * spec.sprite_speed
    start = np.array([(w - 1) / 2, (h - 1) / 2]) - d * (n - 1) / 2
    side = int(2 * math.ceil(r) + 2)
    patch = cv2.resize(sprite_texture, (side, side), interpolation=cv2.INTER_AREA)
    disk = np.zeros((side, side), np.float32)
    cv2.circle(disk, (side // 2, side // 2), int(round(r)), 1.0, -1, lineType=cv2.LINE_AA)
    frames = np.empty((n, h, w, 3), np.uint8)
    mover = np.zeros((n, h, w), bool)
    for k in range(n):
        m = (off @ _world_to_image(spec, k))[:2]
        bg = cv2.warpAffine(world, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        x, y = start + k * d
        t = np.float32([[1, 0, x - side / 2], [0, 1, y - side / 2]])
        tex = cv2.warpAffine(patch, t, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32)
        alpha = cv2.warpAffine(disk, t, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        frames[k] = np.clip(bg * (1 - alpha) + tex * alpha + 0.5, 0, 255).astype(np.uint8)
        mover[k] = alpha[..., 0] > 0.5
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([xs, ys, np.ones_like(xs)], -1)                    # (H, W, 3)
    flow = np.empty((n - 1, h, w, 2), np.float32)
    for k in range(n - 1):
        to = np.linalg.inv(_world_to_image(spec, k + 1)) @ _world_to_image(spec, k)
        q = pts @ to.T
        flow[k] = (q[..., :2] / q[..., 2:3] - pts[..., :2]).astype(np.float32)
    return frames, mover, flow
