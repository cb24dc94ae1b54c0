"""synthetic.py: deterministic clips whose ground-truth masks move the way their motion class says."""

from __future__ import annotations

import csv
import hashlib
import itertools

import cv2
import numpy as np
import pytest

from motive_index.manifest import read_manifest
from motive_index.synthetic import (CAMERAS, COLOURS, MOTIONS, SHAPES, TEXTURES, SynthSpec, caption_for,
                                    generate_dataset, moving_mask, render_clip)
from motive_index.video import decode_video

SEEDS = (0, 1, 2)


def track(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid (N, 2) as (x, y) and area (N,) of each frame's mask."""
    area = masks.sum(axis=(1, 2)).astype(float)
    ys, xs = np.mgrid[: masks.shape[1], : masks.shape[2]]
    cx = (masks * xs).sum(axis=(1, 2)) / area
    cy = (masks * ys).sum(axis=(1, 2)) / area
    return np.stack([cx, cy], 1), area


def clip(motion, seed=0, shape="square", texture="striped", frames=24):
    return render_clip(SynthSpec(motion, shape, "red", texture, frames, seed=seed))


def test_deterministic_and_seed_dependent():
    spec = SynthSpec("translate", "star", "blue", "checkered", 20, seed=7)
    f1, m1 = render_clip(spec)
    f2, m2 = render_clip(spec)
    assert f1.shape == (20, 96, 128, 3) and f1.dtype == np.uint8 and m1.shape == (20, 96, 128) and m1.dtype == bool
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(m1, m2)
    f3, _ = render_clip(SynthSpec("translate", "star", "blue", "checkered", 20, seed=8))
    assert np.abs(f1.astype(int) - f3).mean() > 1


@pytest.mark.parametrize("field,value", [("motion", "zoom"), ("shape", "hexagon"), ("colour", "pink"),
                                         ("texture", "dotted")])
def test_spec_validation_names_field_and_choices(field, value):
    kw = dict(motion="rotate", shape="circle", colour="red", texture="solid", frames=10)
    kw[field] = value
    with pytest.raises(ValueError, match=f"{field}={value!r}.*allowed") as e:
        SynthSpec(**kw)
    assert "circle" in str(e.value) or "rotate" in str(e.value) or "red" in str(e.value) or "solid" in str(e.value)
    with pytest.raises(ValueError, match="frames=1"):
        SynthSpec("rotate", "circle", "red", "solid", 1)


def test_captions_name_appearance_never_motion():
    stems = ("translat", "rotat", "spin", "turn", "scal", "grow", "shrink", "zoom", "oscillat", "swing", "bounc",
             "fall", "pan", "mov", "motion", "camera")
    for motion, shape, colour, texture in itertools.product(MOTIONS, SHAPES, COLOURS, TEXTURES):
        caption = caption_for(SynthSpec(motion, shape, colour, texture, 8))
        assert shape in caption and colour in caption and texture in caption
        assert not any(s in caption.lower() for s in stems), caption
    assert caption_for(SynthSpec("pan", "square", "red", "striped", 8)) == "a red striped square on a gray background"


def test_object_is_sizeable():
    _, masks = clip("translate", shape="circle", texture="solid")
    _, area = track(masks)
    diameter = 2 * np.sqrt(area / np.pi)
    assert np.all((0.2 * 96 <= diameter) & (diameter <= 0.32 * 96))


@pytest.mark.parametrize("seed", SEEDS)
def test_translate_moves_in_a_straight_line_at_constant_speed(seed):
    _, masks = clip("translate", seed)
    c, area = track(masks)
    steps = np.diff(c, axis=0)  # (N-1, 2)
    mean_step = steps.mean(0)
    assert np.linalg.norm(c[-1] - c[0]) > 15
    assert np.abs(steps - mean_step).max() < 1.0  # constant velocity
    assert area.max() / area.min() < 1.1


@pytest.mark.parametrize("seed", SEEDS)
def test_rotate_spins_in_place(seed):
    frames, masks = clip("rotate", seed, shape="circle", texture="solid")  # only the marker shows the turn
    c, area = track(masks)
    assert np.abs(c - c[0]).max() < 1.0 and area.max() / area.min() < 1.05
    both = masks[0] & masks[4]
    assert np.sum(np.abs(frames[0][both].astype(int) - frames[4][both]).sum(-1) > 60) > 20  # the marker moved
    dark = (frames.astype(int).sum(-1) < 150) & masks  # the marker's pixels
    mc, _ = track(dark)
    angle = np.unwrap(np.arctan2(mc[:, 1] - c[:, 1], mc[:, 0] - c[:, 0]))
    steps = np.diff(angle)
    assert np.all(np.sign(steps) == np.sign(steps[0])) and np.abs(angle[-1] - angle[0]) > np.pi


@pytest.mark.parametrize("seed", SEEDS)
def test_scale_grows_or_shrinks_about_its_centre(seed):
    _, masks = clip("scale", seed)
    c, area = track(masks)
    assert np.abs(c - c[0]).max() < 1.5
    assert max(area[0], area[-1]) / min(area[0], area[-1]) > 2.5
    d = np.diff(area)
    assert np.all(d > -area.max() * 0.02) or np.all(d < area.max() * 0.02)  # monotonic up to raster noise


@pytest.mark.parametrize("seed", SEEDS)
def test_oscillate_goes_back_and_forth_on_a_line(seed):
    _, masks = clip("oscillate", seed, frames=32)
    c, _ = track(masks)
    centred = c - c.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]  # principal direction
    along = centred @ axis
    off = np.linalg.norm(centred - along[:, None] * axis[None, :], axis=1)
    assert off.max() < 1.0 and np.ptp(along) > 15
    v = np.diff(along)
    turns = np.sum(np.sign(v[1:]) != np.sign(v[:-1]))
    assert turns >= 2


