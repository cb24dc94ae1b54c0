"""The CogVideoX family (CogVideoX-2b/5b T2V) through diffusers: CogVideoXTransformer3DModel, AutoencoderKLCogVideoX,
a T5 text encoder, and the CogVideoX DDIM/DPM scheduler's noise schedule.

Loads a diffusers-format directory (transformer/, vae/, text_encoder/, tokenizer/, scheduler/, model_index.json;
what THUDM/CogVideoX-*b ships and what :meth:`CogVideoXBackbone.save_pretrained` writes) and builds a ``tiny``
preset in code with random weights: the byte-level tokenizer of the Wan family and a 2-layer T5 encoder stand in
for T5-v1.1-XXL, so nothing is downloaded. The optional ``motive_index.json`` beside them holds the standard clip
shape and text length; without it the shape is the one the transformer was configured for (``sample_frames``
frames, ``sample_height``/``sample_width`` latents times the VAE's spatial factor: 49 frames at 480x720 for
CogVideoX-2b/5b) at 8 fps, and the text length is the transformer's ``max_text_seq_length`` (226).

How CogVideoX differs from Wan, and where that is handled:

- **Noising is not flow matching.** CogVideoX trains with a discrete DDPM schedule (``alphas_cumprod`` from the
  scheduler's ``beta_schedule``, then its ``snr_shift_scale`` SNR shift, then optionally zero-terminal-SNR
  rescaling) and v-prediction: ``z_t = sqrt(a_t) z0 + sqrt(1 - a_t) eps`` and target ``v = sqrt(a_t) eps -
  sqrt(1 - a_t) z0``. :meth:`noisy_input` builds the scheduler from the saved config and calls its own
  ``add_noise`` / ``get_velocity``, so every schedule setting in ``scheduler_config.json`` is honoured. The
  model's timestep input is the integer training index itself (no sigma rescaling). ``epsilon`` and ``sample``
  prediction types are honoured too (target ``eps`` or ``z0``).
- **Latent layout.** The transformer takes ``(B, F', C, H', W')``; :meth:`predict` permutes in and out so the
  interface stays ``(B, C, F', H', W')`` like every other family.
- **Positions.** CogVideoX-5b uses 3-D rotary embeddings that the *pipeline* computes and passes in; we compute
  them exactly as ``CogVideoXPipeline._prepare_rotary_positional_embeddings`` does, once per standard shape.
  CogVideoX-2b uses sin-cos embeddings inside the patch embedding, which require the text length to equal the
  transformer's ``max_text_seq_length``; that is checked at load.
- **Latent scaling.** CogVideoX's VAE has no per-channel mean/std; latents are ``mode * scaling_factor`` (minus
  ``shift_factor`` first when one is configured). The tiny preset calibrates ``scaling_factor`` to 1/std of a few
  synthetic clips' latents, as the real one ships a measured value.
- **Text.** As ``CogVideoXPipeline`` does: T5 run on the padded ids without an attention mask, padding kept.
"""

from __future__ import annotations

import torch

from ..config import VideoSpec
from ..errors import ModelLoadError
from .base import DiffusersBackbone, byte_tokenizer
from .specs import COGVIDEOX_FPS as DEFAULT_FPS, COGVIDEOX_TEXT_LEN as DEFAULT_TEXT_LEN  # noqa: F401
from .specs import TINY_SPEC, cogvideox_spec as default_spec, cogvideox_vae_factors as _vae_factors

TINY_TEXT_LEN = 64
_PREDICTION_TYPES = ("v_prediction", "epsilon", "sample")
# The CogVideoX-2b scheduler config (THUDM/CogVideoX-2b/scheduler/scheduler_config.json); 5b differs only in
# snr_shift_scale=1.0. Used by the tiny preset and when a directory has no scheduler config.
COGVIDEOX_SCHEDULER = {"_class_name": "CogVideoXDDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
                       "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
                       "set_alpha_to_one": True, "steps_offset": 0, "prediction_type": "v_prediction",
                       "rescale_betas_zero_snr": True, "snr_shift_scale": 3.0, "timestep_spacing": "trailing"}


