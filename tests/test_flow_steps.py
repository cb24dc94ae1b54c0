"""Flow at the source's rate (MaskConfig.flow_steps): the source frames between standard frames are decoded,
flow runs through them and is composed, and on a camera pan over a real-photo texture (gravel, from
scikit-image's data) that keeps the mask on the mover where flow between standard frames alone spreads it over
the background. Indexes made before the setting read back as flow_steps=1 with unchanged fingerprints."""

from __future__ import annotations

import numpy as np
import pytest

from motive_index.config import MaskConfig, VideoSpec
from motive_index.gradients import ClipReader
from motive_index.motion import compose_flows, flow_fields
from motive_index.synthetic import PanSpec, photo_texture, render_pan
from motive_index.video import between_frames, decode_video, load_video, standardize, write_video


def test_fingerprints_of_masks_made_before_flow_steps_are_unchanged():
    old = MaskConfig(flow_steps=1).to_dict()
    assert "flow_steps" not in old  # what indexes made before the setting stored
    assert MaskConfig.from_dict(old).flow_steps == 1  # and how they read back
    assert MaskConfig().flow_steps == 4 and MaskConfig().to_dict()["flow_steps"] == 4
    assert "flow_steps" not in MaskConfig(kind="none").to_dict()  # no flow: nothing to say
    assert MaskConfig(kind="none").source_steps == 1 and MaskConfig().source_steps == 4
    with pytest.raises(ValueError, match="flow_steps"):
        MaskConfig(flow_steps=0)


def test_composed_flow_is_the_flow_from_first_to_last_frame():
    h, w = 32, 40
    xs = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    f1 = np.zeros((h, w, 2), np.float32)
    f1[..., 0] = 1.0                                # every pixel moves 1 px right
    f2 = np.zeros((h, w, 2), np.float32)
    f2[..., 0] = 0.1 * xs                           # then by a tenth of where it is
    f2[..., 1] = 2.0
    total = compose_flows([f1, f2])
    np.testing.assert_allclose(total[:, :-2, 0], 1.0 + 0.1 * (xs[:, :-2] + 1.0), atol=1e-4)
    np.testing.assert_allclose(total[..., 1], 2.0, atol=1e-6)
    np.testing.assert_array_equal(compose_flows([f1]), f1)


def _pan(tmp_path, speed: float):
    spec = PanSpec(speed=speed)  # 36 frames of 96x96 at 16 fps: two source frames per standard interval
    frames, mover, _ = render_pan(photo_texture("gravel"), photo_texture("coffee"), spec)
    path = tmp_path / f"pan-{speed}.mp4"
    write_video(path, frames, spec.fps)
    return path, spec, mover


def test_load_video_decodes_the_frames_between_as_in_memory(tmp_path):
    path, spec, _ = _pan(tmp_path, 4.0)
    vs = VideoSpec()
    plain, stepped = load_video(path, vs), load_video(path, vs, flow_steps=4)
    assert plain.between is None
    np.testing.assert_array_equal(stepped.frames, plain.frames)  # the standard frames do not change
    decoded, fps = decode_video(path)
    want = between_frames(decoded, fps, vs, 4)
    assert len(stepped.between) == vs.frames - 1 == len(want)
    for got, exp in zip(stepped.between, want):
        assert got.shape == exp.shape == (1, vs.height, vs.width, 3)  # 16 fps over 8: one frame between
        np.testing.assert_array_equal(got, exp)
    np.testing.assert_array_equal(stepped.frames, standardize(decoded, fps, vs))
    with pytest.raises(ValueError, match="flow_steps"):
        load_video(path, vs, flow_steps=0)


def _ratio(mm, gt) -> float:
    w, g = mm.weight[:, 4:-4, 4:-4], gt[:, 4:-4, 4:-4]  # the interior: a pan reveals new content at the edges
    return float(w[g].mean() / max(w[~g].mean(), 1e-6))


def test_flow_at_the_source_rate_keeps_a_textured_pan_off_the_mask(tmp_path):
    path, spec, mover = _pan(tmp_path, 8.0)
    vs = VideoSpec()
    gt = standardize(np.repeat(mover[..., None].astype(np.uint8) * 255, 3, -1), spec.fps, vs)[..., 0] > 127
    old = ClipReader(vs, MaskConfig(flow_steps=1)).read(str(path)).mask
    new = ClipReader(vs, MaskConfig()).read(str(path)).mask
    # measured: 0.7 and 20 (benchmarks/masks.py, textured pans); the bounds leave room for encoder rounding
    assert _ratio(old, gt) < 3.0
    assert _ratio(new, gt) >= 10.0
    assert new.between is not None and new.flows.shape == old.flows.shape == (vs.frames - 1, 64, 64, 2)
    # the composed flow of the background is about the camera's two-frame move (8 px per source frame at 96 px
    # = 5.3 px at 64, x2), where flow between standard frames alone is lost on the texture's repeats
    bg = ~gt[:-1]
    move = 2 * 8.0 * 64 / 96
    err_new = np.abs(np.linalg.norm(new.flows, axis=-1)[bg] - move).mean()
    err_old = np.abs(np.linalg.norm(old.flows, axis=-1)[bg] - move).mean()
    assert err_new < 0.5 * err_old


def test_flow_fields_checks_the_frames_between():
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="between"):
        flow_fields(frames, between=(np.zeros((0, 16, 16, 3), np.uint8),))


def test_the_build_step_keeps_no_frames_between_once_the_mask_and_descriptor_are_made(tmp_path):
    from motive_index.features import FeatureConfig, MotionFeaturizer
    from motive_index.pipeline import INFLUENCE, MOTION, ReadStep, Work
    from motive_index.types import Clip

    path, _, _ = _pan(tmp_path, 8.0)
    vs, mask = VideoSpec(), MaskConfig()
    step = ReadStep(ClipReader(vs, mask), MotionFeaturizer(FeatureConfig(), mask, vs))
    read, desc = step(Work(Clip("pan", str(path)), frozenset({INFLUENCE, MOTION})))
    assert read.video.between is None and read.mask.between is None  # not carried to the model (or pickled)
    assert desc is not None and np.isfinite(desc).all()
    whole = ClipReader(vs, mask).read(str(path)).mask
    np.testing.assert_array_equal(read.mask.weight, whole.weight)  # the mask was made through them all the same
