"""The CogVideoX backbone: real diffusers parts (CogVideoXTransformer3DModel, AutoencoderKLCogVideoX,
CogVideoXDDIMScheduler) and a real T5 encoder, tiny and seeded; nothing is downloaded or mocked."""

import json
import shutil

import numpy as np
import pytest
import torch

from motive_index.backbones import build_tiny, load_backbone, read_spec
from motive_index.backbones.cogvideox import COGVIDEOX_SCHEDULER, CogVideoXBackbone
from motive_index.errors import ModelLoadError


@pytest.fixture(scope="module")
def cog():
    return build_tiny(seed=0, family="cogvideox")


@pytest.fixture(scope="module")
def cog_dir(cog, tmp_path_factory):
    return cog.save_pretrained(tmp_path_factory.mktemp("cog") / "tiny-cog")


@pytest.fixture(scope="module")
def loaded(cog_dir):
    return load_backbone(cog_dir)


def test_tiny_preset_is_a_real_diffusers_cogvideox(cog):
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5EncoderModel

    assert isinstance(cog, CogVideoXBackbone) and cog.family == "cogvideox"
    assert isinstance(cog.transformer, CogVideoXTransformer3DModel)
    assert isinstance(cog.vae, AutoencoderKLCogVideoX)
    assert isinstance(cog.text_encoder, T5EncoderModel)
    assert cog.transformer.config.use_rotary_positional_embeddings   # the 5b-style positions
    assert sum(p.numel() for p in cog.transformer.parameters()) < 1_000_000
    # latent grid from the VAE config: 4x temporal with the first frame alone, 8x spatial
    assert (cog.temporal_factor, cog.spatial_factor, cog.first_frame_alone) == (4, 8, True)
    assert cog.latent_shape() == (4, 5, 8, 8)  # 17 frames at 64x64


def test_latent_shape_is_what_the_vae_produces(cog):
    frames = torch.rand(cog.spec.frames, 3, cog.spec.height, cog.spec.width)
    with torch.no_grad():
        raw = cog.vae.encode(frames.permute(1, 0, 2, 3)[None] * 2 - 1).latent_dist.mode()
    assert tuple(raw.shape[1:]) == cog.latent_shape()
    z = cog.encode_video(frames)
    assert z.shape == cog.latent_shape() and torch.isfinite(z).all()
    assert torch.allclose(z, raw[0] * cog.vae.config.scaling_factor)
    a = cog.encode_text("a red square")
    assert a.shape == (cog.text_max_length, 32)
    assert cog.encode_text("a red square") is a                      # cached per distinct caption
    assert not torch.allclose(a, cog.encode_text("a blue circle"))


def test_noisy_input_is_the_schedulers_own_v_prediction(cog, cog_dir):
    from diffusers import CogVideoXDDIMScheduler

    sched = CogVideoXDDIMScheduler.from_pretrained(cog_dir / "scheduler")  # built independently, from the files
    assert sched.config.prediction_type == "v_prediction" and sched.config.snr_shift_scale == 3.0
    gen = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(2, *cog.latent_shape(), generator=gen), torch.randn(2, *cog.latent_shape(), generator=gen)
    t = torch.tensor([751, 200])
    z_t, model_t, target = cog.noisy_input(z0, eps, t)
    assert torch.allclose(z_t, sched.add_noise(z0, eps, t), atol=1e-6)
    assert torch.allclose(target, sched.get_velocity(z0, eps, t), atol=1e-6)
    assert model_t.tolist() == [751.0, 200.0]                         # the index itself is the model's input
    a = sched.alphas_cumprod[t].view(-1, 1, 1, 1, 1).float()
    assert torch.allclose(z_t, a.sqrt() * z0 + (1 - a).sqrt() * eps, atol=1e-5)
    assert torch.allclose(target, a.sqrt() * eps - (1 - a).sqrt() * z0, atol=1e-5)
    # an int timestep broadcasts over the batch
    z_t1, model_t1, _ = cog.noisy_input(z0, eps, 751)
    assert torch.allclose(z_t1[0], z_t[0]) and model_t1.tolist() == [751.0, 751.0]
    with pytest.raises(ValueError, match="indices"):
        cog.noisy_input(z0, eps, 1000)