@pytest.mark.parametrize("seed", SEEDS)
def test_bounce_falls_and_bounces_vertically(seed):
    _, masks = clip("bounce", seed)
    c, _ = track(masks)
    assert np.ptp(c[:, 0]) < 0.5  # vertical only
    vy = np.diff(c[:, 1])
    assert vy[0] >= 0 and vy[1] > 0  # falls first (image y grows downward)
    assert np.any(vy < -1)  # and comes back up
    assert masks.any(axis=(1, 2)).all() and not masks[:, -1, :].any()  # never sinks out of the frame


def background_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Translation (dx, dy) of frame b relative to frame a by phase correlation on gray levels."""
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (a, b))
    (dx, dy), _ = cv2.phaseCorrelate(ga, gb)
    return np.array([dx, dy])


@pytest.mark.parametrize("seed", SEEDS)
def test_pan_moves_the_whole_frame_together(seed):
    frames, masks = clip("pan", seed)
    c, area = track(masks)
    moved = np.linalg.norm(c - c[0], axis=1)
    assert moved[-1] > 15
    k = int(np.argmax(moved > 12))  # small enough a shift for phase correlation (no wrap-around)
    shift = background_shift(frames[0], frames[k])
    np.testing.assert_allclose(shift, c[k] - c[0], atol=1.5)  # object and background move together
    assert area.max() / area.min() < 1.1
    keep = ~(masks[0] | masks[k])
    assert np.abs(frames[0][keep].astype(int) - frames[k][keep]).mean() > 3  # the background changes


@pytest.mark.parametrize("motion", [m for m in MOTIONS if m != "pan"])
def test_background_is_static_except_for_pan(motion):
    frames, masks = clip(motion, seed=4)
    keep = ~(masks[0] | masks[-1])
    np.testing.assert_array_equal(frames[0][keep], frames[-1][keep])


def test_generate_dataset(tmp_path):
    calls = []
    manifest = generate_dataset(tmp_path / "ds", 8, seed=3, frames_range=(17, 19), height=64, width=96,
                                progress=lambda i, n: calls.append((i, n)))
    assert manifest == tmp_path / "ds" / "manifest.csv"
    assert calls == [(i, 8) for i in range(1, 9)]
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["clip_id", "path", "caption", "motion", "shape", "colour", "texture", "frames",
                             "fps", "seed"]
    assert [r["motion"] for r in rows] == [MOTIONS[i % 6] for i in range(8)]
    assert [r["clip_id"] for r in rows] == [f"clip_{i:04d}" for i in range(8)]
    for r in rows:
        assert r["path"] == r["clip_id"] + ".mp4" and 17 <= int(r["frames"]) <= 19
        assert not any(m in r["caption"] for m in MOTIONS)
    clips = read_manifest(manifest)
    frames, fps = decode_video(clips[2].path)
    assert frames.shape == (int(rows[2]["frames"]), 64, 96, 3) and fps == pytest.approx(8.0)
    assert clips[2].metadata["motion"] == "scale"
    again = generate_dataset(tmp_path / "again", 8, seed=3, frames_range=(17, 19), height=64, width=96)
    assert again.read_text() == manifest.read_text()


@pytest.mark.parametrize("kw,match", [(dict(n_clips=0), "n_clips=0"), (dict(frames_range=(10, 5)), "frames_range"),
                                      (dict(motions=("wobble",)), "motions"), (dict(height=63), "even"),
                                      (dict(cameras=("dolly",)), "cameras"), (dict(cameras=()), "cameras")])
def test_generate_dataset_rejects_bad_arguments(tmp_path, kw, match):
    args = dict(n_clips=2) | kw
    with pytest.raises(ValueError, match=match):
        generate_dataset(tmp_path, **args)


# ---------------------------------------------------------------------------------------------- camera motion

# sha256 (first 16 hex) of frames and masks of SynthSpec(motion, "star", "blue", "checkered", 12, seed=5), taken
# before the camera field existed: the default camera must keep rendering exactly these clips.
PINNED = {"translate": ("13b2f45655ebfb27", "6a4204541f7a74e2"), "rotate": ("a78f2c63091b594c", "5959200da9a2e354"),
          "scale": ("049d09a9f89cd35b", "f62d237a1feea578"), "oscillate": ("20392c6d937d55d0", "c518314a5b1b98b1"),
          "bounce": ("7b3d17e87de1126d", "95dd2d9ee9979350"), "pan": ("94d3a56c42ab2c23", "558e74154f4fd0f0")}


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("motion", MOTIONS)
def test_default_camera_renders_the_same_clips_as_before(motion):
    spec = SynthSpec(motion, "star", "blue", "checkered", 12, seed=5)
    assert spec.camera == "static"
    frames, masks = render_clip(spec)
    assert (digest(frames), digest(masks)) == PINNED[motion]
    f2, m2 = render_clip(SynthSpec(motion, "star", "blue", "checkered", 12, seed=5, camera="static"))
    np.testing.assert_array_equal(frames, f2)
    np.testing.assert_array_equal(masks, m2)


def test_camera_validation_and_pan_class_ignores_camera():
    assert CAMERAS == ("static", "pan")
    with pytest.raises(ValueError, match="camera='dolly'.*allowed"):
        SynthSpec("rotate", "circle", "red", "solid", 10, camera="dolly")
    a = render_clip(SynthSpec("pan", "square", "red", "striped", 16, seed=3))
    b = render_clip(SynthSpec("pan", "square", "red", "striped", 16, seed=3, camera="pan"))
    for x, y in zip(a, b):  # the pan class is already a camera pan over a static world
        np.testing.assert_array_equal(x, y)


def patch_shift(a: np.ndarray, b: np.ndarray, occupied: np.ndarray, size: int = 24) -> np.ndarray:
    """Sub-pixel translation (dx, dy) of a background patch of frame a in frame b, by template matching.

    The patch is the most central ``size`` square of frame a clear of ``occupied`` (the object, dilated).
    """
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (a, b))
    h, w = ga.shape
    occ = cv2.integral(cv2.dilate(occupied.astype(np.uint8), np.ones((9, 9))).astype(np.float32))
    free = [(min(y, x, h - size - y, w - size - x), y, x) for y in range(8, h - size - 8, 2)
            for x in range(8, w - size - 8, 2)
            if occ[y + size, x + size] - occ[y, x + size] - occ[y + size, x] + occ[y, x] == 0]
    _, y, x = max(free)
    res = cv2.matchTemplate(gb, ga[y:y + size, x:x + size], cv2.TM_SQDIFF)
    mx, my = cv2.minMaxLoc(res)[2]

    def vertex(r, i):  # parabola through the minimum and its neighbours
        if 0 < i < len(r) - 1 and r[i - 1] - 2 * r[i] + r[i + 1] > 0:
            return i + 0.5 * (r[i - 1] - r[i + 1]) / (r[i - 1] - 2 * r[i] + r[i + 1])
        return float(i)

    return np.array([vertex(res[my, :], mx) - x, vertex(res[:, mx], my) - y])


def translate(img: np.ndarray, d: np.ndarray) -> np.ndarray:
    m = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
    return cv2.warpAffine(img, m, img.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


OBJECT_MOTIONS = [m for m in MOTIONS if m != "pan"]


@pytest.mark.parametrize("motion", OBJECT_MOTIONS)
@pytest.mark.parametrize("seed", SEEDS)
def test_camera_pan_moves_the_background_at_constant_velocity(motion, seed):
    spec = SynthSpec(motion, "square", "red", "striped", 24, seed=seed, camera="pan")
    frames, masks = render_clip(spec)
    assert frames.shape == (24, 96, 128, 3) and masks.shape == (24, 96, 128)
    s1 = patch_shift(frames[0], frames[1], masks[0] | masks[1])
    s4 = patch_shift(frames[0], frames[4], masks[0] | masks[4])
    assert 0.8 <= np.linalg.norm(s1) <= 2.6  # 1-2.5 px/frame at 96x128
    np.testing.assert_allclose(s4, 4 * s1, atol=0.6)  # straight and constant-speed
    keep = ~(masks[0] | masks[1])
    assert np.abs(frames[0][keep].astype(int) - frames[1][keep]).mean() > 3  # unlike the static camera


@pytest.mark.parametrize("motion", OBJECT_MOTIONS)
@pytest.mark.parametrize("seed", SEEDS)
def test_camera_pan_object_still_moves_relative_to_the_background(motion, seed):
    spec = SynthSpec(motion, "square", "red", "striped", 24, seed=seed, camera="pan")
    frames, masks = render_clip(spec)
    s = patch_shift(frames[0], frames[4], masks[0] | masks[4])
    back = translate(frames[4].astype(np.float32), -s)  # frame 4 with the camera's motion undone
    obj = masks[0] | (translate(masks[4].astype(np.float32), -s) > 0.5)
    inner = np.zeros(obj.shape, bool)
    inner[12:-12, 12:-12] = True  # away from the borders the shift brings in
    bg = ~cv2.dilate(obj.astype(np.uint8), np.ones((5, 5))).astype(bool) & inner
    diff = np.abs(back - frames[0]).mean(-1)
    assert diff[bg].mean() < 1.5  # the background is only translated by the camera
    assert diff[obj & inner].mean() > 10  # the object moved in the world as well
    c, area = track(masks)
    if motion in ("rotate", "scale"):  # turns or grows in place in the world: its centre rides with the camera
        np.testing.assert_allclose(c[4] - c[0], s, atol=1.5)
    else:
        assert np.linalg.norm(c[4] - c[0] - s) > 2


@pytest.mark.parametrize("motion", OBJECT_MOTIONS)
@pytest.mark.parametrize("size", [(96, 128), (64, 64), (32, 48)])
def test_camera_pan_keeps_the_object_whole_in_the_frame(motion, size):
    for seed in range(4):
        spec = SynthSpec(motion, "star", "green", "solid", 17, height=size[0], width=size[1], seed=seed,
                         camera="pan")
        frames, masks = render_clip(spec)
        assert frames.shape == (17, *size, 3)
        assert masks.any(axis=(1, 2)).all()
        assert not (masks[:, 0].any() or masks[:, -1].any() or masks[:, :, 0].any() or masks[:, :, -1].any())
        _, area = track(masks)
        if motion != "scale":
            assert area.max() / area.min() < 1.25
        f2, m2 = render_clip(spec)  # deterministic
        np.testing.assert_array_equal(frames, f2)
        np.testing.assert_array_equal(masks, m2)


def test_moving_mask_is_what_moves_in_the_world():
    for motion in MOTIONS:
        for camera in CAMERAS:
            spec = SynthSpec(motion, "circle", "red", "solid", 10, seed=1, camera=camera)
            _, masks = render_clip(spec)
            moving = moving_mask(spec, masks)
            assert moving.shape == masks.shape and moving.dtype == bool
            if motion == "pan":  # the camera moves over a static world: nothing moves in it
                assert not moving.any() and masks.any()
            else:
                np.testing.assert_array_equal(moving, masks)
                assert moving is not masks


def test_generate_dataset_with_cameras(tmp_path):
    manifest = generate_dataset(tmp_path / "ds", 8, seed=3, frames_range=(17, 17), height=64, width=64,
                                motions=("translate", "rotate", "pan"), cameras=("static", "pan"))
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["clip_id", "path", "caption", "motion", "camera", "shape", "colour", "texture",
                             "frames", "fps", "seed"]
    assert [r["motion"] for r in rows] == ["translate", "rotate", "pan"] * 2 + ["translate", "rotate"]
    assert [r["camera"] for r in rows] == ["static"] * 3 + ["pan"] * 3 + ["static"] * 2
    clips = read_manifest(manifest)
    assert clips[3].metadata["camera"] == "pan"
    spec = SynthSpec(rows[3]["motion"], rows[3]["shape"], rows[3]["colour"], rows[3]["texture"], 17, height=64,
                     width=64, seed=int(rows[3]["seed"]), camera="pan")
    decoded, _ = decode_video(clips[3].path)
    assert np.abs(decoded.astype(int) - render_clip(spec)[0]).mean() < 4  # the panned clip, through the codec
    # the same draws as without cameras: only the camera differs
    plain = generate_dataset(tmp_path / "plain", 8, seed=3, frames_range=(17, 17), height=64, width=64,
                             motions=("translate", "rotate", "pan"))
    with open(plain, newline="") as f:
        plain_rows = list(csv.DictReader(f))
    assert "camera" not in plain_rows[0]
    assert [{k: v for k, v in r.items() if k != "camera"} for r in rows] == plain_rows
    explicit = generate_dataset(tmp_path / "explicit", 8, seed=3, frames_range=(17, 17), height=64, width=64,
                                motions=("translate", "rotate", "pan"), cameras=("static",))
    assert explicit.read_text() == plain.read_text()


def test_planted_dataset_holds_out_one_pair_per_motion_and_appearance(tmp_path):
    from collections import Counter

    from motive_index.manifest import read_manifest
    from motive_index.synthetic import planted_dataset

    motions = ("translate", "rotate", "scale", "pan")
    train_m, query_m = planted_dataset(tmp_path, seed=5, motions=motions, per_pair=1, queries_per_pair=2,
                                       frames_range=(17, 18), height=64, width=64)
    train, queries = read_manifest(train_m), read_manifest(query_m)
    assert len(train) == 4 * 3 and len(queries) == 4 * 2
    seen = {(c.metadata["motion"], c.metadata["appearance"]) for c in train}
    held = {(c.metadata["motion"], c.metadata["appearance"]) for c in queries}
    assert not seen & held                                   # no query's combination occurs in training
    assert sorted(m for m, _ in held) == sorted(motions)     # one held-out pair per motion ...
    assert len({a for _, a in held}) == 4                    # ... and per appearance
    assert set(Counter(c.metadata["motion"] for c in train).values()) == {3}
    assert set(Counter(c.metadata["appearance"] for c in train).values()) == {3}
    for c in train + queries:
        colour, shape = c.metadata["appearance"].split()
        assert colour in c.caption and shape in c.caption
        assert not any(m in c.caption for m in motions)      # captions never name the motion
    with pytest.raises(ValueError, match="appearances"):
        planted_dataset(tmp_path / "x", motions=motions, appearances=2)
