"""Per-clip gradients: the single-sample estimator, the motion-weighted loss, streamed into the projector.

For every clip and every query alike: standardize -> motion weight on the latent grid -> VAE latents z0 ->
z_t = (1-σ) z0 + σ ε at one fixed timestep with one seeded ε -> L = mean(W (model(z_t, t, c) - (ε - z0))²) ->
∇θ L over the transformer's parameters -> projection -> unit vector.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .backbones import Backbone
from .config import EstimatorConfig, MaskConfig, ProjectionConfig
from .errors import GradientError
from .loss import motion_weighted_loss
from .motion import make_flow_estimator, motion_mask, to_latent_grid
from .projection import make_projector, unit
from .video import frames_to_tensor, load_video

FORMAT_VERSION = 1


@dataclass
class PreparedClip:
    """Everything the gradient of one clip needs, computed once (no gradient flows through any of it)."""

    name: str
    latents: torch.Tensor       # (C, F', H', W') normalized VAE latents
    weight: torch.Tensor        # (F', H', W') motion weight on the latent grid
    text: torch.Tensor          # (L, text_dim) caption conditioning
    metadata: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


class GradientEngine:
    """Turns clips into unit influence vectors under one fixed set of settings (the fingerprint)."""

    def __init__(self, backbone: Backbone, mask: MaskConfig = MaskConfig(),
                 estimator: EstimatorConfig = EstimatorConfig(), projection: ProjectionConfig = ProjectionConfig()):
        self.backbone, self.mask, self.estimator, self.projection_cfg = backbone, mask, estimator, projection
        self.params = [p for _, p in backbone.transformer.named_parameters() if p.requires_grad]
        self.num_params = sum(p.numel() for p in self.params)
        if self.num_params == 0:
            raise ValueError("the transformer has no trainable parameters to take gradients of")
        self.projector = make_projector(projection, self.num_params)
        self.flow = make_flow_estimator(mask, device=str(backbone.device)) if mask.kind == "flow" else None
        gen = torch.Generator(device="cpu").manual_seed(estimator.noise_seed)
        # One noise tensor, drawn on the CPU so it is the same on every device, shared by all clips and queries.
        self.noise = torch.randn(backbone.latent_shape(), generator=gen).to(backbone.device)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that makes two vectors comparable."""
        mask = self.mask.to_dict()
        if self.mask.kind == "flow" and self.mask.flow == "learned":  # the flow model's weights, not its path
            mask["flow_model"] = _file_sha256(self.mask.flow_model)
        return {"format": FORMAT_VERSION, "model": self.backbone.identity(), "params": "all",
                "video": self.backbone.spec.to_dict(), "mask": mask,
                "estimator": self.estimator.to_dict(), "projection": self.projection_cfg.to_dict(),
                "normalize": "l2"}

    def prepare(self, path: str, caption: str = "", start_sec: float | None = None,
                end_sec: float | None = None, name: str | None = None) -> PreparedClip:
        """Decode, standardize, mask, encode. Raises VideoError on bad video."""
        t0 = time.perf_counter()
        video = load_video(path, self.backbone.spec, start_sec=start_sec, end_sec=end_sec)
        t1 = time.perf_counter()
        mm = motion_mask(video.frames, self.mask, self.flow)
        bb = self.backbone
        w = to_latent_grid(mm.weight, bb.temporal_factor, bb.spatial_factor, bb.first_frame_alone)
        t2 = time.perf_counter()
        z0 = bb.encode_video(frames_to_tensor(video.frames))
        t3 = time.perf_counter()
        text = bb.encode_text(caption or "")
        t4 = time.perf_counter()
        meta = dict(video.metadata())
        meta.update(static=bool(mm.static))
        return PreparedClip(name=name or str(path), latents=z0, weight=torch.from_numpy(w).to(bb.device),
                            text=text, metadata=meta,
                            timings={"decode": t1 - t0, "flow": t2 - t1, "vae": t3 - t2, "text": t4 - t3})

    def vector(self, clip: PreparedClip) -> np.ndarray:
        """The clip's unit influence vector (dim,) float32. Raises GradientError on a NaN/inf/zero gradient."""
        bb = self.backbone
        t0 = time.perf_counter()
        z_t, model_t, target = bb.noisy_input(clip.latents[None], self.noise[None], self.estimator.timestep)
        for p in self.params:
            p.grad = None
        with torch.enable_grad():
            pred = bb.predict(z_t, model_t, clip.text[None])
            loss = motion_weighted_loss(pred[0], target[0], clip.weight)
            if not torch.isfinite(loss):
                raise GradientError(clip.name, f"loss is {loss.item()} (not finite)")
            loss.backward()
        t1 = time.perf_counter()
        acc = self.projector.accumulator(bb.device)
        finite = torch.ones((), dtype=torch.bool, device=bb.device)
        for p in self.params:  # a fixed order: named_parameters()
            g = p.grad if p.grad is not None else torch.zeros_like(p)
            finite &= torch.isfinite(g).all()  # no device sync per parameter
            acc.feed(g)
            p.grad = None
        if not bool(finite):
            raise GradientError(clip.name, "gradient has NaN or inf entries")
        try:
            v = unit(acc.result())
        except FloatingPointError as e:
            raise GradientError(clip.name, f"projected gradient: {e}") from e
        t2 = time.perf_counter()
        clip.timings.update(fwd_bwd=t1 - t0, projection=t2 - t1)
        clip.metadata["loss"] = float(loss.item())
        return v.detach().to("cpu", torch.float32).numpy()

    def embed(self, path: str, caption: str = "", start_sec=None, end_sec=None,
              name: str | None = None) -> tuple[np.ndarray, PreparedClip]:
        clip = self.prepare(path, caption, start_sec, end_sec, name)
        return self.vector(clip), clip
