"""Things a person looks at: the motion mask as a heatmap over the frames (PNG contact sheet or MP4)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

MASK_SUFFIXES = (".npy", ".png", ".mp4")


def overlay(frames: np.ndarray, weight: np.ndarray, alpha: float = 0.55, min_side: int = 192) -> np.ndarray:
    """(T, H, W, 3) uint8 frames and a (T, H, W) weight in [0, 1] -> (T, H', W', 3) uint8: each frame beside
    its heatmap overlay (blue = still, red = moving), enlarged so the shorter side is at least ``min_side``."""
    t, h, w = weight.shape
    heat = np.stack([cv2.applyColorMap((wt * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1] for wt in weight])
    blended = (frames * (1 - alpha) + heat * alpha).astype(np.uint8)             # (T, H, W, 3)
    pair = np.concatenate([frames, blended], axis=2)                             # (T, H, 2W, 3)
    scale = max(1, int(np.ceil(min_side / min(h, w))))
    if scale > 1:
        pair = np.stack([cv2.resize(p, (2 * w * scale, h * scale), interpolation=cv2.INTER_NEAREST) for p in pair])
    return pair


def contact_sheet(pairs: np.ndarray, columns: int = 3, max_frames: int = 12) -> np.ndarray:
    """Up to ``max_frames`` evenly spaced overlay pairs tiled in a grid: (rows*H, columns*W, 3) uint8."""
    idx = np.unique(np.linspace(0, len(pairs) - 1, min(max_frames, len(pairs))).round().astype(int))
    tiles = list(pairs[idx])
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r:r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    scale = max(0.4, img.shape[1] / 1400)
    cv2.putText(out, text, (8, int(24 * scale / 0.6)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2,
                cv2.LINE_AA)
    return out


def write_mask(out: str | Path, frames: np.ndarray, weight: np.ndarray, fps: float, static: bool = False) -> Path:
    """Write a mask: ``.npy`` the raw (T, H, W) float32 weight; ``.png`` a contact sheet; ``.mp4`` a video.

    A ``static`` clip (no motion found: a uniform weight) is labelled so, not shown as 'everything moves'."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in MASK_SUFFIXES:
        raise ValueError(f"--out {str(out)!r}: unsupported kind {suffix or '(none)'!r}; use one of {MASK_SUFFIXES}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(out, weight.astype(np.float32))
        return out
    pairs = overlay(frames, weight)
    if static:
        pairs = np.stack([_label(p, "static: no motion found, uniform weight") for p in pairs])
    if suffix == ".png":
        if not cv2.imwrite(str(out), contact_sheet(pairs)[..., ::-1]):
            raise OSError(f"could not write {str(out)!r}")
        return out
    from .video import write_video

    h, w = pairs.shape[1:3]
    write_video(out, pairs[:, : h - h % 2, : w - w % 2], fps)
    return out