def test_scheduler_settings_are_honoured(cog):
    z0, eps = torch.randn(1, *cog.latent_shape()), torch.randn(1, *cog.latent_shape())
    other = dict(COGVIDEOX_SCHEDULER, snr_shift_scale=1.0)                # the 5b schedule
    bb5 = CogVideoXBackbone(cog.transformer, cog.vae, cog.text_encoder, cog.tokenizer, other, cog.spec,
                            cog.text_max_length)
    assert not torch.allclose(bb5.noisy_input(z0, eps, 751)[0], cog.noisy_input(z0, eps, 751)[0])
    assert bb5.alpha_bar(751) > cog.alpha_bar(751)                        # the SNR shift lowers alpha_bar
    eps_pred = CogVideoXBackbone(cog.transformer, cog.vae, cog.text_encoder, cog.tokenizer,
                                 dict(COGVIDEOX_SCHEDULER, prediction_type="epsilon"), cog.spec, cog.text_max_length)
    assert torch.equal(eps_pred.noisy_input(z0, eps, 751)[2], eps)
    with pytest.raises(ModelLoadError, match="add_noise"):
        CogVideoXBackbone(cog.transformer, cog.vae, cog.text_encoder, cog.tokenizer,
                          {"_class_name": "FlowMatchEulerDiscreteScheduler"}, cog.spec, cog.text_max_length)


def test_save_pretrained_loads_back_through_load_backbone(cog, cog_dir, loaded):
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (cog_dir / part).is_dir()
    assert json.loads((cog_dir / "model_index.json").read_text())["_class_name"] == "CogVideoXPipeline"
    assert isinstance(loaded, CogVideoXBackbone)
    assert loaded.identity() == cog.identity()
    assert loaded.spec == cog.spec and read_spec(cog_dir) == cog.spec
    assert loaded.vae.config.scaling_factor == pytest.approx(cog.vae.config.scaling_factor)
    z = torch.randn(1, *cog.latent_shape())
    t = torch.tensor([500.0])
    text = cog.encode_text("a green star")
    assert torch.equal(loaded.encode_text("a green star"), text)
    with torch.no_grad():
        out = loaded.predict(z, t, text[None])
        assert out.shape == z.shape
        assert torch.equal(out, cog.predict(z, t, text[None]))
    frames = torch.rand(17, 3, 64, 64)
    assert torch.equal(loaded.encode_video(frames), cog.encode_video(frames))
    assert load_backbone(cog_dir).identity() == loaded.identity()


def test_read_spec_without_motive_config_uses_the_transformers_sample_size(cog_dir, tmp_path):
    bare = tmp_path / "bare"
    for part in ("transformer", "vae"):
        shutil.copytree(cog_dir / part, bare / part)
    spec = read_spec(bare)
    assert (spec.frames, spec.height, spec.width, spec.fps) == (17, 64, 64, 8.0)


def test_sincos_positions_2b_style(cog):
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    tr = CogVideoXTransformer3DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
                                     time_embed_dim=32, text_embed_dim=32, num_layers=1, sample_height=8,
                                     sample_width=8, sample_frames=17, max_text_seq_length=64)
    bb = CogVideoXBackbone(tr, cog.vae, cog.text_encoder, cog.tokenizer, COGVIDEOX_SCHEDULER, cog.spec, 64)
    z = torch.randn(1, *bb.latent_shape())
    with torch.no_grad():
        out = bb.predict(z, torch.tensor([751.0]), bb.encode_text("x")[None])
    assert out.shape == z.shape and torch.isfinite(out).all()
    with pytest.raises(ModelLoadError, match="max_text_seq_length"):
        CogVideoXBackbone(tr, cog.vae, cog.text_encoder, cog.tokenizer, COGVIDEOX_SCHEDULER, cog.spec, 32)


def test_gradient_engine_over_cogvideox(loaded, tmp_path):
    from motive_index.gradients import GradientEngine
    from motive_index.synthetic import SynthSpec, render_clip
    from motive_index.video import write_video

    s = SynthSpec(motion="translate", shape="circle", colour="blue", texture="solid", frames=24, height=64,
                  width=64, seed=5)
    frames, _ = render_clip(s)
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=s.fps)
    eng = GradientEngine(loaded)
    vec, prep = eng.embed(str(path), "a blue circle moves")
    assert vec.shape == (512,) and vec.dtype == np.float32
    assert np.all(np.isfinite(vec)) and np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    assert prep.latents.shape == loaded.latent_shape() and prep.weight.shape == loaded.latent_shape()[1:]
    fp = eng.fingerprint()
    assert fp["model"]["family"] == "cogvideox"
    wan_fp = GradientEngine(build_tiny(seed=0)).fingerprint()
    assert wan_fp["model"]["family"] == "wan"
    assert fp["model"] != wan_fp["model"]
    assert fp["model"]["weights"] != wan_fp["model"]["weights"]


def test_identity_changes_when_one_weight_changes(loaded):
    before = loaded.identity()
    p = next(loaded.transformer.parameters())
    old = p.detach().clone()
    try:
        with torch.no_grad():
            p.view(-1)[0] += 1e-3
        assert loaded.identity() == before              # cached until told
        loaded.invalidate_identity()
        after = loaded.identity()
        assert after["weights"] != before["weights"]
        assert {k: v for k, v in after.items() if k != "weights"} == {k: v for k, v in before.items()
                                                                      if k != "weights"}
    finally:
        with torch.no_grad():
            p.copy_(old)
        loaded.invalidate_identity()
    assert loaded.identity() == before
