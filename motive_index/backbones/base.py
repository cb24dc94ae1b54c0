"""The backbone interface every model family implements (small ABC, one file per family)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from ..config import VideoSpec


class Backbone(ABC):
    """A video diffusion model seen from attribution: encode, noise, predict, and the scheduler's target.

    Attributes every family sets:
      ``transformer`` (the denoiser whose parameters we take gradients of), ``spec`` (the standard clip shape),
      ``temporal_factor``/``spatial_factor``/``first_frame_alone`` (the VAE's latent grid), ``family``.
    """

    family: str
    transformer: torch.nn.Module
    spec: VideoSpec
    temporal_factor: int
    spatial_factor: int
    first_frame_alone: bool
    device: torch.device

    @abstractmethod
    def to(self, device: str | torch.device) -> "Backbone": ...

    @abstractmethod
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 3, H, W) float in [0, 1] -> normalized latents (C, F', H', W'). No gradient."""

    @abstractmethod
    def encode_text(self, caption: str) -> torch.Tensor:
        """caption -> (L, text_dim) conditioning, cached per distinct caption. No gradient."""

    @abstractmethod
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(C, F', H', W') of a standard clip's latents."""

    @abstractmethod
    def noisy_input(self, z0: torch.Tensor, noise: torch.Tensor, timestep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noise (B, C, F', H', W') latents at training timestep index(es) ``timestep`` (int or (B,) tensor).

        Returns (z_t, the model's timestep input (B,), the loss target), all batched."""

    @abstractmethod
    def predict(self, z_t: torch.Tensor, model_t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The transformer's output, batched: z_t (B, C, F', H', W'), model_t (B,), text (B, L, D)."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What makes this model this model: family, config hash, weights hash."""

    @abstractmethod
    def invalidate_identity(self) -> None:
        """Called after the weights change (fine-tuning), so identity() is recomputed."""

    @abstractmethod
    def save_pretrained(self, out_dir: str | Path) -> Path: ...
