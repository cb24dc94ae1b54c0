"""Motion features: a compact descriptor of how a clip moves, for the motion-similarity channel.

Influence (gradients.py) answers "which training clips did the model learn this motion from"; this module
answers a different, plainer question: "which clips move like this". Both are stored and searched the same way
(a unit vector, inner product) and always returned under their own labels.

From the dense flow of the standardized frames (the same flow the mask uses), for the flow with the camera's
motion subtracted (``object``) and the raw flow (``all``, camera included), over ``segments`` equal time
segments, for the pixels that move (speed at least ``min_px`` px/frame and at least ``relative`` times the
clip's 99.9th-percentile speed, so a slow mover is seen and flow noise around a fast one is not):

- **direction**: speed-weighted histogram of flow direction, soft-binned into ``direction_bins`` bins, measured
  from the clip's dominant axis (so a leftward and a rightward slide look alike) with the axis's sign set by
  the clip's first motion;
- **speed**: histogram of speeds over log2-spaced bins from ``min_px`` (the share of the moving pixels in each);
- **kinematics**: coherence (|mean flow| / mean speed: 1 for a rigid slide, 0 for a spin or a zoom), the
  radial and tangential shares of the flow about the moving region's centroid after removing its mean (zoom
  vs spin), the signed speed along the dominant axis (reversals: oscillation, bouncing) and the share of
  pixels that move;
- **axis** (whole clip): the axial histogram of absolute direction (4 bins over 180 degrees: horizontal,
  vertical and the diagonals), so falling is told from swinging sideways;
- **rhythm** (whole clip): the magnitude spectra (phase-free) of the per-pair mean flow along the axis and of
  the mean speed, relative to the clip's mean speed: a steady slide is all DC, a swing one peak, a bounce a
  peak with harmonics.

Each block is L2-normalized and the blocks are concatenated, so each counts equally; a flow with nothing
moving contributes a single "still" entry instead. The result is L2-normalized: scores are cosines.
Deterministic; numpy only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .config import FeatureConfig

if TYPE_CHECKING:
    from .config import MaskConfig, VideoSpec

__all__ = ["descriptor_dim", "motion_descriptor", "flow_blocks", "MotionFeaturizer"]

_AXIS_BINS = 4
_KINEMATICS = 5
_RHYTHM = 16  # the per-pair series is resampled to this many steps before its spectrum is taken


def _block_sizes(cfg: FeatureConfig) -> list[int]:
    s = cfg.segments
    return [s * cfg.direction_bins, s * cfg.speed_bins, s * _KINEMATICS, _AXIS_BINS, 2 * (_RHYTHM // 2 + 1), 1]


def descriptor_dim(cfg: FeatureConfig) -> int:
    """Length of :func:`motion_descriptor`'s vector under ``cfg``."""
    per_flow = sum(_block_sizes(cfg))
    return per_flow * (2 if cfg.camera == "both" else 1)


def _segments(n: int, s: int) -> list[np.ndarray]:
    """Split pair indices 0..n-1 into ``s`` nearly equal consecutive groups (a group may be empty if n < s)."""
    return [np.arange(n)[a:b] for a, b in zip(np.linspace(0, n, s + 1).astype(int)[:-1],
                                              np.linspace(0, n, s + 1).astype(int)[1:])]


def _soft_hist(pos: np.ndarray, weight: np.ndarray, bins: int) -> np.ndarray:
    """Circular histogram with linear interpolation between neighbouring bins; ``pos`` in bin units."""
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    out = np.bincount(lo % bins, weight * (1 - frac), minlength=bins)
    out += np.bincount((lo + 1) % bins, weight * frac, minlength=bins)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(x))
    return x / n if n > 0 else x


