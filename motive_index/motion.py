"""Motion: dense optical flow, camera compensation, magnitude, the weight W, and W on the latent grid.

    frames ─► flow (DIS | Farneback | a user's exported model) ─► [object: minus the camera's global motion]
           ─► per-frame magnitude M ─► W = normalize(M) in [0, 1] ─► mean-pooled onto the VAE's latent grid

Flow runs at the source's own rate when the source frames between two standard frames are given
(``between``, from ``load_video(..., flow_steps=K)``): one flow per consecutive pair of source frames, composed
over the standard interval (``F = f1 + f2∘(x + f1) + ...``), and the camera likewise, one fit per source pair,
the homographies multiplied. Between standard frames two or more source frames apart, a flow estimator sees
twice the displacement or more, and on fine repetitive texture (gravel, grass, foliage) DIS then locks onto
the wrong repeat: bands of false motion across a pan (``benchmarks/masks.py``, textured pans).

The camera's motion over a standard interval is a homography (or similarity) fitted with RANSAC to the dense
flow itself at a fine grid of points where the frame has texture (``camera_fit='flow'``, the default), or to
sparse Lucas–Kanade tracks on a regular grid, one fit per source pair, multiplied (``'tracks'``: indexes made
before); the grid keeps a large, strongly textured moving object from owning the fit (it holds only the cells
it covers), and a fit whose inliers sit in one region is not trusted. Then the camera gate
(``camera_gate``, gray levels): where frame t+1, warped back by the camera's motion, looks like frame t, the
residual flow there is the estimator's or the fit's error (on fine repetitive texture the flow locks onto the
wrong repeat in bands), so it counts in proportion to that photometric error over the gate; only while the
camera moves, so a flat-coloured mover under a still camera keeps its inside.
"""

from __future__ import annotations

import threading
import zipfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import cv2
import numpy as np

from .config import MaskConfig
from .errors import ModelLoadError

# A clip is static when this percentile of its flow magnitude is below MaskConfig.static_px: high enough that a
# small mover (the rim of a growing shape: ~1% of the pixels) counts as motion, low enough to ignore a few spikes.
STATIC_PERCENTILE = 99.9

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


# ----------------------------------------------------------------------------------------- flow estimators


