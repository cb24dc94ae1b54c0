"""Decode videos with PyAV and standardize them to one fixed shape (:class:`~motive_index.config.VideoSpec`).

Every clip and every query goes through :func:`load_video`: decode (optionally a time range), pick
``spec.frames`` frames at ``spec.fps`` from a window centred in the clip, resize the shorter side and
centre-crop to ``spec.height`` x ``spec.width``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from .config import VideoSpec
from .errors import VideoError, VideoNotFoundError, VideoTooShortError

__all__ = ["StandardVideo", "write_video", "decode_video", "standardize", "load_video", "frames_to_tensor",
           "video_encoder"]


def _check_frames(frames: np.ndarray, name: str = "frames") -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = (f"{type(frames).__name__} dtype={getattr(frames, 'dtype', None)} "
               f"shape={getattr(frames, 'shape', None)}")
        raise ValueError(f"{name} must be a uint8 array of shape (N, H, W, 3) RGB; got {got}")


@functools.lru_cache(maxsize=1)
def video_encoder() -> str:
    """The encoder :func:`write_video` uses: ``libx264`` when PyAV's FFmpeg has it, else ``mpeg4``."""
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # av raises UnknownCodecError (not an FFmpegError) when the build lacks it
        return "mpeg4"


def write_video(path: str | Path, frames: np.ndarray, fps: float, *, codec: str | None = None) -> None:
    """Write RGB ``frames`` (uint8, (N, H, W, 3), N >= 1, H and W even) to an mp4 at ``fps``, high quality."""
    _check_frames(frames)
    n, h, w, _ = frames.shape
    if n < 1:
        raise ValueError(f"write_video({str(path)!r}): no frames to write (frames.shape={frames.shape})")
    if h % 2 or w % 2:
        raise ValueError(f"write_video({str(path)!r}): frame size {h}x{w} (HxW) must be even for yuv420p; "
                         f"crop or pad to {h - h % 2}x{w - w % 2}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"write_video({str(path)!r}): fps={fps!r} must be a positive number")
    codec = codec or video_encoder()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "medium"}
        else:  # mpeg4 has no crf: give it ~4 bits per pixel, which keeps low-contrast texture
            stream.bit_rate = max(2_000_000, int(4 * h * w * float(rate)))
        for frame in frames:  # (H, W, 3) uint8
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush delayed frames
            container.mux(packet)


def _check_range(path: str, start_sec, end_sec) -> None:
    for name, v in (("start_sec", start_sec), ("end_sec", end_sec)):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        if v is not None and not ok:
            raise VideoError(path, f"{name}={v!r} is invalid: it must be a finite number >= 0 (seconds)")
    if start_sec is not None and end_sec is not None and end_sec <= start_sec:
        raise VideoError(path, f"end_sec={end_sec!r} must be greater than start_sec={start_sec!r}")


