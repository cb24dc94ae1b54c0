import json

import pytest
import torch

from motive_index.backbones import build_tiny, load_backbone
from motive_index.errors import ModelLoadError


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(seed=0)


def test_tiny_preset_is_a_real_diffusers_wan(tiny):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    assert isinstance(tiny.transformer, WanTransformer3DModel)
    assert isinstance(tiny.vae, AutoencoderKLWan)
    # latent grid derived from the VAE's architecture: 4x temporal with the first frame alone, 8x spatial
    assert (tiny.temporal_factor, tiny.spatial_factor, tiny.first_frame_alone) == (4, 8, True)
    assert tiny.latent_shape() == (48, 5, 8, 8)  # 17 frames at 64x64; 48 channels as Wan 2.2's VAE


def test_tiny_is_seeded(tiny):
    again = build_tiny(seed=0)
    other = build_tiny(seed=1)
    assert again.identity() == tiny.identity()
    assert other.identity()["weights"] != tiny.identity()["weights"]


def test_encode_shapes_and_text_cache(tiny):
    z = tiny.encode_video(torch.rand(17, 3, 64, 64))
    assert z.shape == tiny.latent_shape() and torch.isfinite(z).all()
    a = tiny.encode_text("a red square")
    assert a.shape == (tiny.text_max_length, 32)
    assert tiny.encode_text("a red square") is a                      # cached per distinct caption
    assert not torch.allclose(a, tiny.encode_text("a blue circle"))  # captions condition differently


def test_flow_matching_noising(tiny):
    z0, eps = torch.randn(1, *tiny.latent_shape()), torch.randn(1, *tiny.latent_shape())
    z_t, model_t, target = tiny.noisy_input(z0, eps, 751)
    sigma = tiny.sigma(751)
    assert sigma == pytest.approx(3.0 * 0.751 / (1 + 2.0 * 0.751))  # the scheduler's shift (3.0 for tiny)
    assert torch.allclose(z_t, (1 - sigma) * z0 + sigma * eps, atol=1e-6)
    assert torch.allclose(target, eps - z0)
    assert model_t.item() == pytest.approx(sigma * 1000)


def test_save_pretrained_loads_back_through_the_real_path(tiny, tmp_path):
    out = tiny.save_pretrained(tmp_path / "m")
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (out / part).is_dir()
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "WanPipeline"
    loaded = load_backbone(out)
    assert loaded.identity()["transformer_config"] == tiny.identity()["transformer_config"]
    assert loaded.spec == tiny.spec and loaded.shift == tiny.shift
    z = torch.randn(1, *tiny.latent_shape())
    t = torch.tensor([500.0])
    text = tiny.encode_text("a green star")
    assert torch.allclose(loaded.encode_text("a green star"), text, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(loaded.predict(z, t, text[None]), tiny.predict(z, t, text[None]), atol=1e-5)
    frames = torch.rand(17, 3, 64, 64)
    assert torch.allclose(loaded.encode_video(frames), tiny.encode_video(frames), atol=1e-5)
    # the weights hash is of the files; a second load gives the same identity
    assert load_backbone(out).identity() == loaded.identity()


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(ModelLoadError, match="not a directory"):
        load_backbone(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="transformer/config.json"):
        load_backbone(tmp_path)
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(ModelLoadError, match="not supported"):
        load_backbone(tmp_path)
    (tmp_path / "transformer" / "config.json").write_text('{"_class_name": "WanTransformer3DModel"}')
    with pytest.raises(ModelLoadError, match="missing component folder|could not load"):
        load_backbone(tmp_path)


def test_identity_configs_hash_is_the_documented_one(tiny):
    """identity() computes its configs hash once and hashes the vocabulary without the _clean pass: the value must
    stay what every stored fingerprint holds, sha256 of the cleaned configs with the sorted vocabulary."""
    import hashlib

    from motive_index.backbones.base import _clean

    configs = {"transformer": dict(tiny.transformer.config), "vae": dict(tiny.vae.config),
               "text_encoder": tiny.text_encoder.config.to_dict(), "scheduler": tiny.scheduler_config,
               "tokenizer": sorted(tiny.tokenizer.get_vocab().items()), "text_max_length": tiny.text_max_length}
    want = hashlib.sha256(json.dumps(_clean(configs), sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert tiny.identity()["configs"] == want