def _make_scheduler(cfg: dict):
    import diffusers

    name = cfg.get("_class_name", "CogVideoXDDIMScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not all(hasattr(cls, a) for a in ("add_noise", "get_velocity")):
        raise ModelLoadError(f"scheduler {name!r}: CogVideoX needs a DDPM-style scheduler with add_noise and "
                             f"get_velocity (CogVideoXDDIMScheduler or CogVideoXDPMScheduler)")
    try:
        sched = cls.from_config(cfg)
    except Exception as e:
        raise ModelLoadError(f"scheduler {name!r}: could not build it from its config ({type(e).__name__}: {e})") from e
    if not hasattr(sched, "alphas_cumprod"):
        raise ModelLoadError(f"scheduler {name!r}: no alphas_cumprod; CogVideoX is a DDPM-schedule model")
    return sched


class CogVideoXBackbone(DiffusersBackbone):
    family = "cogvideox"
    pipeline_class = "CogVideoXPipeline"
    default_scheduler_class = "CogVideoXDDIMScheduler"

    def __init__(self, transformer, vae, text_encoder, tokenizer, scheduler_config: dict,
                 spec: VideoSpec, text_max_length: int, source: str = "in-memory"):
        self._init_parts(transformer, vae, text_encoder, tokenizer, scheduler_config, spec, text_max_length, source)
        self.scheduler = _make_scheduler(self.scheduler_config)
        self.prediction_type = self.scheduler.config.prediction_type
        if self.prediction_type not in _PREDICTION_TYPES:
            raise ModelLoadError(f"scheduler prediction_type {self.prediction_type!r}: expected one of "
                                 f"{_PREDICTION_TYPES} (CogVideoX is 'v_prediction')")
        self.num_train_timesteps = int(self.scheduler.config.num_train_timesteps)
        vcfg = vae.config
        self.temporal_factor, self.spatial_factor = _vae_factors(vcfg)
        self.first_frame_alone = True   # the causal VAE always encodes frame 0 on its own
        self.z_dim = int(vcfg.latent_channels)
        self._check()
        self._rotary: tuple[torch.Tensor, torch.Tensor] | None = None

    # ----- construction -------------------------------------------------------------------------------------
    def _check(self) -> None:
        s, tf, tcfg = self.spec, self.temporal_factor, self.transformer.config
        if int(tcfg.in_channels) != self.z_dim:
            raise ModelLoadError(f"transformer in_channels={tcfg.in_channels} != VAE latent_channels={self.z_dim}: "
                                 f"image-to-video CogVideoX models are not supported")
        if (s.frames - 1) % tf:
            raise ModelLoadError(f"standard frames={s.frames} does not fit this VAE: need 1 + {tf}*k frames")
        p_t = tcfg.patch_size_t
        if p_t and (1 + (s.frames - 1) // tf) % p_t:
            raise ModelLoadError(f"standard frames={s.frames} gives {1 + (s.frames - 1) // tf} latent frames, not a "
                                 f"multiple of the transformer's temporal patch {p_t}")
        for name, v in (("height", s.height), ("width", s.width)):
            if v % (self.spatial_factor * tcfg.patch_size):
                raise ModelLoadError(f"standard {name}={v} must be a multiple of {self.spatial_factor * tcfg.patch_size}"
                                     f" (VAE factor {self.spatial_factor} x patch {tcfg.patch_size})")
        if not tcfg.use_rotary_positional_embeddings and self.text_max_length != tcfg.max_text_seq_length:
            raise ModelLoadError(f"text_max_length={self.text_max_length}: this CogVideoX transformer uses sin-cos "
                                 f"positions laid out for max_text_seq_length={tcfg.max_text_seq_length} tokens")

    @classmethod
    def tiny(cls, seed: int = 0, spec: VideoSpec = TINY_SPEC, layers: int = 2, heads: int = 4,
             head_dim: int = 32, rotary: bool = True, calibration: dict | None = None) -> "CogVideoXBackbone":
        """A ~0.6 M-parameter CogVideoX transformer (5b-style rotary positions unless ``rotary=False``, which gives
        the 2b-style sin-cos ones), a ~0.1 M-parameter CogVideoX VAE and a 2-layer T5, seeded, random weights.

        ``calibration``: the VAE's scaling factor as :meth:`calibration` gave it for this seed (a preset's weights
        record keeps it); without it, it is measured on synthetic clips."""
        from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
        from transformers import T5Config, T5EncoderModel

        tokenizer = byte_tokenizer()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            vae = AutoencoderKLCogVideoX(block_out_channels=(8, 16, 16, 16), latent_channels=4, layers_per_block=1,
                                         norm_num_groups=4, temporal_compression_ratio=4,
                                         sample_height=spec.height, sample_width=spec.width)
            text_cfg = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                relative_attention_num_buckets=8, relative_attention_max_distance=32,
                                feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                                decoder_start_token_id=0)
            text_encoder = T5EncoderModel(text_cfg)
            tf, sf = _vae_factors(vae.config)
            transformer = CogVideoXTransformer3DModel(
                num_attention_heads=heads, attention_head_dim=head_dim, in_channels=4, out_channels=4,
                time_embed_dim=64, text_embed_dim=32, num_layers=layers, patch_size=2,
                sample_height=spec.height // sf, sample_width=spec.width // sf, sample_frames=spec.frames,
                temporal_compression_ratio=tf, max_text_seq_length=TINY_TEXT_LEN,
                use_rotary_positional_embeddings=rotary)
        backbone = cls(transformer, vae, text_encoder, tokenizer, COGVIDEOX_SCHEDULER, spec, TINY_TEXT_LEN)
        if calibration is not None:
            scale = float(calibration["scaling_factor"])
            if not scale > 0:
                raise ValueError(f"scaling_factor={scale}: need a positive number")
            backbone.vae.register_to_config(scaling_factor=scale)
        else:
            backbone._calibrate_latents(seed)
        return backbone

    def calibration(self) -> dict:
        return {"scaling_factor": float(self.vae.config.scaling_factor)}

    def _calibrate_latents(self, seed: int) -> None:
        """Set the tiny VAE's scaling_factor to 1/std of a few synthetic clips' latents (real CogVideoX ships a
        measured one, 1.15258426 for 2b)."""
        std = float(self._calibration_latents(seed).std().clamp_min(1e-3))
        self.vae.register_to_config(scaling_factor=1.0 / std)

    @classmethod
    def _classes(cls):
        from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
        from transformers import T5EncoderModel

        return {"transformer": ("diffusers", CogVideoXTransformer3DModel),
                "vae": ("diffusers", AutoencoderKLCogVideoX), "text_encoder": ("transformers", T5EncoderModel)}

    @classmethod
    def _defaults(cls, parts, scheduler):
        tcfg = parts["transformer"].config
        return (scheduler if scheduler is not None else dict(COGVIDEOX_SCHEDULER),
                default_spec(dict(tcfg), dict(parts["vae"].config)), int(tcfg.max_text_seq_length))

    # ----- the interface ------------------------------------------------------------------------------------
    def _moved(self) -> None:
        self._rotary = None

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        z = self._vae_mode(frames)                                                      # (C, F', H', W')
        if normalize:
            shift = self.vae.config.shift_factor
            if shift is not None:
                z = z - shift
            z = z * self.vae.config.scaling_factor
        return z

    @torch.no_grad()
    def _encode_text(self, caption: str) -> torch.Tensor:
        enc = self.tokenizer([caption], padding="max_length", max_length=self.text_max_length, truncation=True,
                             add_special_tokens=True, return_tensors="pt")
        # as CogVideoXPipeline._get_t5_prompt_embeds: no attention mask, padding embeddings kept
        return self.text_encoder(enc.input_ids.to(self.device))[0][0]   # (L, text_dim)

    def alpha_bar(self, timestep) -> torch.Tensor:
        """The scheduler's alphas_cumprod at training timestep index(es) (after its SNR shift / rescaling)."""
        return self.scheduler.alphas_cumprod.to("cpu", torch.float64)[torch.as_tensor(timestep, dtype=torch.long)]

    def noisy_input(self, z0, noise, timestep):
        """z0, noise: (B, C, F', H', W'); timestep: an int or a (B,) tensor of training timestep indices in
        [0, num_train_timesteps). Uses the scheduler's own add_noise / get_velocity. The model timestep input is
        the index itself."""
        t = torch.as_tensor(timestep, device=z0.device)
        if t.is_floating_point():
            t = t.round()
        t = t.to(torch.long).reshape(-1).expand(z0.shape[0])
        if bool((t < 0).any()) or bool((t >= self.num_train_timesteps).any()):
            raise ValueError(f"timestep {timestep}: CogVideoX's discrete schedule takes indices in "
                             f"[0, {self.num_train_timesteps - 1}]")
        z_t = self.scheduler.add_noise(z0, noise, t)
        if self.prediction_type == "v_prediction":
            target = self.scheduler.get_velocity(z0, noise, t)
        elif self.prediction_type == "epsilon":
            target = noise
        else:
            target = z0
        return z_t, t.to(torch.float32), target

    def _rotary_emb(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """3-D RoPE for the standard latent grid, as CogVideoXPipeline._prepare_rotary_positional_embeddings."""
        cfg = self.transformer.config
        if not cfg.use_rotary_positional_embeddings:
            return None
        if self._rotary is None:
            from diffusers.models.embeddings import get_3d_rotary_pos_embed
            from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

            _, frames, lh, lw = self.latent_shape()
            p, p_t = cfg.patch_size, cfg.patch_size_t
            grid_h, grid_w = lh // p, lw // p
            base_w, base_h = cfg.sample_width // p, cfg.sample_height // p
            if p_t is None:  # CogVideoX 1.0
                crops = get_resize_crop_region_for_grid((grid_h, grid_w), base_w, base_h)
                self._rotary = get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=crops,
                                                       grid_size=(grid_h, grid_w), temporal_size=frames,
                                                       device=self.device)
            else:            # CogVideoX 1.5
                self._rotary = get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=None,
                                                       grid_size=(grid_h, grid_w),
                                                       temporal_size=(frames + p_t - 1) // p_t, grid_type="slice",
                                                       max_size=(base_h, base_w), device=self.device)
        return self._rotary

    def predict(self, z_t, model_t, text):
        """z_t: (B, C, F', H', W'), model_t: (B,), text: (B, L, D) -> (B, C, F', H', W')."""
        out = self.transformer(hidden_states=z_t.permute(0, 2, 1, 3, 4), encoder_hidden_states=text,
                               timestep=model_t, image_rotary_emb=self._rotary_emb(), return_dict=False)[0]
        return out.permute(0, 2, 1, 3, 4)
