"""Decode videos with PyAV and standardize them to one fixed shape (:class:`~motive_index.config.VideoSpec`).

Every clip and every query goes through :func:`load_video`: pick ``spec.frames`` frames at ``spec.fps`` from a
window centred in the clip (or in ``[start_sec, end_sec)``), resize the shorter side and centre-crop to
``spec.height`` x ``spec.width``. It decodes only that window: the window's source frames are worked out from
the stream's metadata, the decoder seeks to the keyframe before the first of them and stops after the last,
and only the frames the window needs are converted to arrays, each resized as it is decoded. Memory does not
grow with the source's length or resolution; decode time grows with the window, not the clip.

A damaged file (truncated, or with garbage inside) gives the frames that decode, when there are enough of
them, and says what was wrong in :attr:`StandardVideo.warnings`.

:func:`decode_video` (every frame of a range at full size) and :func:`standardize` (the same sampling rule on
frames already in memory) hold the whole clip; they are for frames rendered in memory and for tests.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from .config import VideoSpec
from .errors import VideoError, VideoNotFoundError, VideoTooShortError

__all__ = ["StandardVideo", "write_video", "decode_video", "standardize", "load_video", "frames_to_tensor",
           "video_encoder"]

# The decoder's thread type for load_video: PyAV's default, "SLICE" (FFmpeg picks the thread count). "AUTO"
# adds frame threads: on 2 shared cores benchmarks/decode.py found no steady gain (CPU time alike; wall time
# better for one and then the other in two runs), and on a truncated file frame threads drop the last frames
# before the damage without reporting an error, so it is not the default.
THREAD_TYPE = "SLICE"


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


def _frame_iter(path: str, frames: np.ndarray | Iterable[np.ndarray]) -> tuple[int, int, Iterator[np.ndarray]]:
    """(H, W, frames one by one) of an (N, H, W, 3) array or an iterable of (H, W, 3) frames, checked."""
    if isinstance(frames, np.ndarray):
        _check_frames(frames)
        if frames.shape[0] < 1:
            raise ValueError(f"write_video({path!r}): no frames to write (frames.shape={frames.shape})")
        return frames.shape[1], frames.shape[2], iter(frames)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"write_video({path!r}): no frames to write (the iterable was empty)")
    if not isinstance(first, np.ndarray) or first.dtype != np.uint8 or first.ndim != 3 or first.shape[-1] != 3:
        raise ValueError(f"write_video({path!r}): each frame must be a uint8 array of shape (H, W, 3) RGB; got "
                         f"{type(first).__name__} {getattr(first, 'dtype', None)} {getattr(first, 'shape', None)}")
    h, w = first.shape[:2]

    def checked() -> Iterator[np.ndarray]:
        yield first
        for i, frame in enumerate(it, 1):
            if not isinstance(frame, np.ndarray) or frame.shape != (h, w, 3) or frame.dtype != np.uint8:
                raise ValueError(f"write_video({path!r}): frame {i} is {type(frame).__name__} "
                                 f"{getattr(frame, 'dtype', None)} {getattr(frame, 'shape', None)}; every frame "
                                 f"must be uint8 ({h}, {w}, 3) like the first")
            yield frame

    return h, w, checked()


def write_video(path: str | Path, frames: np.ndarray | Iterable[np.ndarray], fps: float, *,
                codec: str | None = None, options: dict[str, str] | None = None) -> None:
    """Write RGB ``frames`` to an mp4 at ``fps``, high quality.

    ``frames``: uint8 (N, H, W, 3) with N >= 1 and H, W even, or an iterable of uint8 (H, W, 3) frames (written
    as they come, so a long clip need not be in memory). ``options`` override the encoder's (for libx264 the
    defaults are ``{"crf": "12", "preset": "medium", "x264-params": "mbtree=0"}``, the same bytes for the same
    frames; e.g. ``{"preset": "ultrafast", "crf": "30"}``).
    """
    p = str(path)
    h, w, it = _frame_iter(p, frames)
    if h % 2 or w % 2:
        raise ValueError(f"write_video({p!r}): frame size {h}x{w} (HxW) must be even for yuv420p; "
                         f"crop or pad to {h - h % 2}x{w - w % 2}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"write_video({p!r}): fps={fps!r} must be a positive number")
    codec = codec or video_encoder()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(p, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            # mbtree off: with x264's macroblock-tree rate control the same frames came out as different bytes
            # (decoded pixels up to 11 levels apart) from one write to the next, even on one thread (PyAV 18)
            stream.options = {"crf": "12", "preset": "medium", "x264-params": "mbtree=0"} | (options or {})
        else:  # mpeg4 has no crf: give it ~4 bits per pixel, which keeps low-contrast texture
            stream.bit_rate = max(2_000_000, int(4 * h * w * float(rate)))
            if options:
                stream.options = dict(options)
        for frame in it:  # (H, W, 3) uint8
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush delayed frames
            container.mux(packet)


def _check_source(path: str, start_sec, end_sec) -> None:
    """The range is valid and ``path`` is a file (not its contents: av.open finds out those)."""
    for name, v in (("start_sec", start_sec), ("end_sec", end_sec)):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        if v is not None and not ok:
            raise VideoError(path, f"{name}={v!r} is invalid: it must be a finite number >= 0 (seconds)")
    if start_sec is not None and end_sec is not None and end_sec <= start_sec:
        raise VideoError(path, f"end_sec={end_sec!r} must be greater than start_sec={start_sec!r}")
    if not Path(path).exists():
        raise VideoNotFoundError(path)
    if Path(path).is_dir():
        raise VideoError(path, "is a directory, not a video file")


def _undecodable(path: str, e: Exception) -> VideoError:
    return VideoError(path, f"cannot be decoded ({type(e).__name__}: {e}); the file is damaged or not a video "
                            f"PyAV/FFmpeg can read; re-encode it (e.g. ffmpeg -i in out.mp4)")


def _video_stream(path: str, container):
    if not container.streams.video:
        raise VideoError(path, "the file has no video stream (audio only or an empty container); pass a video file")
    return container.streams.video[0]


def _stream_fps(path: str, stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and float(rate) > 0:
            return float(rate)
    raise VideoError(path, "the video stream has no frame rate; re-encode it with a constant frame rate "
                           "(e.g. ffmpeg -i in.mp4 -r 16 out.mp4)")


def decode_video(path: str | Path, start_sec: float | None = None,
                 end_sec: float | None = None) -> tuple[np.ndarray, float]:
    """Decode the frames whose timestamps lie in ``[start_sec, end_sec)`` (default: all) as uint8 (N, H, W, 3)
    RGB, and return them with the stream's average fps. Holds every frame at full size: use :func:`load_video`
    for clips and queries."""
    p = str(path)
    _check_source(p, start_sec, end_sec)
    start = float(start_sec or 0.0)
    end = math.inf if end_sec is None else float(end_sec)
    out: list[np.ndarray] = []
    try:
        with av.open(p) as container:
            stream = _video_stream(p, container)
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
        raise _undecodable(p, e) from e
    if not out:
        if start_sec is None and end_sec is None:
            raise VideoError(p, "no frames could be decoded (empty video)")
        raise VideoError(p, f"no frames in the range [{start}, {end}) seconds; check start_sec/end_sec "
                            f"against the video's length")
    return np.stack(out), fps  # (N, H, W, 3) uint8


def _nearest(x: np.ndarray) -> np.ndarray:
    """Round half up (np.round rounds half to even, which would skip and repeat frames)."""
    return np.floor(x + 0.5 + 1e-9).astype(np.int64)


def _window(n: int, fps: float, spec: VideoSpec) -> np.ndarray:
    """(T,) indices in [0, n) of the source frames (n of them at ``fps``) that make the standard clip.

    ``spec.frames`` timestamps ``1/spec.fps`` apart from a window of ``spec.duration`` seconds centred in the
    ``n / fps`` seconds the source covers, nearest source frame each; a source shorter than the window is
    sampled uniformly over its whole length (indices repeat when it has fewer than ``spec.frames`` frames).
    """
    duration = n / fps  # seconds the source covers
    if duration >= spec.duration:
        window_start = (duration - spec.duration) / 2
        t = window_start + np.arange(spec.frames) / spec.fps  # (T,) seconds
        idx = _nearest(t * fps)
    else:
        idx = _nearest(np.linspace(0, n - 1, spec.frames))
    return np.clip(idx, 0, n - 1)  # (T,)


def _between(idx: np.ndarray, steps: int) -> list[np.ndarray]:
    """Per standard interval t (T-1 of them), the source ordinals strictly between ``idx[t]`` and ``idx[t+1]``
    that flow is computed through: every one while the interval spans at most ``steps`` source frames, else
    ``steps - 1`` evenly spaced (so no flow step spans more than about ``span / steps`` source frames)."""
    out = []
    for a, b in zip(idx[:-1].tolist(), idx[1:].tolist()):
        if steps <= 1 or b - a <= 1:
            out.append(np.zeros(0, np.int64))
            continue
        inner = np.unique(_nearest(np.linspace(a, b, min(b - a, steps) + 1)))
        out.append(inner[(inner > a) & (inner < b)])
    return out


def _resize_crop(frame: np.ndarray, spec: VideoSpec) -> np.ndarray:
    """(h, w, 3) -> (spec.height, spec.width, 3): resize so the shorter side fits (INTER_AREA when shrinking,
    INTER_LINEAR when enlarging), then centre-crop."""
    h, w = frame.shape[:2]
    scale = max(spec.height / h, spec.width / w)
    rh, rw = max(spec.height, round(h * scale)), max(spec.width, round(w * scale))
    if (rh, rw) != (h, w):
        frame = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0, x0 = (rh - spec.height) // 2, (rw - spec.width) // 2
    return frame[y0:y0 + spec.height, x0:x0 + spec.width]  # (spec.height, spec.width, 3)


def between_frames(frames: np.ndarray, fps: float, spec: VideoSpec, flow_steps: int) -> tuple[np.ndarray, ...]:
    """What :func:`load_video` gives as :attr:`StandardVideo.between` for in-memory ``frames`` (N, H, W, 3) at
    ``fps``: per standard interval, the source frames between its two standard frames, standardized the same
    way, (k, spec.height, spec.width, 3) uint8 each."""
    _check_frames(frames)
    idx = _window(frames.shape[0], fps, spec)
    return tuple(np.stack([_resize_crop(frames[j], spec) for j in inner]) if len(inner)
                 else np.zeros((0, spec.height, spec.width, 3), np.uint8) for inner in _between(idx, flow_steps))


def standardize(frames: np.ndarray, fps: float, spec: VideoSpec, *, name: str = "<frames>") -> np.ndarray:
    """Resample ``frames`` (uint8 (N, H, W, 3) at ``fps``) to uint8 (spec.frames, spec.height, spec.width, 3).

    Time: ``spec.frames`` timestamps ``1/spec.fps`` apart from a window of ``spec.duration`` seconds centred
    in the clip, nearest source frame each; a clip shorter than the window is sampled uniformly over its
    whole length. Space: resize so the shorter side fits, then centre-crop. ``name`` labels errors.
    """
    _check_frames(frames)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"{name}: fps={fps!r} must be a positive number")
    n = frames.shape[0]
    if n < spec.min_source_frames:
        raise VideoTooShortError(name, f"{n} frames decoded, at least min_source_frames="
                                       f"{spec.min_source_frames} are needed; use a longer clip")
    out = np.empty((spec.frames, spec.height, spec.width, 3), np.uint8)
    for i, j in enumerate(_window(n, fps, spec)):
        out[i] = _resize_crop(frames[j], spec)
    return out


@dataclass(frozen=True, eq=False)
class StandardVideo:
    """A standardized clip and what the source looked like.

    ``source_frames`` counts the source frames the window was chosen from (those in ``[start_sec, end_sec)``
    that can be read; ``source_duration = source_frames / source_fps``); ``source_height`` x ``source_width`` is
    the decoded frame size. ``warnings`` says what was wrong with a damaged file that still gave enough frames.
    ``between`` (when asked for with ``flow_steps``): per standard interval t, the source frames between
    frames t and t+1, standardized the same way, (k_t, H, W, 3) uint8: optical flow runs through them at the
    source's own rate (``motion.flow_fields``).
    """

    frames: np.ndarray  # (T, H, W, 3) uint8
    source_frames: int
    source_fps: float
    source_duration: float
    source_height: int
    source_width: int
    warnings: tuple[str, ...] = ()
    between: tuple[np.ndarray, ...] | None = None

    def metadata(self) -> dict:
        """The ``source_*`` fields (and ``warnings``, when there are any) as plain Python values, for storing."""
        meta = {"source_frames": int(self.source_frames), "source_fps": float(self.source_fps),
                "source_duration": float(self.source_duration), "source_height": int(self.source_height),
                "source_width": int(self.source_width)}
        if self.warnings:
            meta["warnings"] = list(self.warnings)
        return meta


# ------------------------------------------------------------------------------------ bounded decoding
#
# A stream's frames are numbered by their ordinal k: frame k shows k / fps seconds after the stream's first
# frame (fps: the stream's average rate), so k = round((pts - start_pts) * time_base * fps). At a constant frame
# rate the ordinal is the frame's position, the index standardize uses; at a variable one it is its time slot
# (a gap in the timestamps skips ordinals, and a wanted one that no frame has takes the nearest frame in time).
# load_video plans the window in ordinals, then decodes just that span.


class _Linear(Exception):
    """A pass cannot seek (the demuxer refuses, or frames have no timestamps): decode from the file's start."""


