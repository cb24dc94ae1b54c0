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


def _exact(backbone, **estimator):
    from motive_index.config import EstimatorConfig
    from motive_index.gradients import select_parameters

    n = sum(p.numel() for _, p in select_parameters(backbone.transformer, tuple(estimator.get("params", ()))))
    return GradientEngine(backbone, estimator=EstimatorConfig(**estimator),
                          projection=ProjectionConfig(kind="identity", dim=n))


def _raw(engine, prep):
    """The un-normalized streamed gradient (identity projection), and the loss."""
    acc = engine.projector.accumulator()
    bb = engine.backbone
    with engine._streaming(acc, [0.0]), torch.enable_grad():
        for t, noise in zip(engine.timesteps, engine.noises):
            z_t, mt, target = bb.noisy_input(prep.latents[None], noise[None], t)
            from motive_index.loss import motion_weighted_loss

            (motion_weighted_loss(bb.predict(z_t, mt, prep.text[None])[0], target[0], prep.weight)
             / len(engine.timesteps)).backward()
    return acc.result()


def test_streamed_gradient_equals_plain_autograd_and_frees_every_grad(backbone, clips):
    eng = _exact(backbone)
    prep = eng.prepare(clips[0].path, clips[0].caption)
    streamed = _raw(eng, prep)
    params = [p for p in backbone.transformer.parameters()]
    assert all(p.grad is None for p in params)  # the hooks freed every gradient as backward ended it
    z_t, mt, target = backbone.noisy_input(prep.latents[None], eng.noise[None], 751)
    from motive_index.loss import motion_weighted_loss

    with torch.enable_grad():
        loss = motion_weighted_loss(backbone.predict(z_t, mt, prep.text[None])[0], target[0], prep.weight)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
    assert torch.allclose(streamed, flat, rtol=1e-5, atol=1e-9)


def test_parameter_patterns_select_a_slice_of_the_gradient_and_enter_the_fingerprint(backbone, clips):
    from motive_index.config import EstimatorConfig
    from motive_index.gradients import select_parameters

    full = _exact(backbone)
    prep = full.prepare(clips[1].path, clips[1].caption)
    whole = _raw(full, prep)
    pats = ("blocks.0.*", "proj_out.*")
    part = _exact(backbone, params=pats)
    sub = _raw(part, prep)
    names = [n for n, _ in select_parameters(backbone.transformer)]
    chosen = {n for n, _ in select_parameters(backbone.transformer, pats)}
    assert 0 < len(chosen) < len(names) and all(n.startswith(("blocks.0.", "proj_out.")) for n in chosen)
    pieces, off = [], 0
    for n, p in backbone.transformer.named_parameters():
        if n in chosen:
            pieces.append(whole[off:off + p.numel()])
        off += p.numel()
    assert torch.allclose(sub, torch.cat(pieces), rtol=1e-5, atol=1e-9)
    assert all(p.requires_grad for p in backbone.transformer.parameters())  # restored afterwards
    fp = GradientEngine(backbone, estimator=EstimatorConfig(params=pats)).fingerprint()
    assert fp["params"] == list(pats) and fp["num_params"] == sub.numel()
    assert GradientEngine(backbone).fingerprint()["params"] == "all"
    with pytest.raises(ValueError, match="match no parameter"):
        GradientEngine(backbone, estimator=EstimatorConfig(params=("nope.*",)))


def test_k_samples_average_k_single_sample_gradients(backbone, clips):
    from motive_index.config import EstimatorConfig

    assert EstimatorConfig(samples=10).timesteps() == (50, 150, 250, 350, 450, 550, 650, 750, 850, 950)
    assert EstimatorConfig().timesteps() == (751,)
    two = _exact(backbone, samples=2)
    assert two.timesteps == (250, 750)
    assert torch.equal(two.noises[0], _exact(backbone).noise)  # the first draw is the single sample's
    prep = two.prepare(clips[2].path, clips[2].caption)
    mean = _raw(two, prep)
    singles = []
    for t, noise in zip(two.timesteps, two.noises):
        one = _exact(backbone, timestep=t)
        one.noises = [noise]
        singles.append(_raw(one, prep))
    assert torch.allclose(mean, (singles[0] + singles[1]) / 2, rtol=1e-4, atol=1e-9)
    v, _ = GradientEngine(backbone, estimator=EstimatorConfig(samples=2)).embed(clips[2].path, clips[2].caption)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)


def test_bf16_autocast_and_checkpointing(backbone, clips, model_dir):
    from motive_index.config import EstimatorConfig

    c = clips[3]
    base, _ = GradientEngine(backbone).embed(c.path, c.caption)
    bf16, _ = GradientEngine(backbone, estimator=EstimatorConfig(precision="bf16")).embed(c.path, c.caption)
    assert np.all(np.isfinite(bf16)) and 0.9 < float(base @ bf16) < 1.0  # close, not equal: fingerprinted
    assert GradientEngine(backbone, estimator=EstimatorConfig(precision="bf16")).fingerprint()["estimator"][
        "precision"] == "bf16"
    fresh = load_backbone(model_dir)  # checkpointing switches the module's mode: keep the shared one as it is
    ckpt, _ = GradientEngine(fresh, checkpointing=True).embed(c.path, c.caption)
    assert fresh.transformer.gradient_checkpointing
    assert float(base @ ckpt) == pytest.approx(1.0, abs=1e-5)  # same vector: not part of the fingerprint
