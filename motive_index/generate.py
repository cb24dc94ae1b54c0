"""Sampling: generate a clip's latents from a caption with a flow-matching backbone (the Wan family).

The model predicts the flow-matching velocity ``v = ε - z0`` of ``z_σ = (1 - σ) z0 + σ ε``; so ``dz/dσ = v`` and
a sample is the Euler integral of that ODE from pure seeded noise at σ = 1 down to σ = 0, on the scheduler's
shifted grid (as diffusers' ``FlowMatchEulerDiscreteScheduler``: ``steps`` timesteps evenly spaced from
``num_train_timesteps`` down to 1, each mapped to σ by ``backbone.sigma`` (the shift), then σ = 0). No
classifier-free guidance: the models here are trained without dropping the caption, so there is no
unconditional branch to guide against.

:func:`decode_latents` turns latents into frames with the backbone's VAE. For the ``tiny`` preset that is the
trained tiny VAE (``backbones/tiny_vae.py``), so a tiny model fine-tuned on clips generates clips that can be
looked at, masked and queried like any video (``benchmarks/memorization.py``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .backbones import Backbone

__all__ = ["sample_latents", "sample_many", "sigma_schedule", "decode_latents", "generate_video"]

SUPPORTED_FAMILIES = ("wan",)


def _check_family(backbone: Backbone, what: str) -> None:
    family = getattr(backbone, "family", None)
    if family not in SUPPORTED_FAMILIES:
        raise NotImplementedError(f"{what}: model family {family!r} is not supported (supported: "
                                  f"{list(SUPPORTED_FAMILIES)}); only flow-matching Wan backbones are sampled here")


def sigma_schedule(backbone: Backbone, steps: int) -> torch.Tensor:
    """The (steps + 1,) float32 σ grid from 1 to 0: ``steps`` shifted training timesteps, then 0."""
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps={steps!r} is invalid; use an int >= 1")
    n = backbone.num_train_timesteps
    t = torch.linspace(float(n), 1.0, steps, dtype=torch.float64)          # (steps,) training timestep indices
    sig = backbone.sigma(t)                                                # (steps,) shifted, sig[0] = 1
    return torch.cat([sig, sig.new_zeros(1)]).to(torch.float32)            # (steps + 1,)


@torch.no_grad()
def sample_latents(backbone: Backbone, caption: str, steps: int = 20, seed: int = 0) -> torch.Tensor:
    """Euler-integrate the flow-matching ODE from seeded noise: normalized latents (C, F', H', W') on the CPU.

    ``caption`` conditions every step; ``seed`` seeds the initial noise (drawn on the CPU, so a seed gives the
    same sample on every device). Deterministic given the model, caption, steps and seed. Wan family only.
    """
    return sample_many(backbone, [caption], [seed], steps=steps)[0]


@torch.no_grad()
def sample_many(backbone: Backbone, captions: Sequence[str], seeds: Sequence[int], steps: int = 20,
                batch_size: int = 16) -> torch.Tensor:
    """:func:`sample_latents` for many (caption, seed) pairs, in batches: (B, C, F', H', W') on the CPU.

    Sample ``i`` starts from the noise of ``seeds[i]`` alone, so it is the same sample :func:`sample_latents`
    gives for ``(captions[i], seeds[i])`` (up to float rounding of the batched matmuls)."""
    _check_family(backbone, "sample_latents")
    captions, seeds = list(captions), [int(s) for s in seeds]
    if len(captions) != len(seeds) or not captions:
        raise ValueError(f"sample_many: {len(captions)} captions and {len(seeds)} seeds; need as many of each, "
                         f"at least one")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size={batch_size!r} is invalid; use an int >= 1")
    sig = sigma_schedule(backbone, steps)                                   # (steps + 1,)
    shape = backbone.latent_shape()
    noise = torch.stack([torch.randn(shape, generator=torch.Generator(device="cpu").manual_seed(s))
                         for s in seeds])                                   # (B, C, F', H', W')
    out = []
    was_training = backbone.transformer.training
    backbone.transformer.eval()
    try:
        for b0 in range(0, len(seeds), batch_size):
            z = noise[b0:b0 + batch_size].to(backbone.device)               # (b, C, F', H', W') at σ = 1
            text = torch.stack([backbone.encode_text(c) for c in captions[b0:b0 + batch_size]])   # (b, L, D)
            for i in range(steps):
                s, s_next = float(sig[i]), float(sig[i + 1])
                model_t = torch.full((z.shape[0],), s * backbone.num_train_timesteps, device=backbone.device)
                v = backbone.predict(z, model_t, text).float()              # (b, C, F', H', W') ≈ ε - z0
                z = z + (s_next - s) * v                                    # σ decreases: towards the data
            out.append(z.to("cpu", torch.float32))
    finally:
        backbone.transformer.train(was_training)
    return torch.cat(out)                                                   # (B, C, F', H', W')


def generate_video(backbone: Backbone, caption: str, steps: int = 20, seed: int = 0) -> np.ndarray:
    """A clip sampled from ``caption`` (:func:`sample_latents`) and decoded (:func:`decode_latents`): uint8
    (T, H, W, 3) at the backbone's standard shape, to be written at ``backbone.spec.fps``. Deterministic given
    the model, caption, steps and seed. An untrained model (the ``tiny`` preset as built) gives noise; fine-tune
    it first (``motive-index finetune``)."""
    return decode_latents(backbone, sample_latents(backbone, caption, steps=steps, seed=seed))


@torch.no_grad()
def decode_latents(backbone: Backbone, z: torch.Tensor) -> np.ndarray:
    """Normalized latents (C, F', H', W') -> uint8 frames (T, H, W, 3) through the backbone's VAE. Wan only."""
    _check_family(backbone, "decode_latents")
    z = z.to(backbone.device, torch.float32)
    raw = z * backbone._latents_std + backbone._latents_mean               # (C, F', H', W') the VAE's own scale
    x = backbone.vae.decode(raw[None]).sample[0]                            # (3, T, H, W) in about [-1, 1]
    frames = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)        # (3, T, H, W)
    return frames.permute(1, 2, 3, 0).cpu().numpy()                         # (T, H, W, 3)