class FlowEstimator(ABC):
    """Dense flow from one grayscale frame to the next: (H, W) uint8 x 2 -> (H, W, 2) float32, in pixels."""

    name: str

    @abstractmethod
    def flow(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray: ...


class DISFlow(FlowEstimator):
    """OpenCV's DIS (dense inverse search): no weights, fast on a CPU. The default.

    ``preset='auto'``: ``fast`` below 128 px on the shorter side, ``medium`` from there up."""

    def __init__(self, preset: str = "auto"):
        self.name = f"dis-{preset}"
        self.preset = preset
        self._local = threading.local()  # OpenCV's DIS objects keep state between calls: one set per thread

    def flow(self, prev, nxt):
        preset = self.preset if self.preset != "auto" else ("fast" if min(prev.shape) < 128 else "medium")
        cache = self._local.__dict__.setdefault("dis", {})
        dis = cache.get(preset)
        if dis is None:
            dis = cache[preset] = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
        return dis.calc(prev, nxt, None)


class FarnebackFlow(FlowEstimator):
    """OpenCV's Farnebäck polynomial-expansion flow; the window scales with the frame size."""

    name = "farneback"

    def flow(self, prev, nxt):
        win = max(9, int(round(min(prev.shape) / 16)) | 1)
        return cv2.calcOpticalFlowFarneback(prev, nxt, None, pyr_scale=0.5, levels=4, winsize=win, iterations=3,
                                            poly_n=5, poly_sigma=1.1, flags=0)


class LearnedFlow(FlowEstimator):
    """A learned estimator the user exported from their own weights (e.g. RAFT): nothing is downloaded.

    ``path``: a ``torch.export`` program (``.pt2``) or a TorchScript module (``.pt``) called as
    ``model(frame1, frame2)`` with RGB-as-gray float tensors (1, 3, H, W) in [-1, 1], H and W padded to a
    multiple of 8, returning (1, 2, H, W) flow in pixels or a list of such (RAFT's refinements; the last is used).
    """

    def __init__(self, path: str, device: str = "cpu"):
        import torch

        self.name = f"learned:{path}"
        self._torch = torch
        self.device = torch.device(device)
        try:
            if str(path).endswith(".pt2"):
                self._model = torch.export.load(str(path)).module()
            else:
                self._model = torch.jit.load(str(path), map_location=self.device)
        except (OSError, RuntimeError, ValueError, zipfile.BadZipFile) as e:
            raise ModelLoadError(f"flow_model={str(path)!r} could not be loaded as a torch.export (.pt2) or "
                                 f"TorchScript (.pt) flow model: {e}") from e
        self._model.to(self.device)
        self._lock = threading.Lock()  # one forward at a time: an exported module is not promised thread-safe

    def flow(self, prev, nxt):
        torch = self._torch
        h, w = prev.shape
        ph, pw = -h % 8, -w % 8

        def prep(g):  # (H, W) uint8 -> (1, 3, H+ph, W+pw) in [-1, 1]
            t = torch.from_numpy(g).float().div(127.5).sub(1.0)[None, None].expand(1, 3, h, w)
            return torch.nn.functional.pad(t, (0, pw, 0, ph), mode="replicate").to(self.device)

        with torch.no_grad(), self._lock:
            out = self._model(prep(prev), prep(nxt))
        if isinstance(out, (list, tuple)):
            out = out[-1]
        return out[0, :, :h, :w].permute(1, 2, 0).float().cpu().numpy()


def make_flow_estimator(cfg: MaskConfig, device: str = "cpu") -> FlowEstimator:
    """The estimator ``cfg`` names; make it once and reuse it (a learned model is loaded here)."""
    if cfg.flow == "dis":
        return DISFlow(cfg.dis_preset)
    if cfg.flow == "farneback":
        return FarnebackFlow()
    return LearnedFlow(cfg.flow_model, device=device)


def _gray(frames: np.ndarray) -> list[np.ndarray]:
    return [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]


def compose_flows(flows: list[np.ndarray]) -> np.ndarray:
    """The flow of consecutive steps ``flows`` ((H, W, 2) each, step k from frame k to k+1) from the first frame
    to the last: ``F(x) = f1(x) + f2(x + f1(x)) + ...``, each later step sampled bilinearly where the pixel has
    got to (clamped at the border)."""
    total = flows[0].astype(np.float32, copy=True)
    if len(flows) == 1:
        return total
    h, w = total.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    for f in flows[1:]:
        at = cv2.remap(f.astype(np.float32, copy=False), gx + total[..., 0], gy + total[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
        total += at
    return total


def _chains(frames: np.ndarray, between) -> list[list[np.ndarray]]:
    """Per standard interval, the grayscale frames flow runs through: frame t, those between, frame t+1."""
    gray = _gray(frames)
    if between is None:
        return [[gray[t], gray[t + 1]] for t in range(len(gray) - 1)]
    if len(between) != len(gray) - 1:
        raise ValueError(f"between has {len(between)} intervals for {len(gray)} frames; need {len(gray) - 1}")
    return [[gray[t], *_gray(between[t]), gray[t + 1]] if len(between[t]) else [gray[t], gray[t + 1]]
            for t in range(len(gray) - 1)]


def flow_fields(frames: np.ndarray, estimator: FlowEstimator | None = None, between=None) -> np.ndarray:
    """frames: (T, H, W, 3) uint8 RGB -> (T-1, H, W, 2) float32 flow from frame t to t+1, in pixels.

    ``estimator``: default DIS with the ``auto`` preset. ``between``: per interval, the source frames between
    frames t and t+1 ((k, H, W, 3) uint8 each, k may be 0): the flow is then composed through them."""
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"flow needs (T>=2, H, W, 3) frames, got shape {frames.shape}")
    est = estimator or DISFlow("auto")
    return np.stack([compose_flows([est.flow(a, b) for a, b in zip(chain[:-1], chain[1:])])
                     for chain in _chains(frames, between)]).astype(np.float32)


# ----------------------------------------------------------------------------------------- camera motion


@dataclass(frozen=True)
class CameraFit:
    """The global motion between two frames: a 3x3 matrix (identity when no fit was trusted)."""

    matrix: np.ndarray
    ok: bool
    tracks: int
    inlier_ratio: float


def _grid_points(h: int, w: int, cells: int = 16) -> np.ndarray:
    """(N, 1, 2) float32 points on a regular grid, a border of one step left out."""
    step = max(2.0, min(h, w) / cells)
    ys = np.arange(step, h - step + 1e-6, step)
    xs = np.arange(step, w - step + 1e-6, step)
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 1, 2).astype(np.float32)


def fit_camera(prev: np.ndarray, nxt: np.ndarray, model: str = "homography", min_tracks: int = 12,
               min_inliers: float = 0.3, min_cover: float = 0.3) -> CameraFit:
    """Fit the camera's motion from ``prev`` to ``nxt`` (grayscale uint8) with RANSAC on grid LK tracks.

    The fit is trusted only if its inliers are at least ``min_inliers`` of the tracks, ``min_cover`` of the whole
    grid, and spread over 3 of the 4 quadrants: a camera moves the whole frame, not one region of it."""
    h, w = prev.shape
    p0 = _grid_points(h, w)
    lk = _lk_params(h, w)
    p1, st, _ = cv2.calcOpticalFlowPyrLK(prev, nxt, p0, None, **lk)
    back, st_b, _ = cv2.calcOpticalFlowPyrLK(nxt, prev, p1, None, **lk)
    good = (st[:, 0] == 1) & (st_b[:, 0] == 1) & (np.linalg.norm((back - p0)[:, 0], axis=1) < 0.5)
    a, b = p0[good, 0], p1[good, 0]
    if len(a) < min_tracks:
        return CameraFit(np.eye(3), False, int(len(a)), 0.0)
    m, inl = _ransac(a, b, model, max(0.5, 0.01 * min(h, w)))
    return _trusted(m, inl, a, len(p0), h, w, min_inliers, min_cover)


def _lk_params(h: int, w: int, levels: int = 3, iterations: int = 30) -> dict:
    """Lucas–Kanade's settings; its status is 0 where the window lacks texture (minimum eigenvalue test)."""
    return dict(winSize=(9, 9) if min(h, w) < 160 else (15, 15), maxLevel=levels, minEigThreshold=1e-4,
                criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 0.01))


