"""The tiny Wan preset's VAE: a small AutoencoderKLWan trained on synthetic clips, shipped in the package.

The ``tiny`` preset used to carry a VAE with random weights: a decoded clip was noise, so nothing the tiny model
generated could be looked at or attributed back. This one is trained (``python tools/train_tiny_vae.py``,
seeded, a few minutes on a CPU) on clips of the kinds the demo and tests use: the synthetic shapes of
``synthetic.render_clip`` (every motion class, texture and camera) and camera pans over real photographs
(``synthetic.render_pan``), plus frozen clips. Its weights (0.5 M parameters, 2 MB) live in
``motive_index/backbones/tiny_vae/`` as a diffusers folder (``config.json`` with the measured latent scaling,
``diffusion_pytorch_model.safetensors``) beside ``train.json``, which records how it was trained and what it
scored on held-out clips.

Architecture (``TINY_VAE_CONFIG``): the Wan 2.2 layout of AutoencoderKLWan (``patch_size=2``, residual
up/down-sampling), which works on a 2x2-patchified grid: three stages instead of four, 3-4x cheaper to encode
than the Wan 2.1 layout at the same latent grid; a decoder twice as wide as the encoder (only the encoder runs in
a build or a query). 48 latent channels as Wan 2.2's VAE has (16, as Wan2.1's, learned slower at the same cost
per step: ``benchmarks/vae_sweep.py``); 4x temporal and 8x spatial compression: a 17x64x64 clip is 48x5x8x8
latents (13.6x fewer values).

How well it reconstructs (``benchmarks/vae.py``) is short of the 28 dB the issue asked for: about 26 dB on
held-out synthetic shapes and 20-22 dB on pans over photos, blurred; the flow of a reconstruction correlates
0.82 with the input's on shapes (0.69 on pans over a photo never trained on): it shows where and how a
generated clip moves, not its texture.

This module also gives the clips and measures the training script, ``benchmarks/vae.py`` and the tests share:
:func:`vae_clip` (one seeded clip of a kind), :func:`reconstruct`, :func:`psnr`, :func:`flow_correlation` and
:func:`latent_motion`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

TINY_VAE_DIR = Path(__file__).with_name("tiny_vae")
TINY_VAE_CONFIG = dict(base_dim=8, decoder_base_dim=16, z_dim=48, dim_mult=[1, 2, 2], num_res_blocks=1,
                       temperal_downsample=[True, True], is_residual=True, patch_size=2, in_channels=12,
                       out_channels=12)
#: photo textures the VAE trains on; HELD_OUT_TEXTURES are only ever used to measure it
TRAIN_TEXTURES = ("gravel", "grass", "brick", "astronaut", "coffee")
HELD_OUT_TEXTURES = ("chelsea",)
KINDS = ("shapes", "pan", "frozen")
HELD_OUT_SEED = 10**6  # held-out clips' seeds start here; training clips' stay below
SIZE = 64


def new_tiny_vae(seed: int = 0):
    """An untrained AutoencoderKLWan of the tiny layout, seeded (what the training script starts from)."""
    import torch
    from diffusers import AutoencoderKLWan

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        z = TINY_VAE_CONFIG["z_dim"]
        return AutoencoderKLWan(**TINY_VAE_CONFIG, latents_mean=[0.0] * z, latents_std=[1.0] * z)


def legacy_tiny_vae(seed: int = 0):
    """The VAE the tiny preset had before this one: the Wan 2.1 layout (four stages, no patchify, 4 latent
    channels), untrained, seeded. For comparisons with code older than the trained VAE, which cannot read the
    Wan 2.2 layout (``benchmarks/distributed.py``), and as the cost baseline of ``benchmarks/vae.py``."""
    import torch
    from diffusers import AutoencoderKLWan

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                                temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                latents_std=[1.0] * 4)


def load_tiny_vae(folder: str | Path = TINY_VAE_DIR):
    """The trained tiny VAE shipped in the package (or one the training script wrote to ``folder``)."""
    from diffusers import AutoencoderKLWan

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"the tiny preset's trained VAE is missing from {str(folder)!r}; rebuild it with "
                             f"`python tools/train_tiny_vae.py --out {folder}`")
    try:
        return AutoencoderKLWan.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # diffusers raises many kinds; say which file is wrong
        raise ModelLoadError(f"could not load the tiny VAE from {str(folder)!r} ({type(e).__name__}: {e})") from e


def training_record(folder: str | Path = TINY_VAE_DIR) -> dict:
    """``train.json``: the training script's arguments, the weights' sha256 and the held-out scores."""
    p = Path(folder) / "train.json"
    return json.loads(p.read_text()) if p.is_file() else {}


# ---------------------------------------------------------------------------------------------- the clips


def _photo(name: str, rng: np.random.Generator) -> np.ndarray:
    """A photo texture at a random scale: a 64 px view then shows a fifth to a half of the photo's width, as a
    low-resolution video shows a scene (at full size, 64 px of a 512 px photo is a patch of bare texture)."""
    import cv2

    from ..synthetic import photo_texture

    img = photo_texture(name)
    scale = float(rng.uniform(0.12, 0.35))
    return cv2.resize(img, (max(64, int(img.shape[1] * scale)), max(64, int(img.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)


def vae_clip(kind: str, seed: int, frames: int = 17, textures: tuple[str, ...] = TRAIN_TEXTURES,
             size: int = SIZE) -> np.ndarray:
    """One seeded clip, uint8 (frames, size, size, 3): ``shapes`` (``render_clip``: a random motion class, shape,
    colour, texture and camera), ``pan`` (``render_pan`` over one of ``textures`` with a sprite cut from
    another, random speed 0-6 px/frame, direction, zoom and sprite) or ``frozen`` (one frame of either, held)."""
    from ..synthetic import COLOURS, MOTIONS, SHAPES, TEXTURES, PanSpec, SynthSpec, render_clip, render_pan

    rng = np.random.default_rng([seed, KINDS.index(kind)])
    base = kind
    if kind == "frozen":
        base = "shapes" if rng.random() < 0.5 else "pan"
    if base == "shapes":
        spec = SynthSpec(motion=str(rng.choice(MOTIONS)), shape=str(rng.choice(SHAPES)),
                         colour=str(rng.choice(list(COLOURS))), texture=str(rng.choice(TEXTURES)), frames=frames,
                         height=size, width=size, seed=int(rng.integers(2**31)),
                         camera="pan" if rng.random() < 0.3 else "static")
        clip, _ = render_clip(spec)
    else:
        names = list(textures)
        world = _photo(str(rng.choice(names)), rng)
        sprite = _photo(str(rng.choice(list(textures) + list(TRAIN_TEXTURES))), rng)
        spec = PanSpec(frames=frames, fps=8.0, height=size, width=size, speed=float(rng.uniform(0, 6)),
                       direction=float(rng.uniform(0, 360)), zoom=float(rng.choice([0.0, rng.uniform(-0.02, 0.03)])),
                       sprite=float(rng.uniform(0.08, 0.22)), sprite_speed=float(rng.uniform(0, 4)))
        clip, _, _ = render_pan(world, sprite, spec)
    if kind == "frozen":
        clip = np.repeat(clip[:1], frames, axis=0)
    return clip


# ---------------------------------------------------------------------------------------------- measures


def reconstruct(vae, clips: np.ndarray) -> tuple[np.ndarray, "object"]:
    """uint8 (B, T, H, W, 3) clips through the VAE (latent mode, then decoded): (uint8 reconstructions, the
    latent modes (B, C, F', H', W'))."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
        x = x.to(next(vae.parameters()).device)
        z = vae.encode(x).latent_dist.mode()
        y = vae.decode(z).sample
        out = ((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()
    return out, z.cpu()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 arrays of one shape (over all their values)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _flows(clip: np.ndarray) -> np.ndarray:
    """DIS flow between consecutive frames, (T-1, H, W, 2) float32."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip]
    return np.stack([dis.calc(a, b, None) for a, b in zip(grey[:-1], grey[1:])])


def flow_correlation(clip: np.ndarray, recon: np.ndarray) -> float:
    """Pearson correlation of the optical flow (both components, every pixel and frame pair) of a clip and of its
    reconstruction; NaN when the clip's flow is constant (a frozen clip)."""
    a, b = _flows(clip).reshape(-1), _flows(recon).reshape(-1)
    if a.std() < 1e-6 or b.std() < 1e-6:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def latent_motion(z) -> float:
    """How much a clip's latents change over time: the mean absolute difference between consecutive latent
    frames after the first (the first latent frame encodes the first frame alone), over the latents' std.
    A frozen clip's is near 0."""
    z = np.asarray(z, np.float64)                      # (C, F', H', W')
    tail = z[:, 1:]
    return float(np.abs(np.diff(tail, axis=1)).mean() / (z.std() + 1e-8))


def train_step(vae, opt, clips: np.ndarray, kl: float, sample_seed: int) -> tuple[float, float]:
    """One step of the training loss on uint8 (B, T, H, W, 3) clips (``tools/train_tiny_vae.py``,
    ``benchmarks/vae_sweep.py``): L1 + MSE of the reconstruction from a seeded posterior sample plus ``kl`` times
    the KL term, gradients clipped to norm 1. Returns (loss, the batch's PSNR in dB)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    post = vae.encode(x).latent_dist
    y = vae.decode(post.sample(generator=torch.Generator().manual_seed(sample_seed))).sample
    loss = (y - x).abs().mean() + ((y - x) ** 2).mean() + kl * post.kl().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    opt.step()
    mse = float(((y.detach().clamp(-1, 1) - x) ** 2).mean()) / 4   # in [0, 1] units
    return float(loss.detach()), 10 * math.log10(1 / max(mse, 1e-10))


# ---------------------------------------------------------------------------------------------- data sets


def training_pool(n: int, frames: int, seed: int) -> np.ndarray:
    """``n`` training clips (N, frames, 64, 64, 3) uint8: 45% shapes, 45% pans over TRAIN_TEXTURES, 10% frozen."""
    kinds = ["shapes"] * 9 + ["pan"] * 9 + ["frozen"] * 2
    return np.stack([vae_clip(kinds[i % len(kinds)], seed * 10**5 + i, frames) for i in range(n)])


def held_out_sets(n_per_kind: int = 4, frames: int = 17) -> dict[str, np.ndarray]:
    """Clips never trained on (seeds from HELD_OUT_SEED), at the tiny standard shape: shapes, pans over a held-out
    photo, pans over the training photos (other views and motions), frozen clips."""
    s = HELD_OUT_SEED
    return {"shapes": np.stack([vae_clip("shapes", s + i, frames) for i in range(n_per_kind)]),
            "pan (held-out photo)": np.stack([vae_clip("pan", s + i, frames, textures=HELD_OUT_TEXTURES)
                                              for i in range(n_per_kind)]),
            "pan (training photos)": np.stack([vae_clip("pan", s + 100 + i, frames) for i in range(n_per_kind)]),
            "frozen": np.stack([vae_clip("frozen", s + i, frames) for i in range(n_per_kind)])}


def score(vae, sets: dict[str, np.ndarray]) -> dict:
    """Per set: PSNR (mean and min over clips), flow correlation (mean over moving clips; None for a set of
    frozen clips) and each clip's latent motion."""
    out = {}
    for name, clips in sets.items():
        recon, z = reconstruct(vae, clips)
        ps = [psnr(c, r) for c, r in zip(clips, recon)]
        corr = [c for c in (flow_correlation(c, r) for c, r in zip(clips, recon)) if not math.isnan(c)]
        out[name] = {"psnr_db": float(np.mean(ps)), "psnr_min_db": float(min(ps)),
                     "flow_corr": float(np.mean(corr)) if corr else None,
                     "latent_motion": [latent_motion(zi) for zi in z.numpy()]}
    return out
