"""The standard clip shapes and file names of the model families: constants only, no torch or diffusers import, so
``read_spec`` and the CLI's light commands can use them without loading a model library."""

from __future__ import annotations

import math

from ..config import VideoSpec

PAPER_SPEC = VideoSpec(frames=81, fps=16.0, height=480, width=832)
PAPER_TEXT_LEN = 512
TINY_SPEC = VideoSpec(frames=17, fps=8.0, height=64, width=64)
TINY_TEXT_LEN = 64
MOTIVE_CONFIG = "motive_index.json"

COGVIDEOX_FPS = 8.0          # CogVideoX 1.0 generates at 8 fps
COGVIDEOX_TEXT_LEN = 226     # CogVideoX's max_text_seq_length


def cogvideox_vae_factors(vcfg) -> tuple[int, int]:
    """(temporal, spatial) factors from a CogVideoX VAE's architecture: every block but the last halves space; the
    first log2(temporal_compression_ratio) of those also halve time (the causal first frame kept alone)."""
    n_down = len(vcfg["block_out_channels"]) - 1
    level = int(math.log2(int(vcfg["temporal_compression_ratio"])))
    return 2 ** min(level, n_down), 2 ** n_down


def cogvideox_spec(transformer_cfg: dict, vae_cfg: dict) -> VideoSpec:
    """The shape a CogVideoX transformer was configured for (its ``sample_*`` sizes are latent sizes)."""
    _, sf = cogvideox_vae_factors(vae_cfg)
    return VideoSpec(frames=int(transformer_cfg.get("sample_frames", 49)), fps=COGVIDEOX_FPS,
                     height=int(transformer_cfg.get("sample_height", 60)) * sf,
                     width=int(transformer_cfg.get("sample_width", 90)) * sf)