def _ransac(a: np.ndarray, b: np.ndarray, model: str, thresh: float):
    """RANSAC fit of ``model`` (homography or similarity) mapping points ``a`` to ``b``: (3x3 or None, inliers)."""
    if model == "homography":
        return cv2.findHomography(a, b, cv2.RANSAC, ransacReprojThreshold=thresh, maxIters=2000, confidence=0.995)
    m2, inl = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=thresh, maxIters=2000,
                                          confidence=0.995)
    return (None if m2 is None else np.vstack([m2, [0.0, 0.0, 1.0]])), inl


def _trusted(m, inl, a: np.ndarray, grid: int, h: int, w: int, min_inliers: float, min_cover: float) -> CameraFit:
    """A RANSAC fit ``m`` (inlier flags ``inl`` over the points ``a``) as a CameraFit, trusted only if its inliers
    are at least ``min_inliers`` of the points and ``min_cover`` of the ``grid`` points, the warp is plausible and
    the inliers are spread over 3 of the frame's 4 quadrants."""
    if m is None or inl is None:
        return CameraFit(np.eye(3), False, int(len(a)), 0.0)
    inl = inl[:, 0].astype(bool)
    ratio = float(inl.mean())
    if (ratio < min_inliers or inl.sum() < min_cover * grid or not _plausible(m, h, w)
            or _quadrants(a[inl], h, w) < 3):
        # too few agreeing tracks, a degenerate warp, or agreement in one region only (a textured mover over a
        # plain background would otherwise be taken for the camera)
        return CameraFit(np.eye(3), False, int(len(a)), ratio)
    return CameraFit(m, True, int(len(a)), ratio)


def fit_camera_to_flow(prev: np.ndarray, flow: np.ndarray, model: str = "homography", min_tracks: int = 12,
                       min_inliers: float = 0.3, min_cover: float = 0.3) -> CameraFit:
    """Fit the camera's motion to a dense flow field ``flow`` (H, W, 2) from ``prev`` (grayscale uint8) with RANSAC
    on the flow at a fine grid of points (32 cells a side) where ``prev`` has texture to track (Lucas–Kanade's own
    test, as :func:`fit_camera` applies it: in a flat region the flow is the estimator's fill-in, and over a
    plain backdrop that is the mover's motion spread out). Trusted as :func:`fit_camera`'s.

    On fine repetitive texture the dense flow, composed through the source frames, is a better guide than sparse
    tracks between the two standard frames (benchmarks/masks.py, textured pans), and a fit per standard interval
    needs no chain."""
    h, w = prev.shape
    p0 = _grid_points(h, w, cells=32)
    _, textured, _ = cv2.calcOpticalFlowPyrLK(prev, prev, p0, None, **_lk_params(h, w, levels=0, iterations=1))
    a = p0[textured[:, 0] == 1, 0]
    if len(a) < min_tracks:
        return CameraFit(np.eye(3), False, int(len(a)), 0.0)
    b = a + flow[a[:, 1].astype(int), a[:, 0].astype(int)]
    m, inl = _ransac(a, b, model, max(0.5, 0.01 * min(h, w)))
    return _trusted(m, inl, a, len(p0), h, w, min_inliers, min_cover)