class _Late(Exception):
    """The seek landed after the window's first frame (mpegts seeks to a packet, not to a keyframe, and the
    decoder skips to the next keyframe): seek further back."""


@dataclass(frozen=True)
class _Timing:
    """Frame k (its ordinal) of a stream has pts ``start_pts + k / fps / tb``."""

    fps: float
    tb: float  # seconds per pts unit
    start_pts: int

    def ordinal(self, pts: int) -> int:
        return round((pts - self.start_pts) * self.tb * self.fps)

    def pts(self, k: int) -> int:
        return self.start_pts + round(k / self.fps / self.tb)

    def range(self, start: float, end: float, n: int) -> tuple[int, int]:
        """Ordinals [lo, hi) of the frames whose time lies in [start, end) seconds, of n frames (within 1 us,
        as decode_video keeps a frame 1 us before start)."""
        lo = max(0, math.ceil((start - 1e-6) * self.fps))
        hi = n if math.isinf(end) else min(n, math.ceil((end - 1e-6) * self.fps))
        return lo, hi


class _Source:
    """An opened video: its first video stream (decoder threads set) and the stream's timing."""

    def __init__(self, path: str):
        self.path = path
        self._open()
        fps = _stream_fps(path, self.stream)  # checked in _open: cannot fail here
        tb = float(self.stream.time_base) if self.stream.time_base else 1.0 / fps
        self.timing = _Timing(fps, tb, self.stream.start_time or 0)

    def _open(self) -> None:
        self.container = av.open(self.path)
        try:
            self.stream = _video_stream(self.path, self.container)
            _stream_fps(self.path, self.stream)
            self.stream.thread_type = THREAD_TYPE
        except BaseException:
            self.container.close()
            raise

    def __enter__(self) -> "_Source":
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def seek(self, k: int) -> None:
        """Jump to the keyframe at or before frame k (the decoder is flushed)."""
        self.container.seek(self.timing.pts(k), stream=self.stream, backward=True)

    def rewind(self) -> None:
        """Back to the file's start: a seek to 0, or opening it again where the demuxer cannot seek (raw H.264)."""
        try:
            self.container.seek(0)  # container time base
        except av.FFmpegError:
            self.container.close()
            self._open()

    def claimed_frames(self) -> int | None:
        """The frame count the stream's metadata states: the index's count (mp4, mov, avi), else its duration
        times fps, else the container's duration when the video is its only stream (mkv, webm); None without."""
        s, t = self.stream, self.timing
        if s.frames:
            return int(s.frames)
        if s.duration:
            return round(s.duration * t.tb * t.fps)
        if self.container.duration and len(self.container.streams) == 1:
            return round((self.container.duration / av.time_base - t.start_pts * t.tb) * t.fps)
        return None

    def _last_ordinal(self) -> int:
        """Demux (never decode) to the end: the largest ordinal of a packet that can be read, -1 for none;
        packets without timestamps count by position (meaningful only from the file's start)."""
        last, count = -1, 0
        try:
            for packet in self.container.demux(self.stream):
                if packet.size == 0:  # the empty packet that ends the stream
                    continue
                count += 1
                last = max(last, self.timing.ordinal(packet.pts) if packet.pts is not None else count - 1)
        except av.FFmpegError:  # damaged data: reading stops here
            pass
        return last

    def readable_frames(self, claimed: int | None) -> int:
        """How many frames can be read: one past the last packet found by demuxing from the keyframe before the
        claimed end's last second (a GOP or two; a second back because mpegts lands on the packet, not its
        keyframe, and reordered B-frames come before it), or, when that finds nothing (truncated file, no
        metadata), from the start."""
        if claimed:
            try:
                self.seek(max(0, claimed - 1 - round(self.timing.fps)))
                last = self._last_ordinal()
                if last >= 0:
                    return last + 1
            except av.FFmpegError:
                pass
            self.rewind()
        return self._last_ordinal() + 1


