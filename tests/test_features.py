import numpy as np
import pytest

from motive_index.config import FeatureConfig
from motive_index.features import descriptor_dim, motion_descriptor

H = W = 32


def _field(kind: str, n: int = 16, angle: float = 0.0, speed: float = 1.5) -> np.ndarray:
    """(n, H, W, 2) flows of a 12x12 object in the middle doing ``kind``, on a still background."""
    f = np.zeros((n, H, W, 2), np.float32)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    obj = (abs(xs - 16) < 6) & (abs(ys - 16) < 6)
    for t in range(n):
        if kind == "slide":
            f[t][obj] = speed * np.array([np.cos(angle), np.sin(angle)])
        elif kind == "swing":
            f[t][obj] = speed * np.sign(np.sin(2 * np.pi * t / 8 + 0.3)) * np.array([np.cos(angle), np.sin(angle)])
        elif kind == "spin":
            f[t, ..., 0][obj] = -0.25 * (ys - 16)[obj]
            f[t, ..., 1][obj] = 0.25 * (xs - 16)[obj]
        elif kind == "zoom":
            f[t, ..., 0][obj] = 0.25 * (xs - 16)[obj]
            f[t, ..., 1][obj] = 0.25 * (ys - 16)[obj]
    return f


def _d(flows, **kw):
    return motion_descriptor(flows, flows, FeatureConfig(**kw))


def test_descriptor_is_a_deterministic_unit_vector_of_the_stated_size():
    for camera in ("both", "compensated", "raw"):
        cfg = FeatureConfig(camera=camera)
        d = motion_descriptor(_field("spin"), _field("spin"), cfg)
        assert d.shape == (descriptor_dim(cfg),) and d.dtype == np.float32
        assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-6)
        assert np.array_equal(d, motion_descriptor(_field("spin"), _field("spin"), cfg))


def test_same_motion_in_another_direction_is_similar_and_other_motions_are_not():
    right, up = _d(_field("slide", angle=0.0)), _d(_field("slide", angle=-np.pi / 2))
    assert float(right @ up) >= 0.75  # a slide is a slide whichever way it goes: only the axis block differs
    others = {k: _d(_field(k)) for k in ("swing", "spin", "zoom")}
    for k, v in others.items():
        assert float(right @ v) < float(right @ up), k  # even a swing on the same axis is further
    assert float(others["spin"] @ others["zoom"]) < 0.9  # tangential vs radial flow
    assert float(_d(_field("swing", angle=1.0)) @ others["swing"]) > float(others["swing"] @ right)


def test_still_flow_and_a_camera_pan_over_a_still_scene():
    still = np.zeros((16, H, W, 2), np.float32)
    pan = np.ones((16, H, W, 2), np.float32)  # the whole frame moves 1 px/frame
    a, b = _d(still), _d(still)
    assert float(a @ b) == pytest.approx(1.0) and np.isfinite(a).all()
    cfg = FeatureConfig()
    panned = motion_descriptor(pan, still, cfg, residual_still=True)
    assert float(panned @ a) < 0.8            # the raw half sees the camera
    other_pan = motion_descriptor(-pan, still, cfg, residual_still=True)
    slide = _d(_field("slide"))
    assert float(panned @ other_pan) > 0.95                    # a pan is a pan whichever way it goes
    assert float(panned @ slide) < float(panned @ other_pan) - 0.3  # an object sliding is not a camera pan
    with pytest.raises(ValueError, match="residual"):
        motion_descriptor(pan, None, cfg)


def test_feature_config_is_validated():
    for bad in ({"camera": "left"}, {"segments": 0}, {"min_px": 0.0}, {"relative": 1.0}, {"kind": "x"}):
        with pytest.raises(ValueError, match="is invalid"):
            FeatureConfig(**bad)


def test_real_clips_find_their_own_motion_class(tmp_path):
    from motive_index.config import MaskConfig, VideoSpec
    from motive_index.manifest import read_manifest
    from motive_index.motion import motion_mask
    from motive_index.synthetic import generate_dataset
    from motive_index.video import load_video

    clips = read_manifest(generate_dataset(tmp_path, 24, seed=7, frames_range=(17, 30),
                                           motions=("translate", "rotate", "scale", "pan")))
    xs, ys = [], []
    for c in clips:
        mm = motion_mask(load_video(c.path, VideoSpec()).frames, MaskConfig())
        xs.append(motion_descriptor(mm.flows, mm.residual, residual_still=mm.static))
        ys.append(c.metadata["motion"])
    x, y = np.stack(xs), np.array(ys)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    top = np.argsort(-s, axis=1)[:, :3]
    precision = float((y[top] == y[:, None]).mean())
    assert precision > 0.6, precision  # chance is 5/23 ~ 0.22
