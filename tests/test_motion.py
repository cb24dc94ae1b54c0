import numpy as np
import pytest

from motive_index.config import MaskConfig
from motive_index.motion import flow_fields, motion_mask, per_frame_magnitude, to_latent_grid


def _moving_square(t=9, h=64, w=64, step=2):
    """A bright textured square moving right by ``step`` px per frame over a static textured background."""
    rng = np.random.default_rng(0)
    bg = (rng.random((h, w, 1)) * 60 + 60).repeat(3, axis=2).astype(np.uint8)
    tex = (rng.random((16, 16, 1)) * 100 + 155).repeat(3, axis=2).astype(np.uint8)
    frames, truth = [], []
    for i in range(t):
        f = bg.copy()
        m = np.zeros((h, w), bool)
        x0 = 8 + step * i
        f[24:40, x0:x0 + 16] = tex
        m[24:40, x0:x0 + 16] = True
        frames.append(f)
        truth.append(m)
    return np.stack(frames), np.stack(truth)


def test_flow_recovers_known_displacement():
    frames, truth = _moving_square(step=2)
    flow = flow_fields(frames, "medium")
    assert flow.shape == (8, 64, 64, 2)
    inside = flow[:, 28:36, 20:28]  # interior of the square's path in early frames
    assert np.median(inside[0, ..., 0]) == pytest.approx(2.0, abs=0.5)
    assert abs(np.median(inside[0, ..., 1])) < 0.5


def test_mask_is_high_on_the_mover_low_on_the_background():
    frames, truth = _moving_square()
    mm = motion_mask(frames, MaskConfig())
    assert mm.weight.shape == (9, 64, 64) and not mm.static
    assert 0.0 <= mm.weight.min() and mm.weight.max() <= 1.0
    assert mm.weight[truth].mean() > 3 * mm.weight[~truth].mean()


def test_static_clip_gives_uniform_weight_and_flag_not_nan():
    frames = np.full((9, 32, 32, 3), 128, np.uint8)
    mm = motion_mask(frames, MaskConfig())
    assert mm.static
    assert np.all(mm.weight == 1.0)


def test_no_mask_is_all_ones():
    frames, _ = _moving_square()
    mm = motion_mask(frames, MaskConfig(kind="none"))
    assert np.all(mm.weight == 1.0)


def test_per_frame_magnitude_averages_neighbouring_flows():
    flow = np.zeros((3, 2, 2, 2), np.float32)
    flow[:, ..., 0] = np.array([1.0, 3.0, 5.0])[:, None, None]
    mag = per_frame_magnitude(flow)
    assert mag[:, 0, 0].tolist() == [1.0, 2.0, 4.0, 5.0]


def test_latent_grid_first_frame_alone_then_groups_of_four():
    # 1 + 4k frames -> 1 + k latent frames; frame value = its index, so each latent frame's mean is known
    t, h, w = 17, 16, 16
    weight = np.broadcast_to(np.arange(t, dtype=np.float32)[:, None, None], (t, h, w)).copy()
    grid = to_latent_grid(weight, temporal_factor=4, spatial_factor=8)
    assert grid.shape == (5, 2, 2)
    assert grid[:, 0, 0].tolist() == [0.0, 2.5, 6.5, 10.5, 14.5]  # {0}, {1..4}, {5..8}, {9..12}, {13..16}


def test_latent_grid_spatial_pooling_and_errors():
    weight = np.zeros((5, 16, 16), np.float32)
    weight[:, :8, :8] = 1.0
    grid = to_latent_grid(weight, 4, 8)
    assert grid[:, 0, 0].tolist() == [1.0, 1.0] and grid[:, 1, 1].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="1 \\+ 4\\*k"):
        to_latent_grid(np.zeros((6, 16, 16), np.float32), 4, 8)
    with pytest.raises(ValueError, match="multiple"):
        to_latent_grid(np.zeros((5, 12, 16), np.float32), 4, 8)
