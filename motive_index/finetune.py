"""Fine-tune a backbone's transformer on a manifest's clips with the ordinary flow-matching loss.

So the demo and evaluations have a model whose gradients mean something. The VAE and text encoder stay frozen;
each clip is decoded and encoded once, then every step draws a batch of clips, a timestep each and fresh noise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .backbones import Backbone
from .errors import IndexStateError, MotiveIndexError
from .types import Clip
from .video import frames_to_tensor, load_video


@dataclass
class FinetuneReport:
    steps: int
    clips_used: int
    clips_failed: dict[str, str]
    first_loss: float
    last_loss: float
    seconds: float


def finetune(backbone: Backbone, clips: Sequence[Clip], steps: int = 300, lr: float = 1e-3, batch_size: int = 8,
             seed: int = 0, progress: Callable[[int, int, str], None] | None = None) -> FinetuneReport:
    """Train ``backbone.transformer`` in place. ``progress(i, n, stage)`` is called per clip and per step."""
    if steps < 1:
        raise ValueError(f"steps={steps} is invalid: need at least 1")
    if not lr > 0:
        raise ValueError(f"lr={lr} is invalid: need a positive learning rate")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is invalid: need at least 1")
    t_start = time.perf_counter()
    latents, texts, failed = [], [], {}
    for i, clip in enumerate(clips):
        try:
            video = load_video(clip.path, backbone.spec, clip.start_sec, clip.end_sec)
        except MotiveIndexError as e:  # a bad clip is reported and skipped; training goes on
            failed[clip.clip_id] = str(e)
        else:
            latents.append(backbone.encode_video(frames_to_tensor(video.frames)))
            texts.append(backbone.encode_text(clip.caption))
        if progress:
            progress(i + 1, len(clips), "encode")
    if not latents:
        reasons = "; ".join(f"{cid}: {why}" for cid, why in list(failed.items())[:5])
        raise IndexStateError(f"no usable clips to fine-tune on: all {len(failed)} failed ({reasons})")
    z_all = torch.stack(latents)              # (N, C, F', H', W')
    c_all = torch.stack(texts)                # (N, L, D)
    n = z_all.shape[0]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model = backbone.transformer
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    first = last = float("nan")
    try:
        for step in range(steps):
            idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
            z0 = z_all[idx]
            noise = torch.randn(z0.shape, generator=gen).to(z0.device)
            t = torch.randint(1, backbone.num_train_timesteps, (z0.shape[0],), generator=gen)
            z_t, model_t, target = backbone.noisy_input(z0, noise, t)
            pred = backbone.predict(z_t, model_t, c_all[idx])
            loss = ((pred.float() - target) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            last = float(loss.item())
            if step == 0:
                first = last
            if progress:
                progress(step + 1, steps, f"train loss {last:.4f}")
    finally:
        model.eval()
        for p in params:
            p.grad = None
        backbone.invalidate_identity()
    return FinetuneReport(steps=steps, clips_used=n, clips_failed=failed, first_loss=first, last_loss=last,
                          seconds=time.perf_counter() - t_start)
