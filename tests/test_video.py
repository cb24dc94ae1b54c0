"""video.py on real mp4 files written with PyAV."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
import torch

from motive_index.config import VideoSpec
from motive_index.errors import VideoError, VideoNotFoundError, VideoTooShortError
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
    for path, reason in [(garbage, "cannot be decoded"), (zero, "cannot be decoded"),
                         (no_frames, "no video stream"), (audio, "no video stream")]:
        with pytest.raises(VideoError, match=reason) as e:
            decode_video(path)
        assert str(path) in str(e.value) and not isinstance(e.value, VideoNotFoundError)
    with pytest.raises(VideoError, match="directory"):
        decode_video(tmp_path)


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