def _stream_fps(path: str, stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(rate)
    raise VideoError(path, "the video stream has no frame rate; re-encode it with a constant frame rate "
                           "(e.g. ffmpeg -i in.mp4 -r 16 out.mp4)")


def decode_video(path: str | Path, start_sec: float | None = None,
                 end_sec: float | None = None) -> tuple[np.ndarray, float]:
    """Decode the frames whose timestamps lie in ``[start_sec, end_sec)`` (default: all) as uint8 (N, H, W, 3)
    RGB, and return them with the stream's average fps."""
    p = str(path)
    _check_range(p, start_sec, end_sec)
    if not Path(p).exists():
        raise VideoNotFoundError(p)
    if Path(p).is_dir():
        raise VideoError(p, "is a directory, not a video file")
    start = float(start_sec or 0.0)
    end = math.inf if end_sec is None else float(end_sec)
    out: list[np.ndarray] = []
    try:
        with av.open(p) as container:
            if not container.streams.video:
                raise VideoError(p, "the file has no video stream (audio only or an empty container); "
                                    "pass a video file")
            stream = container.streams.video[0]
            fps = _stream_fps(p, stream)
            tb = float(stream.time_base) if stream.time_base else 1.0 / fps
            t0 = (stream.start_time or 0) * tb  # timestamps are relative to the stream's first frame
            if start > 0:  # jump to the keyframe before start; frames before start are dropped below
                container.seek(int(start / tb) + (stream.start_time or 0), stream=stream, backward=True)
            size = None
            for i, frame in enumerate(container.decode(stream)):
                t = frame.time - t0 if frame.time is not None else i / fps
                if t < start - 1e-6:
                    continue
                if t >= end:
                    break
                size = size or (frame.width, frame.height)
                out.append(frame.to_ndarray(format="rgb24", width=size[0], height=size[1]))  # (H, W, 3)
    except av.FFmpegError as e:
        raise VideoError(p, f"cannot be decoded ({type(e).__name__}: {e}); the file is damaged or not a "
                            f"video PyAV/FFmpeg can read; re-encode it (e.g. ffmpeg -i in out.mp4)") from e
    if not out:
        if start_sec is None and end_sec is None:
            raise VideoError(p, "no frames could be decoded (empty video)")
        raise VideoError(p, f"no frames in the range [{start}, {end}) seconds; check start_sec/end_sec "
                            f"against the video's length")
    return np.stack(out), fps  # (N, H, W, 3) uint8


def _nearest(x: np.ndarray) -> np.ndarray:
    """Round half up (np.round rounds half to even, which would skip and repeat frames)."""
    return np.floor(x + 0.5 + 1e-9).astype(np.int64)


def standardize(frames: np.ndarray, fps: float, spec: VideoSpec, *, name: str = "<frames>") -> np.ndarray:
    """Resample ``frames`` (uint8 (N, H, W, 3) at ``fps``) to uint8 (spec.frames, spec.height, spec.width, 3).

    Time: ``spec.frames`` timestamps ``1/spec.fps`` apart from a window of ``spec.duration`` seconds centred
    in the clip, nearest source frame each; a clip shorter than the window is sampled uniformly over its
    whole length. Space: resize so the shorter side fits, then centre-crop. ``name`` labels errors.
    """
    _check_frames(frames)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"{name}: fps={fps!r} must be a positive number")
    n, h, w, _ = frames.shape
    if n < spec.min_source_frames:
        raise VideoTooShortError(name, f"{n} frames decoded, at least min_source_frames="
                                       f"{spec.min_source_frames} are needed; use a longer clip")
    # --- time ---
    duration = n / fps  # seconds the source covers
    if duration >= spec.duration:
        window_start = (duration - spec.duration) / 2
        t = window_start + np.arange(spec.frames) / spec.fps  # (T,) seconds
        idx = _nearest(t * fps)
    else:
        idx = _nearest(np.linspace(0, n - 1, spec.frames))
    idx = np.clip(idx, 0, n - 1)  # (T,)
    # --- space ---
    scale = max(spec.height / h, spec.width / w)
    rh, rw = max(spec.height, round(h * scale)), max(spec.width, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    y0, x0 = (rh - spec.height) // 2, (rw - spec.width) // 2
    out = np.empty((spec.frames, spec.height, spec.width, 3), np.uint8)
    for i, j in enumerate(idx):
        frame = frames[j]  # (H, W, 3)
        if (rh, rw) != (h, w):
            frame = cv2.resize(frame, (rw, rh), interpolation=interp)  # (rh, rw, 3)
        out[i] = frame[y0:y0 + spec.height, x0:x0 + spec.width]
    return out


@dataclass(frozen=True, eq=False)
class StandardVideo:
    """A standardized clip and what the source looked like."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    source_frames: int
    source_fps: float
    source_duration: float
    source_height: int
    source_width: int

    def metadata(self) -> dict:
        """The ``source_*`` fields as plain Python values, for storing."""
        return {"source_frames": int(self.source_frames), "source_fps": float(self.source_fps),
                "source_duration": float(self.source_duration), "source_height": int(self.source_height),
                "source_width": int(self.source_width)}


def load_video(path: str | Path, spec: VideoSpec, start_sec: float | None = None,
               end_sec: float | None = None) -> StandardVideo:
    """Decode ``path`` (optionally ``[start_sec, end_sec)``) and standardize it to ``spec``."""
    frames, fps = decode_video(path, start_sec, end_sec)  # (N, H, W, 3)
    n, h, w, _ = frames.shape
    return StandardVideo(frames=standardize(frames, fps, spec, name=str(path)), source_frames=n,
                         source_fps=fps, source_duration=n / fps, source_height=h, source_width=w)


def frames_to_tensor(frames: np.ndarray):
    """uint8 (T, H, W, 3) -> torch float32 (T, 3, H, W) in [0, 1]."""
    import torch

    _check_frames(frames)
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