def flow_blocks(flows: np.ndarray, cfg: FeatureConfig, still: bool = False) -> list[np.ndarray]:
    """The descriptor blocks of one flow sequence (T-1, H, W, 2), each L2-normalized (or all zero).

    ``still``: the caller knows nothing moves (motion.py's static test): only the "still" entry is set."""
    n, h, w = flows.shape[:3]
    u, v = flows[..., 0].astype(np.float64), flows[..., 1].astype(np.float64)   # (n, H, W)
    speed = np.hypot(u, v)
    top = float(np.percentile(speed, 99.9))
    moving = speed >= max(cfg.min_px, cfg.relative * top)                        # (n, H, W)
    sizes = _block_sizes(cfg)
    if still or top < cfg.min_px or not moving.any():
        return [np.zeros(k) for k in sizes[:-1]] + [np.ones(1)]  # the "still" entry
    wgt = np.where(moving, speed, 0.0)
    theta = np.arctan2(v, u)
    # dominant axis: the doubled-angle mean (axial, so back-and-forth motion has one), signed by the first motion
    c2, s2 = (wgt * np.cos(2 * theta)).sum(), (wgt * np.sin(2 * theta)).sum()
    axis = 0.5 * np.arctan2(s2, c2)
    e = np.array([np.cos(axis), np.sin(axis)])
    tot_t = wgt.reshape(n, -1).sum(1)                                            # (n,) speed mass per pair
    mean_u = (wgt * u).reshape(n, -1).sum(1) / np.maximum(tot_t, 1e-12)
    mean_v = (wgt * v).reshape(n, -1).sum(1) / np.maximum(tot_t, 1e-12)
    per_pair = mean_u * e[0] + mean_v * e[1]                                     # (n,) mean flow along the axis
    first = per_pair[np.flatnonzero(np.abs(per_pair) > 1e-9)]
    if first.size and first[0] < 0:
        axis, e = axis + np.pi, -e
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    edges = cfg.min_px * 2.0 ** np.arange(1, cfg.speed_bins)                      # speed bin edges, px/frame
    direction, speeds, kin = [], [], []
    for seg in _segments(n, cfg.segments):
        m, wt = moving[seg], wgt[seg]
        tot = wt.sum()
        if seg.size == 0 or tot <= 0:
            direction.append(np.zeros(cfg.direction_bins))
            speeds.append(np.zeros(cfg.speed_bins))
            kin.append(np.zeros(_KINEMATICS))
            continue
        pos = ((theta[seg] - axis) / (2 * np.pi) * cfg.direction_bins) % cfg.direction_bins
        direction.append(_soft_hist(pos[m], wt[m], cfg.direction_bins) / tot)
        speeds.append(np.bincount(np.searchsorted(edges, speed[seg][m]), minlength=cfg.speed_bins) / m.sum())
        coh, rad, tan, along = [], [], [], []
        for t in seg:
            wt_t = wgt[t]
            s_t = wt_t.sum()
            if s_t <= 0:
                continue
            mu, mv = (wt_t * u[t]).sum() / s_t, (wt_t * v[t]).sum() / s_t           # mean flow of the movers
            cx, cy = (wt_t * xs).sum() / s_t, (wt_t * ys).sum() / s_t               # their centroid
            dx, dy = xs - cx, ys - cy
            r = np.hypot(dx, dy) + 1e-6
            ru, rv = u[t] - mu, v[t] - mv                                           # flow about the mean
            mean_speed = (wt_t * speed[t]).sum() / s_t
            coh.append(np.hypot(mu, mv) / (mean_speed + 1e-9))
            rad.append((wt_t * np.abs(ru * dx + rv * dy) / r).sum() / s_t / (mean_speed + 1e-9))
            tan.append((wt_t * np.abs(ru * dy - rv * dx) / r).sum() / s_t / (mean_speed + 1e-9))
            along.append((mu * e[0] + mv * e[1]) / (mean_speed + 1e-9))
        kin.append(np.array([np.mean(coh), np.mean(rad), np.mean(tan), np.mean(along), m.mean()])
                   if coh else np.zeros(_KINEMATICS))
    axial = _soft_hist(((2 * theta[moving]) % (2 * np.pi)) / (2 * np.pi) * _AXIS_BINS, wgt[moving], _AXIS_BINS)
    # rhythm: spectra (phase-free) of the mean flow along the axis and of the mean speed, per pair, relative to
    # the clip's mean speed: a steady slide is all DC, a swing one peak, a bounce a peak with harmonics
    mean_speed = (wgt * speed).reshape(n, -1).sum(1) / np.maximum(moving.reshape(n, -1).sum(1), 1)
    scale = float(mean_speed.mean()) + 1e-9
    grid = np.linspace(0, n - 1, _RHYTHM)
    rhythm = np.concatenate([np.abs(np.fft.rfft(np.interp(grid, np.arange(n), series / scale))) / _RHYTHM
                             for series in (per_pair, mean_speed)])
    blocks = [np.concatenate(direction), np.concatenate(speeds), np.concatenate(kin), axial, rhythm]
    return [_unit(b) for b in blocks] + [np.zeros(1)]


