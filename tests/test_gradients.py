import numpy as np
import pytest
import torch

from motive_index.backbones import load_backbone
from motive_index.config import MaskConfig, ProjectionConfig
from motive_index.errors import GradientError
from motive_index.gradients import GradientEngine
from motive_index.manifest import read_manifest
from motive_index.video import write_video


@pytest.fixture(scope="module")
def backbone(model_dir):
    return load_backbone(model_dir)


@pytest.fixture(scope="module")
def clips(dataset):
    return read_manifest(dataset)


def test_same_clip_same_caption_gives_the_same_unit_vector(backbone, clips):
    c = clips[0]
    a, prep = GradientEngine(backbone).embed(c.path, c.caption)
    b, _ = GradientEngine(backbone).embed(c.path, c.caption)  # a second engine: same seeded noise
    assert a.shape == (512,) and a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert float(a @ b) == pytest.approx(1.0, abs=1e-5)
    assert set(prep.timings) >= {"decode", "flow", "vae", "text", "fwd_bwd", "projection"}
    assert prep.metadata["source_frames"] >= 17 and prep.metadata["static"] is False


def test_caption_mask_and_clip_all_change_the_vector(backbone, clips):
    c, d = clips[0], clips[1]
    eng = GradientEngine(backbone)
    base, _ = eng.embed(c.path, c.caption)
    other_caption, _ = eng.embed(c.path, "a totally different caption")
    other_clip, _ = eng.embed(d.path, c.caption)
    no_mask, _ = GradientEngine(backbone, mask=MaskConfig(kind="none")).embed(c.path, c.caption)
    for v in (other_caption, other_clip, no_mask):
        assert float(base @ v) < 0.999


def test_fastfood_cosines_track_exact_gradient_cosines(backbone, clips):
    exact = GradientEngine(backbone, projection=ProjectionConfig(kind="identity", dim=sum(
        p.numel() for p in backbone.transformer.parameters())))
    proj = GradientEngine(backbone, projection=ProjectionConfig(dim=1024, block_size=2**18))
    ex = np.stack([exact.embed(c.path, c.caption)[0] for c in clips[:6]])
    pr = np.stack([proj.embed(c.path, c.caption)[0] for c in clips[:6]])
    iu = np.triu_indices(6, 1)
    ce, cp = (ex @ ex.T)[iu], (pr @ pr.T)[iu]
    # JL at 1024 dims: cosine error sd <= 1/sqrt(1024) ~ 0.031; allow 4 sd
    assert np.max(np.abs(ce - cp)) < 0.125, (ce, cp)
    assert np.corrcoef(ce, cp)[0, 1] > 0.9


def test_nan_latents_raise_gradient_error_naming_the_clip(backbone, clips):
    eng = GradientEngine(backbone)
    prep = eng.prepare(clips[0].path, clips[0].caption, name="bad-clip")
    prep.latents = prep.latents.clone()
    prep.latents[0, 0, 0, 0] = float("nan")
    with pytest.raises(GradientError, match="bad-clip"):
        eng.vector(prep)


def test_static_clip_is_flagged_and_still_gives_a_finite_vector(backbone, tmp_path):
    path = tmp_path / "still.mp4"
    write_video(path, np.full((20, 64, 64, 3), 90, np.uint8), fps=8)
    vec, prep = GradientEngine(backbone).embed(str(path), "a still frame")
    assert prep.metadata["static"] is True
    assert np.all(np.isfinite(vec)) and np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)


def test_noise_is_shared_and_seeded(backbone):
    a, b = GradientEngine(backbone), GradientEngine(backbone)
    assert torch.equal(a.noise, b.noise)
    from motive_index.config import EstimatorConfig

    assert not torch.equal(a.noise, GradientEngine(backbone, estimator=EstimatorConfig(noise_seed=1)).noise)
