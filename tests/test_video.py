"""video.py on real mp4 files written with PyAV."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from motive_index.config import VideoSpec
from motive_index.errors import VideoError, VideoNotFoundError, VideoTooShortError
import motive_index.video as video
from motive_index.video import (StandardVideo, decode_video, frames_to_tensor, load_video, standardize,
                                write_video)


def smooth_clip(n: int = 16, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth textured background with a bright square moving right: (n, h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    bg = cv2.resize(rng.uniform(40, 200, (h // 8, w // 8, 3)).astype(np.float32), (w, h),
                    interpolation=cv2.INTER_CUBIC)
    frames = np.repeat(bg[None], n, axis=0)
    for i in range(n):
        frames[i, 10:26, 4 + 2 * i:20 + 2 * i] = (230, 60, 60)
    return np.clip(frames, 0, 255).astype(np.uint8)


def indexed_clip(n: int, h: int = 16, w: int = 16) -> np.ndarray:
    """Frame i is filled with the value i (so sampled indices can be read back exactly)."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, h, w, 3)).copy()


@pytest.mark.parametrize("codec", [None, "mpeg4"])
def test_round_trip(tmp_path, codec):
    frames = smooth_clip()
    path = tmp_path / "clip.mp4"
    write_video(path, frames, 8.0, codec=codec)
    decoded, fps = decode_video(path)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert fps == pytest.approx(8.0)
    luma = np.array([0.299, 0.587, 0.114])
    assert np.abs(decoded @ luma - frames @ luma).mean() < 2.0  # brightness is kept closely
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 7.0  # colour is 4:2:0 subsampled
    assert np.abs(decoded[:, 18, :].astype(int) - frames[:, 18, :]).mean() < 6  # the moving square survives


def test_write_rejects_odd_size_and_bad_input(tmp_path):
    with pytest.raises(ValueError, match="47x64"):
        write_video(tmp_path / "odd.mp4", np.zeros((4, 47, 64, 3), np.uint8), 8.0)
    with pytest.raises(ValueError, match=r"uint8 array of shape \(N, H, W, 3\)"):
        write_video(tmp_path / "f.mp4", np.zeros((4, 48, 64, 3), np.float32), 8.0)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "f.mp4", np.zeros((4, 48, 64, 3), np.uint8), 0)


def test_decode_time_range(tmp_path):
    frames = indexed_clip(24, 32, 32) * 10  # frame i has value 10 i; 3 s at 8 fps
    path = tmp_path / "ramp.mp4"
    write_video(path, frames, 8.0)
    part, fps = decode_video(path, start_sec=1.0, end_sec=2.0)  # frames 8..15
    assert part.shape[0] == 8 and fps == pytest.approx(8.0)
    assert np.abs(part[:, 8:24, 8:24].mean(axis=(1, 2, 3)) - np.arange(80, 160, 10)).max() < 3
    tail, _ = decode_video(path, start_sec=2.5)
    assert tail.shape[0] == 4
    with pytest.raises(VideoError, match="no frames in the range"):
        decode_video(path, start_sec=10.0)
    for start, end, msg in [(-1.0, None, "start_sec=-1.0"), (2.0, 1.0, "end_sec=1.0 must be greater"),
                            (1.0, 1.0, "must be greater"), (float("nan"), None, "start_sec=nan")]:
        with pytest.raises(VideoError, match=msg) as e:
            decode_video(path, start, end)
        assert str(path) in str(e.value)