def _quadrants(pts: np.ndarray, h: int, w: int) -> int:
    """How many of the frame's four quadrants hold at least two of these (N, 2) points."""
    q = (pts[:, 0] >= w / 2).astype(int) + 2 * (pts[:, 1] >= h / 2).astype(int)
    return int((np.bincount(q, minlength=4) >= 2).sum())


def _plausible(m: np.ndarray, h: int, w: int) -> bool:
    """A camera warp keeps the corners in front (positive w) and moves none by more than half the frame."""
    if not np.all(np.isfinite(m)):
        return False
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64)
    mapped = corners @ m.T
    if np.any(mapped[:, 2] <= 0.1):
        return False
    shift = mapped[:, :2] / mapped[:, 2:3] - corners[:, :2]
    return bool(np.all(np.linalg.norm(shift, axis=1) < 0.5 * max(h, w)))


def camera_flow(matrix: np.ndarray, h: int, w: int) -> np.ndarray:
    """The (H, W, 2) flow a global motion ``matrix`` (3x3) induces at every pixel (float32)."""
    m = matrix.astype(np.float64)
    xs = np.arange(w, dtype=np.float32)[None, :]                       # (1, W)
    ys = np.arange(h, dtype=np.float32)[:, None]                       # (H, 1)
    den = (m[2, 0] * xs + m[2, 1] * ys + m[2, 2]).astype(np.float32)   # (H, W) by broadcasting
    u = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / den - xs
    v = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / den - ys
    return np.stack([u, v], axis=-1).astype(np.float32, copy=False)


def _fit_chain(chain: list[np.ndarray], model: str) -> CameraFit:
    """The camera's motion from the first frame of ``chain`` to its last: one fit per consecutive pair, the
    matrices multiplied; trusted only if every step's fit is."""
    steps = [fit_camera(a, b, model) for a, b in zip(chain[:-1], chain[1:])]
    if len(steps) == 1:
        return steps[0]
    m = np.eye(3)
    for f in steps:
        m = f.matrix @ m
    ok = all(f.ok for f in steps) and _plausible(m, *chain[0].shape)
    return CameraFit(m if ok else np.eye(3), ok, min(f.tracks for f in steps), min(f.inlier_ratio for f in steps))


def compensate(frames: np.ndarray, flows: np.ndarray, model: str = "homography", between=None, fit: str = "tracks"
               ) -> tuple[np.ndarray, list[CameraFit], np.ndarray, list[np.ndarray]]:
    """Subtract the camera's motion from each flow field (``between``: as for :func:`flow_fields`).

    ``fit``: ``tracks`` fits the camera to sparse Lucas–Kanade tracks, one fit per source pair, chained over the
    interval (indexes made before ``MaskConfig.camera_fit`` existed); ``flow`` fits it to the interval's dense
    flow itself (:func:`fit_camera_to_flow`).

    Returns the (T-1, H, W, 2) residual flows, the fits, the camera's mean speed per pair (px/frame) and the 3x3
    matrix taken for each pair."""
    h, w = flows.shape[1:3]
    if fit == "flow":
        fits = [fit_camera_to_flow(g, f, model) for g, f in zip(_gray(frames[:-1]), flows)]
    else:
        fits = [_fit_chain(chain, model) for chain in _chains(frames, between)]
    ok = [t for t, f in enumerate(fits) if f.ok]
    residual = np.empty_like(flows, dtype=np.float32)
    speed = np.zeros(len(fits))
    used = []
    for t in range(len(fits)):
        # a pair whose fit was not trusted borrows the nearest trusted one (the camera moves smoothly); with no
        # trusted fit at all the camera is taken as still
        m = fits[min(ok, key=lambda u: abs(u - t))].matrix if ok else np.eye(3)
        cam = camera_flow(m, h, w)
        residual[t] = flows[t] - cam
        speed[t] = float(np.sqrt(cam[..., 0] ** 2 + cam[..., 1] ** 2).mean())
        used.append(m)
    return residual, fits, speed, used