def _to_rgb(frame: av.VideoFrame, width: int, height: int) -> np.ndarray:
    """A decoded frame as uint8 (height, width, 3) RGB: the one place load_video turns frames into arrays."""
    return frame.to_ndarray(format="rgb24", width=width, height=height)


@dataclass
class _Pass:
    """What one decoding pass over a window got: ``frames`` holds the first ``done`` of ``want`` (in their rows)."""

    want: np.ndarray  # (U,) the distinct ordinals of idx, sorted
    frames: np.ndarray  # (T, spec.height, spec.width, 3) uint8, row t for idx[t]
    done: int = 0
    filled: dict[int, int] = field(default_factory=dict)  # wanted ordinal that did not decode -> ordinal used
    stop: int | None = None  # reading ended before the last wanted frame: one past the last decoded (or want[0])
    errors: list[int] = field(default_factory=list)  # ordinals (about) of packets the decoder refused
    size: tuple[int, int] | None = None  # (height, width) of the first frame decoded


def _decode(src: _Source, idx: np.ndarray, spec: VideoSpec) -> _Pass:
    """:func:`_decode_pass` from the keyframe before ``idx[0]``; where the seek lands after it, from 1, 4, 16 ...
    seconds further back; where the stream cannot seek, from the file's start."""
    target, back = int(idx[0]), max(1, round(src.timing.fps))
    while True:
        try:
            return _decode_pass(src, idx, spec, seek_to=target)
        except _Late:
            target, back = max(0, target - back), back * 4
        except _Linear:
            return _decode_pass(src, idx, spec, seek_to=None)