def test_missing_garbage_empty_and_audio_only_files(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoNotFoundError) as e:
        decode_video(missing)
    assert isinstance(e.value, FileNotFoundError) and str(missing) in str(e.value)

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    no_frames = tmp_path / "no_frames.mp4"  # a valid mp4 container that holds nothing
    with av.open(str(no_frames), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height = 32, 32
        c.start_encoding()
    audio = tmp_path / "audio.wav"  # a real file with no video stream
    with av.open(str(audio), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for pkt in s.encode(frame):
            c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    spec = VideoSpec(frames=8, fps=8.0, height=32, width=32)
    for path, reason in [(garbage, "cannot be decoded"), (zero, "cannot be decoded"),
                         (no_frames, "no video stream"), (audio, "no video stream")]:
        for load in (decode_video, lambda p: load_video(p, spec)):
            with pytest.raises(VideoError, match=reason) as e:
                load(path)
            assert str(path) in str(e.value) and not isinstance(e.value, VideoNotFoundError)
    with pytest.raises(VideoError, match="directory"):
        decode_video(tmp_path)
    with pytest.raises(VideoError, match="directory"):
        load_video(tmp_path, spec)
    with pytest.raises(VideoNotFoundError):
        load_video(missing, spec)


def test_standardize_centre_window_same_fps():
    spec = VideoSpec(frames=17, fps=8.0, height=16, width=16)
    out = standardize(indexed_clip(41), 8.0, spec)  # 5.125 s; window 2.125 s starts at 1.5 s
    assert out.shape == (17, 16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0, 0, 0], np.arange(12, 29))  # 12 frames before, 12 after


def test_standardize_resamples_fps():
    spec = VideoSpec(frames=8, fps=8.0, height=16, width=16)
    out = standardize(indexed_clip(72), 24.0, spec)  # 3 s at 24 fps; window 1 s from 1.0 s, every 3rd frame
    np.testing.assert_array_equal(out[:, 0, 0, 0], np.arange(24, 48, 3))


def test_standardize_short_clip_uses_whole_clip():
    spec = VideoSpec(frames=17, fps=8.0, height=16, width=16, min_source_frames=4)
    out = standardize(indexed_clip(9), 8.0, spec)  # 1.125 s < 2.125 s window
    idx = out[:, 0, 0, 0].astype(int)
    assert idx[0] == 0 and idx[-1] == 8 and np.all(np.diff(idx) >= 0)
    np.testing.assert_array_equal(idx, np.floor(np.linspace(0, 8, 17) + 0.5).astype(int))


def test_standardize_too_short():
    spec = VideoSpec(frames=17, fps=8.0, height=16, width=16, min_source_frames=4)
    with pytest.raises(VideoTooShortError, match="3 frames decoded.*min_source_frames=4") as e:
        standardize(indexed_clip(3), 8.0, spec, name="clip_a")
    assert "clip_a" in str(e.value)


def test_standardize_space_resize_and_centre_crop():
    spec = VideoSpec(frames=4, fps=8.0, height=32, width=32)
    wide = np.zeros((4, 60, 180, 3), np.uint8)  # thirds: red | green | blue
    wide[:, :, :60, 0] = wide[:, :, 60:120, 1] = wide[:, :, 120:, 2] = 255
    out = standardize(wide, 8.0, spec)  # scale 32/60: 96 wide, crop keeps the middle third
    assert out.shape == (4, 32, 32, 3)
    assert out[..., 1].min() == 255 and out[..., 0].max() == 0 and out[..., 2].max() == 0
    small = np.full((4, 10, 20, 3), 77, np.uint8)  # enlarged: 10x20 -> 32x64 -> crop 32x32
    assert standardize(small, 8.0, spec).shape == (4, 32, 32, 3)
    with pytest.raises(ValueError, match="fps"):
        standardize(small, -1.0, spec)


def test_load_video_and_tensor(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, smooth_clip(n=20, h=48, w=64), 8.0)
    spec = VideoSpec(frames=8, fps=8.0, height=32, width=32)
    sv = load_video(path, spec)
    assert isinstance(sv, StandardVideo) and sv.frames.shape == (8, 32, 32, 3)
    assert sv.metadata() == {"source_frames": 20, "source_fps": 8.0, "source_duration": 2.5,
                             "source_height": 48, "source_width": 64}
    assert load_video(path, spec, start_sec=0.5, end_sec=2.0).source_frames == 12
    with pytest.raises(VideoTooShortError) as e:
        load_video(path, VideoSpec(frames=8, min_source_frames=4), start_sec=0.0, end_sec=0.25)
    assert str(path) in str(e.value)

    t = frames_to_tensor(sv.frames)
    assert t.shape == (8, 3, 32, 32) and t.dtype == torch.float32
    assert 0.0 <= t.min().item() and t.max().item() <= 1.0
    assert t[3, 1, 5, 7].item() == pytest.approx(sv.frames[3, 5, 7, 1] / 255.0)


# ------------------------------------------------------------------------ bounded decoding (load_video)


def texture_frames(n: int, h: int, w: int, seed: int = 0):
    """n frames (h, w, 3) uint8, one at a time: a smooth texture panning 1 px a frame, frame i's number written in
    an 8x8 block per bit along the top, and a bright square moving right (no two frames alike)."""
    rng = np.random.default_rng(seed)
    tex = cv2.resize(rng.uniform(40, 200, (h // 8 + 2, (w + n) // 8 + 2, 3)).astype(np.float32), (w + n, h),
                     interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    for i in range(n):
        frame = tex[:, i:i + w].copy()
        for b in range(min(12, w // 8)):
            frame[:8, 8 * b:8 * b + 8] = 255 if (i >> b) & 1 else 0
        s = h // 4
        x = (3 * i) % (w - s)
        frame[h // 2 - s // 2:h // 2 + s // 2, x:x + s] = (230, 60, 60)
        yield frame


def old_path(path, spec, start_sec=None, end_sec=None) -> tuple[np.ndarray, int]:
    """The reference: decode every frame of the range at full size, then standardize (what load_video did)."""
    frames, fps = decode_video(path, start_sec, end_sec)
    return standardize(frames, fps, spec), len(frames)


def count_conversions(monkeypatch) -> list[int]:
    """Count the frames load_video turns into numpy arrays (video._to_rgb is the one place it does)."""
    calls = [0]
    to_rgb = video._to_rgb

    def counting(*a, **k):
        calls[0] += 1
        return to_rgb(*a, **k)

    monkeypatch.setattr(video, "_to_rgb", counting)
    return calls


def remux(src: Path, dst: Path, fmt: str, options: dict | None = None) -> Path:
    """Copy src's video packets into another container (no re-encoding)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt, options=options or {}) as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        for packet in i.demux(si):
            if packet.dts is not None:
                packet.stream = so
                o.mux(packet)
    return dst


@pytest.mark.parametrize("codec", [None, "mpeg4"])
def test_load_video_equals_decode_all_path(tmp_path, codec):
    """On real mp4s with a keyframe every 12 frames (so load_video seeks), the frames and source_* fields equal
    decode_video + standardize exactly, for centred windows, ranges, fps resampling and short clips."""
    path = tmp_path / "clip.mp4"
    write_video(path, texture_frames(150, 96, 128), 25.0, codec=codec, options={"g": "12"})  # 6 s
    specs = [VideoSpec(frames=17, fps=8.0, height=64, width=64), VideoSpec(frames=16, fps=25.0, height=48, width=48),
             VideoSpec(frames=40, fps=16.0, height=96, width=160),  # enlarged, 2.5 s
             VideoSpec(frames=30, fps=4.0, height=32, width=32)]  # a 7.5 s window: the whole clip, uniformly
    for spec in specs:
        for start, end in [(None, None), (1.0, 4.5), (2.3, None), (None, 1.7), (4.96, 5.3)]:
            want, n = old_path(path, spec, start, end)
            sv = load_video(path, spec, start, end)
            assert sv.frames.shape == want.shape and sv.frames.dtype == np.uint8
            np.testing.assert_array_equal(sv.frames, want, err_msg=f"{spec} [{start}, {end})")
            assert (sv.source_frames, sv.source_fps, sv.source_height, sv.source_width) == (n, 25.0, 96, 128)
            assert sv.source_duration == pytest.approx(n / 25.0) and sv.warnings == ()


def test_load_video_converts_only_the_frames_it_needs(tmp_path, monkeypatch):
    path = tmp_path / "long.mp4"  # 60 s at 30 fps, a keyframe every 2 s
    write_video(path, texture_frames(1800, 64, 96), 30.0, options={"preset": "ultrafast", "g": "60"})
    calls = count_conversions(monkeypatch)
    spec = VideoSpec(frames=17, fps=8.0, height=64, width=64)
    sv = load_video(path, spec)
    assert calls[0] == 17 and sv.source_frames == 1800  # of 1800 frames, the 17 of the window
    want, _ = old_path(path, spec)
    np.testing.assert_array_equal(sv.frames, want)
    calls[0] = 0
    sv = load_video(path, spec, start_sec=40.0, end_sec=43.0)
    assert calls[0] == 17 and sv.source_frames == 90
    np.testing.assert_array_equal(sv.frames, old_path(path, spec, 40.0, 43.0)[0])
    calls[0] = 0
    short = VideoSpec(frames=17, fps=8.0, height=32, width=32, min_source_frames=4)
    sv = load_video(path, short, start_sec=10.0, end_sec=10.3)  # 9 frames, fewer than the window's 17
    assert calls[0] == 9 and sv.source_frames == 9  # repeated frames are converted once
    np.testing.assert_array_equal(sv.frames, old_path(path, short, 10.0, 10.3)[0])


def test_load_video_memory_does_not_hold_the_clip(tmp_path):
    """Python-visible allocations (numpy included) of load_video on a 20 s 640x360 clip: a full frame or two and
    the standard clip, against the ~830 MB the decode-all path allocates."""
    path = tmp_path / "big.mp4"
    n, h, w = 600, 360, 640
    write_video(path, texture_frames(n, h, w), 30.0, options={"preset": "ultrafast"})
    spec = VideoSpec(frames=17, fps=8.0, height=64, width=64)
    tracemalloc.start()
    try:
        sv = load_video(path, spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sv.source_frames == n
    clip = n * h * w * 3  # bytes of the clip at full size
    assert peak < 4 * h * w * 3 + sv.frames.nbytes + 2**20 and peak < clip / 50, (peak, clip)


def test_load_video_truncated_file_uses_the_frames_that_decode(tmp_path):
    intact = remux(_clip(tmp_path), tmp_path / "fs.mp4", "mp4", {"movflags": "faststart"})  # index up front
    data = intact.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:int(len(data) * 0.6)])  # 60% of the bytes: the index says 120 frames, ~60 are there
    spec = VideoSpec(frames=17, fps=8.0, height=32, width=32)
    sv = load_video(cut, spec)
    assert 40 <= sv.source_frames < 110 and sv.frames.shape == (17, 32, 32, 3)
    assert len(sv.warnings) >= 1 and "truncated or damaged" in sv.warnings[0] and "120 frames" in sv.warnings[0]
    assert sv.metadata()["warnings"] == list(sv.warnings)
    # the clip is the standard clip of the frames that decode: those of the intact file, up to the cut
    frames, fps = decode_video(intact)
    np.testing.assert_array_equal(sv.frames, standardize(frames[:sv.source_frames], fps, spec))

    mkv = remux(intact, tmp_path / "clip.mkv", "matroska")  # no frame count in the metadata: counted by demuxing
    data = mkv.read_bytes()
    cut_mkv = tmp_path / "cut.mkv"
    cut_mkv.write_bytes(data[:int(len(data) * 0.6)])
    sv = load_video(cut_mkv, spec)
    assert 40 <= sv.source_frames < 110 and "truncated or damaged" in sv.warnings[0]
    np.testing.assert_array_equal(sv.frames, standardize(frames[:sv.source_frames], fps, spec))


def test_load_video_garbage_inside_replaces_the_frames_that_fail(tmp_path):
    path = _clip(tmp_path)
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as c:  # overwrite 4 packets in the middle (the index stays intact)
        entries = [(e.pos, e.size) for e in c.streams.video[0].index_entries]
    start, end = entries[58][0], entries[62][0] + entries[62][1]
    data[start:end] = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(bytes(data))
    spec = VideoSpec(frames=17, fps=8.0, height=32, width=32)
    sv = load_video(bad, spec)
    assert sv.frames.shape == (17, 32, 32, 3) and sv.source_frames == 120
    assert any("could not be decoded" in w for w in sv.warnings), sv.warnings
    assert "warnings" in sv.metadata()
    good = load_video(path, spec)
    assert good.warnings == () and "warnings" not in good.metadata()
    assert (sv.frames[:7] == good.frames[:7]).all()  # before the damage: the same frames


def test_load_video_too_truncated_is_an_error(tmp_path):
    intact = remux(_clip(tmp_path), tmp_path / "fs.mp4", "mp4", {"movflags": "faststart"})
    with av.open(str(intact)) as c:
        third = c.streams.video[0].index_entries[3].pos  # the bytes of 3 packets only
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(intact.read_bytes()[:third])
    with pytest.raises(VideoError, match="truncated or damaged") as e:
        load_video(cut, VideoSpec(frames=17, fps=8.0, height=32, width=32, min_source_frames=4))
    assert str(cut) in str(e.value)
    moov_at_end = tmp_path / "tail.mp4"  # without its index (at the end, cut off) an mp4 cannot be opened at all
    moov_at_end.write_bytes(_clip(tmp_path).read_bytes()[:20_000])
    with pytest.raises(VideoError, match="cannot be decoded"):
        load_video(moov_at_end, VideoSpec())


def _clip(tmp_path: Path) -> Path:
    """4 s at 30 fps, 64x96, one keyframe (x264's default GOP): the damaged files' source."""
    path = tmp_path / "src.mp4"
    if not path.exists():
        write_video(path, texture_frames(120, 64, 96), 30.0)
    return path


def test_write_video_from_an_iterable(tmp_path):
    path = tmp_path / "it.mp4"
    write_video(path, texture_frames(10, 32, 48), 8.0, options={"preset": "ultrafast"})
    frames, fps = decode_video(path)
    assert frames.shape == (10, 32, 48, 3) and fps == pytest.approx(8.0)
    with pytest.raises(ValueError, match="frame 1 is"):
        write_video(tmp_path / "bad.mp4", iter([np.zeros((32, 48, 3), np.uint8), np.zeros((32, 40, 3), np.uint8)]), 8.0)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", iter([]), 8.0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        write_video(tmp_path / "bad.mp4", iter([np.zeros((32, 48), np.uint8)]), 8.0)


def test_write_video_is_deterministic(tmp_path):
    """The same frames give the same file, write after write (generate's clips are deterministic in their seed)."""
    noise = np.random.default_rng(0).integers(-127, 128, (17, 64, 64, 3))
    frames = np.clip(np.cumsum(noise, axis=2) // 8 + 128, 0, 255).astype(np.uint8)   # streaks: costly to code
    paths = [tmp_path / f"{i}.mp4" for i in range(8)]
    for p in paths:
        write_video(p, frames, 8.0)
    assert len({p.read_bytes() for p in paths}) == 1


@pytest.mark.parametrize("fmt", ["mpegts", "h264", "matroska"])
def test_load_video_other_containers(tmp_path, fmt):
    """mpegts seeks to a packet, not a keyframe (load_video seeks further back); a raw H.264 stream cannot seek
    and has no timestamps (decoded from the start, frames numbered by position); matroska has no frame count.
    Each gives exactly the standard clip of all its frames."""
    src = tmp_path / "src.mp4"  # 8 s at 30 fps, a keyframe every 30 frames
    write_video(src, texture_frames(240, 64, 96), 30.0, options={"g": "30"})
    path = remux(src, tmp_path / f"clip.{fmt}", fmt)
    frames, fps = decode_video(path)  # (240, 64, 96, 3): every frame, no range (decode_video seeks for a range)
    assert len(frames) == 240 and fps == (25.0 if fmt == "h264" else 30.0)  # raw H.264 has no rate: FFmpeg's 25
    spec = VideoSpec(frames=17, fps=8.0, height=32, width=32)
    for start, end in [(None, None), (2.0, 5.0), (5.5, None)]:
        lo, hi = round((start or 0) * fps), 240 if end is None else round(end * fps)
        sv = load_video(path, spec, start, end)
        assert sv.source_frames == hi - lo and sv.source_fps == fps
        np.testing.assert_array_equal(sv.frames, standardize(frames[lo:hi], fps, spec), err_msg=f"[{start}, {end})")


def test_load_video_variable_frame_rate_takes_the_nearest_frame_in_time(tmp_path):
    from fractions import Fraction

    path = tmp_path / "vfr.mp4"  # 30 fps nominal, frame 45 shown for 4 frame times (a gap in the timestamps)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        s.codec_context.time_base = s.time_base = Fraction(1, 30)
        t = 0
        for i, frame in enumerate(texture_frames(90, 64, 96)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = t, Fraction(1, 30)
            t += 4 if i == 45 else 1
            for pkt in s.encode(vf):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    spec = VideoSpec(frames=17, fps=30.0, height=64, width=96)  # the source's size: the frame numbers stay legible
    sv = load_video(path, spec)  # 90 frames over 93 frame times: 29.03 fps on average
    assert sv.frames.shape == (17, 64, 96, 3) and sv.source_frames == 90
    assert any("timestamps skip" in w for w in sv.warnings), sv.warnings
    numbers = [sum(1 << b for b in range(12) if f[2:6, 8 * b + 2:8 * b + 6].mean() > 128) for f in sv.frames]
    assert numbers == sorted(numbers) and numbers.count(45) >= 2, numbers  # frame 45 held across the gap
    assert set(np.diff(numbers)) <= {0, 1, 2}, numbers