def motion_descriptor(flows: np.ndarray, residual: np.ndarray | None, cfg: FeatureConfig = FeatureConfig(),
                      residual_still: bool = False) -> np.ndarray:
    """The clip's unit motion descriptor (``descriptor_dim(cfg)``,) float32.

    ``flows``: raw flow (T-1, H, W, 2); ``residual``: the same with the camera's motion subtracted (needed
    unless ``cfg.camera == 'raw'``); ``residual_still``: motion.py found nothing moving in the scene once the
    camera is subtracted (a camera move over a still scene), so what is left of the residual is fit error.
    """
    parts = []
    if cfg.camera in ("both", "compensated"):
        if residual is None:
            raise ValueError(f"camera={cfg.camera!r} needs the camera-compensated flow (residual)")
        parts += flow_blocks(residual, cfg, still=residual_still)
    if cfg.camera in ("both", "raw"):
        parts += flow_blocks(flows, cfg)
    return _unit(np.concatenate(parts)).astype(np.float32)


FORMAT_VERSION = 1


class MotionFeaturizer:
    """Motion descriptors of standardized clips under one :class:`FeatureConfig` and one flow setting.

    The flow (and camera compensation) is the mask's when the mask computed it (``MotionMask.flows``,
    ``.residual``), so the channel costs almost nothing on top of a flow-masked build; otherwise it is computed
    here with the mask's flow settings."""

    def __init__(self, cfg: FeatureConfig, mask: MaskConfig, spec: VideoSpec, mask_fingerprint: dict | None = None):
        from dataclasses import replace

        self.cfg, self.spec = cfg, spec
        # the flow settings that shape the descriptor; a learned flow model is named by its weights' hash
        fp = dict(mask_fingerprint or mask.to_dict())
        # the last four only in newer masks; the gate decides `static`, which the descriptor reads
        self._flow_fp = {k: fp[k] for k in ("flow", "dis_preset", "flow_model", "camera_model", "static_px",
                                            "camera_noise", "flow_steps", "camera_fit", "camera_gate", "out_of_view")
                                            if k in fp}
        self._object = replace(mask, kind="flow", motion="object")  # the mask settings that give the residual
        self._estimator = None

    def fingerprint(self) -> dict:
        return {"format": FORMAT_VERSION, "channel": "motion-features", "features": self.cfg.to_dict(),
                "video": self.spec.to_dict(), "flow": self._flow_fp, "normalize": "l2"}

    @property
    def dim(self) -> int:
        return descriptor_dim(self.cfg)

    def describe(self, frames: np.ndarray, mm=None) -> np.ndarray:
        """The unit descriptor of standardized frames (T, H, W, 3) uint8, reusing ``mm``'s flows if it has them."""
        from .motion import make_flow_estimator, motion_mask

        flows = getattr(mm, "flows", None)
        if mm is None or flows is None or mm.residual is None:
            if flows is None and self._estimator is None:
                self._estimator = make_flow_estimator(self._object)
            mm = motion_mask(frames, self._object, self._estimator, flows=flows, between=getattr(mm, "between", None))
        return motion_descriptor(mm.flows, mm.residual, self.cfg, residual_still=bool(mm.static))