def _decode_pass(src: _Source, idx: np.ndarray, spec: VideoSpec, *, seek_to: int | None) -> _Pass:
    """The standard clip of source frames ``idx`` (T,) (sorted ordinals, may repeat): decode from the keyframe
    before frame ``seek_to`` (<= idx[0]) up to ``idx[-1]``, converting and resizing only the wanted frames as
    they come, straight into their rows; the others stay PyAV frames and are dropped. A wanted frame that does
    not decode takes the nearest frame that did (the earlier on a tie). ``seek_to=None``: from the file's
    start without seeking, numbering frames without timestamps by position."""
    want, starts = np.unique(idx, return_index=True)  # rows starts[j]:ends[j] of frames are want[j]
    ends = np.append(starts[1:], len(idx))
    first = int(want[0])
    out = _Pass(want, np.empty((len(idx), spec.height, spec.width, 3), np.uint8))
    prev = None  # (ordinal, frame, a row holding it or None): the last frame decoded at or after want[0]
    pos = -1  # frames decoded in this pass

    def take(k: int, frame: av.VideoFrame, row: int | None) -> int:
        """Fill the rows of want[out.done] with frame k (copied from ``row`` when it is already in one)."""
        j = out.done
        if k != want[j]:
            out.filled[int(want[j])] = k
        rows = out.frames[starts[j]:ends[j]]  # (r, spec.height, spec.width, 3)
        if row is not None:
            rows[:] = out.frames[row]
        else:  # (h, w, 3) at full size -> the standard size
            rows[:] = _resize_crop(_to_rgb(frame, out.size[1], out.size[0]), spec)
        out.done += 1
        return int(starts[j])

    linear = seek_to is None
    if linear or seek_to == 0:
        src.rewind()
    else:
        try:
            src.seek(seek_to)
        except av.FFmpegError as e:  # e.g. EPERM from a raw H.264 stream
            raise _Linear from e
    try:
        for packet in src.container.demux(src.stream):
            try:
                decoded = packet.decode()
            except av.FFmpegError:  # a damaged packet: skip it, the decoder picks up at the next good one
                out.errors.append(src.timing.ordinal(packet.pts) if packet.pts is not None else
                                  (prev[0] if prev else first))
                continue
            for frame in decoded:
                pos += 1
                if frame.pts is not None:
                    k = src.timing.ordinal(frame.pts)
                elif linear:
                    k = pos
                else:
                    raise _Linear
                if out.size is None:
                    out.size = (frame.height, frame.width)
                    if not linear and seek_to > 0 and k > first and not out.errors:
                        raise _Late
                if k < first or (prev is not None and k <= prev[0]):
                    continue  # before the window (or a repeat after damage): dropped, never converted
                row = None
                while out.done < len(want) and want[out.done] < k:  # it did not decode: the nearer of prev and k
                    w = int(want[out.done])
                    if prev is not None and w - prev[0] <= k - w:
                        prev = (prev[0], prev[1], take(*prev))
                    else:
                        row = take(k, frame, row)
                if out.done < len(want) and want[out.done] == k:
                    row = take(k, frame, row)
                prev = (k, frame, row)
                if out.done == len(want):
                    return out
    except av.FFmpegError:  # the demuxer hit damaged data: reading stops here
        out.errors.append(prev[0] if prev else first)
    # reading ended before want[-1]: the rest take the last frame decoded
    out.stop = prev[0] + 1 if prev is not None else first
    while prev is not None and out.done < len(want):
        prev = (prev[0], prev[1], take(*prev))
    return out


