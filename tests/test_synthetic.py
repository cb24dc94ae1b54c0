"""synthetic.py: deterministic clips whose ground-truth masks move the way their motion class says."""

from __future__ import annotations

import csv
import itertools

import cv2
import numpy as np
import pytest

from motive_index.manifest import read_manifest
from motive_index.synthetic import (COLOURS, MOTIONS, SHAPES, TEXTURES, SynthSpec, caption_for, generate_dataset,
                                    render_clip)
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
                                      (dict(motions=("wobble",)), "motions"), (dict(height=63), "even")])
def test_generate_dataset_rejects_bad_arguments(tmp_path, kw, match):
    args = dict(n_clips=2) | kw
    with pytest.raises(ValueError, match=match):
        generate_dataset(tmp_path, **args)
