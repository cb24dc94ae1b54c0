"""Motion: dense optical flow, its magnitude, the paper's min-max weight, and that weight on the latent grid.

First version: OpenCV DIS flow between consecutive standardized frames, ``M = ||flow||₂``, the global min-max
weight ``W = (M - min M) / (max M - min M + 1e-6)`` over the whole clip, average-pooled onto the VAE's latent
grid from the backbone's own compression factors. Camera compensation and other estimators come later.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .config import MaskConfig

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}

# Below this range of flow magnitude (pixels) over a whole clip, the clip is treated as static.
STATIC_RANGE_PX = 1e-3


def flow_fields(frames: np.ndarray, preset: str = "medium") -> np.ndarray:
    """frames: (T, H, W, 3) uint8 RGB -> (T-1, H, W, 2) float32 flow from frame t to t+1, in pixels."""
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"flow needs (T>=2, H, W, 3) frames, got shape {frames.shape}")
    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    return np.stack([dis.calc(gray[t], gray[t + 1], None) for t in range(len(gray) - 1)]).astype(np.float32)


def per_frame_magnitude(flow: np.ndarray) -> np.ndarray:
    """(T-1, H, W, 2) flow -> (T, H, W) motion per frame: the mean magnitude of the flows into and out of it."""
    mag = np.linalg.norm(flow, axis=-1)                 # (T-1, H, W)
    out = np.empty((mag.shape[0] + 1,) + mag.shape[1:], dtype=np.float32)
    out[0], out[-1] = mag[0], mag[-1]
    out[1:-1] = 0.5 * (mag[:-1] + mag[1:])
    return out


@dataclass(frozen=True)
class MotionMask:
    """Pixel-resolution weight (T, H, W) in [0, 1] on the standardized frames, and whether the clip is static."""

    weight: np.ndarray
    static: bool
    max_flow_px: float


def motion_mask(frames: np.ndarray, cfg: MaskConfig) -> MotionMask:
    """The motion weight of a standardized clip. ``kind='none'`` gives W = 1 (the unmasked baseline).

    A clip whose flow magnitude is (near) constant has no motion to weight: it gets a uniform weight and
    ``static=True`` rather than a zero mask (which would give a zero gradient) or NaN.
    """
    t, h, w = frames.shape[:3]
    if cfg.kind == "none":
        return MotionMask(np.ones((t, h, w), np.float32), static=False, max_flow_px=float("nan"))
    mag = per_frame_magnitude(flow_fields(frames, cfg.dis_preset))   # (T, H, W)
    lo, hi = float(mag.min()), float(mag.max())
    if hi - lo < STATIC_RANGE_PX:
        return MotionMask(np.ones((t, h, w), np.float32), static=True, max_flow_px=hi)
    weight = (mag - lo) / (hi - lo + 1e-6)
    return MotionMask(weight.astype(np.float32), static=False, max_flow_px=hi)


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