def load_video(path: str | Path, spec: VideoSpec, start_sec: float | None = None,
               end_sec: float | None = None, flow_steps: int = 1) -> StandardVideo:
    """Decode ``path`` (optionally ``[start_sec, end_sec)``) standardized to ``spec``, decoding only the window.

    Frames are sampled as :func:`standardize` samples the whole decoded range and resized the same way: the
    result is identical to ``standardize(decode_video(path, start_sec, end_sec))`` at a constant frame rate
    (at a variable one, frames are picked by timestamp). How many frames the range holds comes from the
    stream's metadata (the index's frame count, else its duration) and is checked by demuxing, never decoding,
    the last second of packets; without metadata, or when those cannot be read, by demuxing every packet.

    A damaged file is read as far as it goes: when reading stops inside the window, the window is planned
    again on the frames before that point; a frame that fails to decode is replaced by the nearest that did.
    Either way :attr:`StandardVideo.warnings` says so; with fewer than ``spec.min_source_frames`` frames it is a
    :class:`VideoError` (:class:`VideoTooShortError` when too few can be read at all).

    ``flow_steps`` > 1: also decode the source frames between consecutive standard frames, up to
    ``flow_steps - 1`` per interval (:func:`between_frames` semantics), into :attr:`StandardVideo.between`; the
    standard frames are the same either way. A frame between that does not decode takes the nearest that did.
    """
    if not (isinstance(flow_steps, int) and flow_steps >= 1):
        raise ValueError(f"flow_steps={flow_steps!r} is invalid: an int >= 1")
    p = str(path)
    _check_source(p, start_sec, end_sec)
    start = float(start_sec or 0.0)
    end = math.inf if end_sec is None else float(end_sec)
    where = "" if start_sec is None and end_sec is None else f" in the range [{start}, {end}) seconds"
    try:
        with _Source(p) as src:
            fps = src.timing.fps
            claimed = src.claimed_frames()
            probed = readable = src.readable_frames(claimed)
            for attempt in range(3):  # a pass that stops early re-plans the window on what it read, twice at most
                lo, hi = src.timing.range(start, end, readable)
                n = hi - lo
                cut = _truncation(claimed, probed, readable, fps)
                if n <= 0 and (readable == 0 or readable < probed):
                    raise VideoError(p, f"no frames could be decoded{where} ({cut or 'empty video'})")
                if n <= 0:
                    raise VideoError(p, f"no frames{where}; check start_sec/end_sec against the video's length "
                                        f"({readable / fps:.2f} s)")
                if n < spec.min_source_frames:
                    raise VideoTooShortError(p, f"{n} frames{where}{f' ({cut})' if cut else ''}, at least "
                                                f"min_source_frames={spec.min_source_frames} are needed; use a "
                                                f"longer clip{' or a complete file' if cut else ''}")
                idx = lo + _window(n, fps, spec)  # (T,) source ordinals, in order, may repeat
                inner = _between(idx, flow_steps)
                both = np.concatenate([idx, *inner])  # the standard frames, then those between
                order = np.argsort(both, kind="stable")
                got = _decode(src, both[order], spec)
                if got.stop is None or attempt == 2:
                    break
                readable = got.stop  # the clip ends where reading stopped
    except av.FFmpegError as e:
        raise _undecodable(p, e) from e
    cut = _truncation(claimed, probed, readable, fps)
    if not got.done:
        raise VideoError(p, f"no frames could be decoded{where} (reading stopped at frame {got.stop}, "
                            f"{got.stop / fps:.2f} s: the file is damaged there)")
    rows = np.empty(len(order), np.int64)
    rows[order] = np.arange(len(order))  # row of got.frames holding both[i]
    t = len(idx)
    between = None
    if flow_steps > 1:
        ends = np.cumsum([t] + [len(x) for x in inner])
        between = tuple(got.frames[rows[a:b]] for a, b in zip(ends[:-1], ends[1:]))
    frames = got.frames[rows[:t]] if flow_steps > 1 else got.frames
    want = np.unique(idx)  # what is reported below is about the standard frames alone
    standard = set(want.tolist())
    filled = {k: v for k, v in got.filled.items() if k in standard}
    used = {filled.get(int(k), int(k)) for k in want}  # distinct source frames in the clip
    if len(used) < min(spec.min_source_frames, len(want)):
        raise VideoError(p, f"only {len(used)} of the {len(want)} source frames the standard clip needs could be "
                            f"decoded{where}{f' ({cut})' if cut else ''}; at least min_source_frames="
                            f"{spec.min_source_frames} are needed: the file is damaged, re-encode it from a good copy")
    warnings = [f"{cut}; the clip is taken from those" if cut else ""]
    if got.errors:
        warnings.append(f"{len(got.errors)} packet(s) could not be decoded (the first near "
                        f"{got.errors[0] / fps:.2f} s); frames decoded after a damaged packet may show artefacts")
    if filled:
        pairs = ", ".join(f"{k}->{v}" for k, v in list(filled.items())[:8])
        pairs += ", ..." if len(filled) > 8 else ""
        if got.errors or got.stop is not None:
            warnings.append(f"{len(filled)} of the {len(want)} source frames the standard clip needs did not "
                            f"decode; each was replaced by the nearest frame that did (source frame numbers {pairs})")
        else:  # nothing failed: the timestamps skip them (a variable frame rate)
            warnings.append(f"the stream's timestamps skip {len(filled)} of the {len(want)} frame times the "
                            f"standard clip needs (a variable frame rate?); each took the nearest frame in time "
                            f"(source frame numbers at {fps:g} fps {pairs})")
    h, w = got.size
    return StandardVideo(frames=frames, source_frames=n, source_fps=fps, source_duration=n / fps,
                         source_height=h, source_width=w, warnings=tuple(x for x in warnings if x), between=between)


def _truncation(claimed: int | None, probed: int, readable: int, fps: float) -> str:
    """Why fewer frames can be read than the file should hold ('' when nothing is missing). ``claimed``: the
    metadata's count (a count from a duration may be one off); ``probed``: what demuxing found; ``readable``:
    what decoding reached."""
    expected = max(claimed or 0, probed)
    if readable >= probed and readable >= expected - 1:
        return ""
    return (f"the file is truncated or damaged: it should hold {expected} frames ({expected / fps:.2f} s) but only "
            f"the first {readable} ({readable / fps:.2f} s) can be read")


def frames_to_tensor(frames: np.ndarray):
    """uint8 (T, H, W, 3) -> torch float32 (T, 3, H, W) in [0, 1]."""
    import torch

    _check_frames(frames)
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
