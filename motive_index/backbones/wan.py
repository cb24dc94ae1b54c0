"""The Wan family (Wan2.1 T2V) through diffusers: WanTransformer3DModel, AutoencoderKLWan, a UMT5 text encoder.

Loads a diffusers-format directory (transformer/, vae/, text_encoder/, tokenizer/, scheduler/, model_index.json;
what Wan2.1-T2V-*-Diffusers ships and what :meth:`WanBackbone.save_pretrained` writes) and builds a ``tiny``
preset in code: a seeded random transformer, a byte-level tokenizer and a 2-layer UMT5 encoder (standing in for
the 4.7 B UMT5-XXL) and the trained tiny VAE shipped in the package (``tiny_vae.py``), so nothing is downloaded.
The optional ``motive_index.json`` beside them holds the standard clip shape and text length; without it, the
paper's shape (81 frames at 16 fps, 480x832, 512 text tokens) is used.
"""

from __future__ import annotations

import torch

from ..config import VideoSpec
from ..errors import ModelLoadError
from .base import DiffusersBackbone, byte_tokenizer
from .specs import PAPER_SPEC, PAPER_TEXT_LEN, TINY_SPEC, TINY_TEXT_LEN  # noqa: F401 (re-exported)


class WanBackbone(DiffusersBackbone):
    family = "wan"
    pipeline_class = "WanPipeline"
    default_scheduler_class = "FlowMatchEulerDiscreteScheduler"

    def __init__(self, transformer, vae, text_encoder, tokenizer, scheduler_config: dict,
                 spec: VideoSpec, text_max_length: int, source: str = "in-memory"):
        self._init_parts(transformer, vae, text_encoder, tokenizer, scheduler_config, spec, text_max_length, source)
        pred = self.scheduler_config.get("prediction_type", "flow_prediction")
        if pred not in ("flow_prediction", None) and "FlowMatch" not in self.scheduler_config.get("_class_name", ""):
            raise ModelLoadError(f"scheduler prediction_type {pred!r}: Wan models are flow matching "
                                 f"(expected 'flow_prediction')")
        self.shift = float(self.scheduler_config.get("flow_shift", self.scheduler_config.get("shift", 1.0)))
        self.num_train_timesteps = int(self.scheduler_config.get("num_train_timesteps", 1000))
        vcfg = vae.config
        # The latent grid, derived from the VAE's architecture (not hard-coded): each temporal downsample halves
        # time, each stage after the first halves space, and the Wan 2.2 layout first folds patch_size x
        # patch_size pixels into channels; the causal first frame is encoded alone.
        self.temporal_factor = 2 ** sum(bool(x) for x in vcfg.temperal_downsample)
        self.spatial_factor = 2 ** (len(vcfg.dim_mult) - 1) * int(getattr(vcfg, "patch_size", None) or 1)
        self.first_frame_alone = True
        self.z_dim = int(vcfg.z_dim)
        self._check_spec()
        self._latents_mean = torch.tensor(vcfg.latents_mean, dtype=torch.float32).view(-1, 1, 1, 1)
        self._latents_std = torch.tensor(vcfg.latents_std, dtype=torch.float32).view(-1, 1, 1, 1)

    # ----- construction -------------------------------------------------------------------------------------
    def _check_spec(self) -> None:
        s, tf = self.spec, self.temporal_factor
        p_h, p_w = self.transformer.config.patch_size[1:]
        if (s.frames - 1) % tf:
            raise ModelLoadError(f"standard frames={s.frames} does not fit this VAE: need 1 + {tf}*k frames")
        for name, v, p in (("height", s.height, p_h), ("width", s.width, p_w)):
            if v % (self.spatial_factor * p):
                raise ModelLoadError(f"standard {name}={v} must be a multiple of {self.spatial_factor * p} "
                                     f"(VAE factor {self.spatial_factor} x patch {p})")

    @classmethod
    def tiny(cls, seed: int = 0, spec: VideoSpec = TINY_SPEC, layers: int = 4, heads: int = 4,
             head_dim: int = 32, calibration: dict | None = None, vae=None) -> "WanBackbone":
        """A ~1 M-parameter Wan transformer and a tiny UMT5, seeded random weights, with the trained tiny VAE
        (0.5 M parameters, shipped in the package; the same for every seed: ``tiny_vae.py``).

        ``calibration``: the VAE's latents mean/std (a preset's weights record keeps them); without it, the ones
        the training script measured and wrote into the VAE's config. ``vae``: another AutoencoderKLWan instead
        (e.g. ``tiny_vae.legacy_tiny_vae()``, for code that predates the trained one); the transformer's channels
        and patch follow it."""
        from diffusers import WanTransformer3DModel
        from transformers import UMT5Config, UMT5EncoderModel

        from .tiny_vae import load_tiny_vae

        tokenizer = byte_tokenizer()
        vae = load_tiny_vae() if vae is None else vae
        z_dim = int(vae.config.z_dim)
        # the transformer's patch makes 4x4 tokens per latent frame, whatever the VAE's spatial factor
        factor = 2 ** (len(vae.config.dim_mult) - 1) * int(vae.config.patch_size or 1)
        patch = max(1, spec.height // factor // 4)
        g = torch.random.fork_rng()
        with g:
            torch.manual_seed(seed)
            text_cfg = UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                  num_heads=4, relative_attention_num_buckets=8,
                                  relative_attention_max_distance=32, pad_token_id=0, eos_token_id=1,
                                  decoder_start_token_id=0)
            text_encoder = UMT5EncoderModel(text_cfg)
            transformer = WanTransformer3DModel(patch_size=(1, patch, patch), num_attention_heads=heads,
                                                attention_head_dim=head_dim, in_channels=z_dim, out_channels=z_dim,
                                                text_dim=32, freq_dim=64, ffn_dim=2 * heads * head_dim,
                                                num_layers=layers, rope_max_seq_len=64)
        scheduler = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}
        backbone = cls(transformer, vae, text_encoder, tokenizer, scheduler, spec, TINY_TEXT_LEN)
        if calibration is not None:
            backbone._set_latents(calibration["latents_mean"], calibration["latents_std"])
        return backbone

    def calibration(self) -> dict:
        return {"latents_mean": [float(x) for x in self.vae.config.latents_mean],
                "latents_std": [float(x) for x in self.vae.config.latents_std]}

    def _set_latents(self, mean, std) -> None:
        mean, std = [float(x) for x in mean], [float(x) for x in std]
        if len(mean) != self.z_dim or len(std) != self.z_dim or min(std) <= 0:
            raise ValueError(f"latents mean/std: need {self.z_dim} values each (std > 0), got {len(mean)}/{len(std)}")
        self.vae.register_to_config(latents_mean=mean, latents_std=std)
        self._latents_mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1).to(self.device)
        self._latents_std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1).to(self.device)

    @classmethod
    def _classes(cls):
        from diffusers import AutoencoderKLWan, WanTransformer3DModel
        from transformers import UMT5EncoderModel

        return {"transformer": ("diffusers", WanTransformer3DModel), "vae": ("diffusers", AutoencoderKLWan),
                "text_encoder": ("transformers", UMT5EncoderModel)}

    @classmethod
    def _defaults(cls, parts, scheduler):
        return (scheduler if scheduler is not None else {}), PAPER_SPEC, PAPER_TEXT_LEN

    # ----- the interface ------------------------------------------------------------------------------------
    def _moved(self) -> None:
        self._latents_mean = self._latents_mean.to(self.device)
        self._latents_std = self._latents_std.to(self.device)

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self._vae_mode(frames)                                                      # (C, F', H', W')
        if normalize:
            z = (z - self._latents_mean) / self._latents_std
        return z

    @torch.no_grad()
    def _encode_text(self, caption: str) -> torch.Tensor:
        enc = self.tokenizer([caption], padding="max_length", max_length=self.text_max_length, truncation=True,
                             add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = enc.input_ids.to(self.device), enc.attention_mask.to(self.device)
        emb = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state[0]   # (L, text_dim)
        return emb * mask[0, :, None].to(emb.dtype)   # as WanPipeline: real tokens kept, padding zeroed

    def sigma(self, timestep):
        """Flow-matching sigma for a training timestep index (int or tensor), with the scheduler's shift."""
        s = timestep / self.num_train_timesteps
        return self.shift * s / (1 + (self.shift - 1) * s)

    def noisy_input(self, z0, noise, timestep):
        """z0, noise: (B, C, F', H', W'); timestep: an int or a (B,) tensor of training timestep indices."""
        t = torch.as_tensor(timestep, dtype=torch.float32, device=z0.device).reshape(-1)
        sigma = self.sigma(t).expand(z0.shape[0])                 # (B,)
        s = sigma.view(-1, 1, 1, 1, 1)
        z_t = (1.0 - s) * z0 + s * noise                          # (B, C, F', H', W')
        target = noise - z0                                       # flow-matching velocity
        return z_t, sigma * self.num_train_timesteps, target

    def predict(self, z_t, model_t, text):
        """z_t: (B, C, F', H', W'), model_t: (B,), text: (B, L, D) -> (B, C, F', H', W')."""
        return self.transformer(z_t, model_t, text, return_dict=False)[0]