# the camera gate acts on pairs whose camera moves at least this much (px per standard interval): under a still
# camera there is no fit error to explain away, and a flat-coloured mover's interior would be
GATE_MIN_CAMERA_PX = 0.5


def camera_gate(frames: np.ndarray, matrices: list[np.ndarray], speed: np.ndarray, tau: float,
                out_of_view: bool = False) -> np.ndarray:
    """(T-1, H, W) in [0, 1]: how far the camera's motion leaves each pixel of each pair unexplained.

    The photometric error of frame t against frame t+1 warped back by the camera's matrix for the pair
    (grayscale, lightly blurred), over ``tau`` gray levels, clipped to 1, then widened by a 3x3 max filter (a
    flat-coloured mover lights up at its edges; the widening brings some of its inside in). Where the camera's
    warp explains what a pixel looks like, the residual flow there is the flow's or the fit's error, not motion:
    on fine repetitive texture the flow can lock onto the wrong repeat, and the background then shows bands of
    false motion. With ``out_of_view``, 0 where the camera's motion carries the pixel out of the frame: it has no
    next position, its flow is the estimator's guess and the warp compares it with the replicated border (on a
    fast pan that band is a large share of the frame). 1 on pairs whose camera moves less than
    ``GATE_MIN_CAMERA_PX``."""
    gray = [cv2.GaussianBlur(g.astype(np.float32), (3, 3), 0.8) for g in _gray(frames)]
    h, w = gray[0].shape
    kernel = np.ones((3, 3), np.uint8)
    out = np.ones((len(matrices), h, w), np.float32)
    for t, m in enumerate(matrices):
        if speed[t] < GATE_MIN_CAMERA_PX:
            continue
        back = cv2.warpPerspective(gray[t + 1], m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                   borderMode=cv2.BORDER_REPLICATE)
        out[t] = cv2.dilate(np.minimum(np.abs(gray[t] - back) / tau, 1.0), kernel)
        if out_of_view:
            out[t] *= _in_view(m, h, w)
    return out


def _in_view(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) float32: 1 where the warp ``m`` (3x3) keeps the pixel inside the frame, 0 where it carries it out."""
    m = m.astype(np.float32)  # float32 throughout: at 480x832 float64 would cost 10 ms a pair
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    den = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
    x = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / den
    y = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / den
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).astype(np.float32)


# ----------------------------------------------------------------------------------------- the weight


def per_frame_magnitude(flow: np.ndarray) -> np.ndarray:
    """(T-1, H, W, 2) flow -> (T, H, W) motion per frame: the mean magnitude of the flows into and out of it."""
    mag = np.linalg.norm(flow, axis=-1)                 # (T-1, H, W)
    out = np.empty((mag.shape[0] + 1,) + mag.shape[1:], dtype=np.float32)
    out[0], out[-1] = mag[0], mag[-1]
    out[1:-1] = 0.5 * (mag[:-1] + mag[1:])
    return out


@dataclass(frozen=True)
class MotionMask:
    """Pixel-resolution weight (T, H, W) in [0, 1] on the standardized frames, and what was seen making it."""

    weight: np.ndarray
    static: bool
    max_flow_px: float
    info: dict = field(default_factory=dict)
    # what the mask was made from, kept for the motion features (features.py): the raw flows (T-1, H, W, 2) and,
    # with motion='object', the flows with the camera's motion subtracted; None when not computed
    flows: np.ndarray | None = field(default=None, repr=False, compare=False)
    residual: np.ndarray | None = field(default=None, repr=False, compare=False)
    # the source frames between the standard ones the flows were composed through (None: standard frames only)
    between: tuple | None = field(default=None, repr=False, compare=False)


def _interior(mag: np.ndarray, camera_speed: float) -> np.ndarray:
    """Leave out the band along the frame's edges where a moving camera reveals new content (there flow, and so
    the compensation, is guesswork): twice the camera's speed plus 2 px, at most a quarter of the frame."""
    c = int(np.ceil(2 * camera_speed)) + 2 if camera_speed > 0 else 0
    h, w = mag.shape[1:]
    if c == 0 or 4 * c >= min(h, w):
        return mag
    return mag[:, c:-c, c:-c]


def normalize_weight(mag: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    """The paper's global min-max, or min to the ``percentile``-th value (clipped to [0, 1])."""
    lo = float(mag.min())
    hi = float(mag.max()) if cfg.normalize == "minmax" else float(np.percentile(mag, cfg.percentile))
    hi = max(hi, lo + cfg.static_px)  # a mover on fewer pixels than the percentile leaves must not blow up noise
    return np.clip((mag - lo) / (hi - lo + 1e-6), 0.0, 1.0).astype(np.float32)


def motion_mask(frames: np.ndarray, cfg: MaskConfig, estimator: FlowEstimator | None = None,
                flows: np.ndarray | None = None, between=None) -> MotionMask:
    """The motion weight of a standardized clip (T, H, W, 3) uint8. ``kind='none'`` gives W = 1.

    A clip without motion (the 99.9th-percentile magnitude below ``static_px``, or with ``motion='object'``
    below ``camera_noise`` times the camera's speed: a pure camera move over a still scene) gets a uniform
    weight and ``static=True`` rather than a mask of amplified noise, a zero mask (a zero gradient) or NaN.
    ``flows``: the raw flow fields (T-1, H, W, 2) if already computed with this estimator. ``between``: the
    source frames between the standard ones (``StandardVideo.between``): flow and the camera's fit then run at
    the source's rate, composed over each standard interval (the weight stays on the standard frames).
    """
    t, h, w = frames.shape[:3]
    if cfg.kind == "none":
        return MotionMask(np.ones((t, h, w), np.float32), static=False, max_flow_px=float("nan"))
    if flows is None:
        flows = flow_fields(frames, estimator or make_flow_estimator(cfg), between)  # (T-1, H, W, 2)
    raw, residual = flows, None
    info: dict = {}
    static_level = cfg.static_px
    if cfg.motion == "object":
        flows, fits, speed, matrices = compensate(frames, raw, cfg.camera_model, between, cfg.camera_fit)
        residual = flows
        if cfg.camera_gate > 0:
            gate = camera_gate(frames, matrices, speed, cfg.camera_gate, cfg.out_of_view)
            flows = flows * gate[..., None]
        cam_speed = float(np.median(speed))
        info = {"camera_fits": sum(f.ok for f in fits), "camera_pairs": len(fits),
                "camera_speed_px": round(cam_speed, 3)}
        # what is left after removing a moving camera is partly the fit's own error: motion that small
        # against the camera's speed is not counted as motion in the scene
        static_level = max(static_level, cfg.camera_noise * cam_speed)
    mag = per_frame_magnitude(flows)                                        # (T, H, W)
    kept = {"flows": raw, "residual": residual, "max_flow_px": float(mag.max()), "info": info, "between": between}
    if float(np.percentile(_interior(mag, info.get("camera_speed_px", 0.0)), STATIC_PERCENTILE)) < static_level:
        return MotionMask(np.ones((t, h, w), np.float32), static=True, **kept)
    if float(mag.max() - mag.min()) < cfg.static_px:  # everything moves alike (a perfect pan under 'all'):
        info["uniform"] = True                            # no contrast to weight, and min-max would give 0
        return MotionMask(np.ones((t, h, w), np.float32), static=False, **kept)
    return MotionMask(normalize_weight(mag, cfg), static=False, **kept)


def to_latent_grid(weight: np.ndarray, temporal_factor: int, spatial_factor: int,
                   first_frame_alone: bool = True) -> np.ndarray:
    """Pool a (T, H, W) pixel weight onto the latent grid (F', H/s, W/s).

    With ``first_frame_alone`` (Wan, CogVideoX), latent frame 0 encodes pixel frame 0 and latent frame j >= 1
    encodes pixel frames 1 + tf*(j-1) ... tf*j; so T must be 1 + tf*k. A latent cell gets the mean weight of the
    pixels and frames it encodes.
    """
    t, h, w = weight.shape
    tf, sf = int(temporal_factor), int(spatial_factor)
    if h % sf or w % sf:
        raise ValueError(f"mask size {h}x{w} is not a multiple of the spatial factor {sf}")
    if first_frame_alone:
        if (t - 1) % tf:
            raise ValueError(f"{t} frames do not fit the latent grid: need 1 + {tf}*k frames")
        groups = [weight[:1]] + [weight[1 + tf * j: 1 + tf * (j + 1)] for j in range((t - 1) // tf)]
    else:
        if t % tf:
            raise ValueError(f"{t} frames do not fit the latent grid: need {tf}*k frames")
        groups = [weight[tf * j: tf * (j + 1)] for j in range(t // tf)]
    temporal = np.stack([g.mean(axis=0) for g in groups])                          # (F', H, W)
    pooled = temporal.reshape(len(groups), h // sf, sf, w // sf, sf).mean(axis=(2, 4))  # (F', H/s, W/s)
    return pooled.astype(np.float32)
