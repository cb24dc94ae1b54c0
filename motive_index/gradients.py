"""Per-clip gradients: the single-sample estimator, the motion-weighted loss, streamed into the projector.

For every clip and every query alike: standardize -> motion weight on the latent grid -> VAE latents z0 ->
z_t = (1-σ) z0 + σ ε at one fixed timestep with one seeded ε -> L = mean(W (model(z_t, t, c) - (ε - z0))²) ->
∇θ L over the selected transformer parameters -> projection -> unit vector.

The gradient is never gathered: a post-accumulate-grad hook on every selected parameter hands its gradient to
the projector's accumulator the moment backward has finished it, and frees it. Peak memory is the model, the
activations, the accumulator's fold and the gradients backward has not yet handed over.

Threads: :meth:`GradientEngine.read` (decode, flow, mask: CPU work that mostly releases the GIL) runs in any
number of threads at once; everything that touches the model (VAE and text encodings in :meth:`prepare`, the
forward and backward of :meth:`vector`, whose hooks sit on the shared parameters) holds the engine's model
lock, so two clips never feed each other's accumulators. On a CPU torch already uses every core for one
clip's work, so one model at a time loses nothing there.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from .backbones import Backbone
from .config import EstimatorConfig, MaskConfig, ProjectionConfig
from .errors import GradientError, SettingsError
from .loss import weighted_loss
from .motion import make_flow_estimator, motion_mask, to_latent_grid
from .projection import make_projector, unit
from .video import frames_to_tensor, load_video

FORMAT_VERSION = 2  # 2: folded Fastfood (projection.py); vectors of format 1 are not comparable


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


def select_parameters(module: torch.nn.Module, patterns: tuple[str, ...] = ()) -> list[tuple[str, torch.nn.Parameter]]:
    """(name, parameter) in ``named_parameters()`` order: all of them, or those matching any fnmatch pattern."""
    named = list(module.named_parameters())
    if not patterns:
        return named
    chosen = [(n, p) for n, p in named if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]
    if not chosen:
        raise SettingsError(f"params={list(patterns)!r} match no parameter of the transformer; names look like "
                            f"{[n for n, _ in named[:4]]}")
    return chosen


class ClipRead(NamedTuple):
    """What :meth:`GradientEngine.read` made of a video without the model."""

    video: Any              # video.StandardVideo: the standardized frames and their metadata
    mask: Any               # motion.MotionMask
    timings: dict           # stage -> seconds (decode, flow)


class ClipReader:
    """Decode, standardize and mask clips for one standard shape and mask setting: the CPU half of the
    per-clip work, without the model (so it can run on machines or processes that have none)."""

    def __init__(self, spec, mask: MaskConfig, device: str = "cpu"):
        self.spec, self.mask = spec, mask
        self.flow = make_flow_estimator(mask, device=device) if mask.kind == "flow" else None

    def read(self, path: str, start_sec: float | None = None, end_sec: float | None = None) -> ClipRead:
        """Raises VideoError on bad video."""
        t0 = time.perf_counter()
        video = load_video(path, self.spec, start_sec=start_sec, end_sec=end_sec, flow_steps=self.mask.source_steps)
        t1 = time.perf_counter()
        mm = motion_mask(video.frames, self.mask, self.flow, between=video.between)
        t2 = time.perf_counter()
        return ClipRead(video, mm, {"decode": t1 - t0, "flow": t2 - t1})


class GradientEngine:
    """Turns clips into unit influence vectors under one fixed set of settings (the fingerprint).

    ``checkpointing`` recomputes activations in backward (less memory, about a third more time); it does not
    change the vectors, so it is not part of the fingerprint."""

    def __init__(self, backbone: Backbone, mask: MaskConfig = MaskConfig(),
                 estimator: EstimatorConfig = EstimatorConfig(), projection: ProjectionConfig = ProjectionConfig(),
                 checkpointing: bool = False):
        self.backbone, self.mask, self.estimator, self.projection_cfg = backbone, mask, estimator, projection
        named = select_parameters(backbone.transformer, estimator.params)
        self.params = [p for _, p in named]
        self.offsets: list[int] = []
        total = 0
        for p in self.params:
            self.offsets.append(total)
            total += p.numel()
        self.num_params = total
        if self.num_params == 0:
            raise ValueError("the transformer has no parameters to take gradients of")
        self.projector = make_projector(projection, self.num_params)
        self.reader = ClipReader(backbone.spec, mask, device=str(backbone.device))
        self.flow = self.reader.flow
        self.checkpointing = bool(checkpointing)
        if self.checkpointing:
            if not hasattr(backbone.transformer, "enable_gradient_checkpointing"):
                raise SettingsError(f"the {backbone.family} transformer does not support gradient checkpointing")
            backbone.transformer.enable_gradient_checkpointing()
        gen = torch.Generator(device="cpu").manual_seed(estimator.noise_seed)
        # The shared noise draws, on the CPU so they are the same on every device (the first is the single
        # sample's), one per (timestep, noise) pair.
        self.timesteps = estimator.timesteps()
        self.noises = [torch.randn(backbone.latent_shape(), generator=gen).to(backbone.device)
                       for _ in self.timesteps]
        self.noise = self.noises[0]
        #: held by all work on the model (encodings, forward and backward): one clip at a time
        self.model_lock = threading.RLock()

    def fingerprint(self) -> dict[str, Any]:
        """Everything that makes two vectors comparable."""
        mask = self.mask.to_dict()
        if self.mask.kind == "flow" and self.mask.flow == "learned":  # the flow model's weights, not its path
            mask["flow_model"] = _file_sha256(self.mask.flow_model)
        return {"format": FORMAT_VERSION, "model": self.backbone.identity(),
                "params": list(self.estimator.params) or "all", "num_params": self.num_params,
                "video": self.backbone.spec.to_dict(), "mask": mask,
                "estimator": self.estimator.to_dict(), "projection": self.projection_cfg.to_dict(),
                "normalize": "l2"}

    def read(self, path: str, start_sec: float | None = None, end_sec: float | None = None):
        """The CPU half of :meth:`prepare`: decode, standardize and mask (safe to run in another thread while
        the model works on the previous clip), as a :class:`ClipRead`. Raises VideoError on bad video."""
        return self.reader.read(path, start_sec, end_sec)

    def prepare(self, path: str, caption: str = "", start_sec: float | None = None,
                end_sec: float | None = None, name: str | None = None, read=None) -> PreparedClip:
        """Decode, standardize, mask, encode (``read``: the result of :meth:`read`, if already done)."""
        video, mm, timings = read if read is not None else self.read(path, start_sec, end_sec)
        bb = self.backbone
        w = to_latent_grid(mm.weight, bb.temporal_factor, bb.spatial_factor, bb.first_frame_alone)
        frames = frames_to_tensor(video.frames)
        with self.model_lock:
            t2 = time.perf_counter()
            z0 = bb.encode_video(frames)
            t3 = time.perf_counter()
            text = bb.encode_text(caption or "")  # its cache is shared: under the lock too
            t4 = time.perf_counter()
        meta = dict(video.metadata())
        meta.update(static=bool(mm.static))
        return PreparedClip(name=name or str(path), latents=z0, weight=torch.from_numpy(w).to(bb.device),
                            text=text, metadata=meta, timings={**timings, "vae": t3 - t2, "text": t4 - t3})

    @contextlib.contextmanager
    def _streaming(self, acc, feed_seconds: list[float]):
        """Only the selected parameters take gradients; each is fed to ``acc`` and freed as backward ends it."""
        selected = {id(p) for p in self.params}
        others = [p for p in self.backbone.transformer.parameters() if id(p) not in selected and p.requires_grad]
        before = [p.requires_grad for p in self.params]

        def hook(offset: int):
            def fn(p: torch.Tensor) -> None:
                t = time.perf_counter()
                acc.feed_at(offset, p.grad)  # a NaN or inf reaches every output: checked once, at the end
                p.grad = None
                feed_seconds[0] += time.perf_counter() - t
            return fn

        handles = []
        try:
            for p in others:
                p.requires_grad_(False)
            for p, off in zip(self.params, self.offsets):
                p.requires_grad_(True)
                p.grad = None
                handles.append(p.register_post_accumulate_grad_hook(hook(off)))
            yield
        finally:
            for h in handles:
                h.remove()
            for p, rg in zip(self.params, before):
                p.requires_grad_(rg)
                p.grad = None
            for p in others:
                p.requires_grad_(True)

    def vector(self, clip: PreparedClip) -> np.ndarray:
        """The clip's unit influence vector (dim,) float32. Raises GradientError on a NaN/inf/zero gradient."""
        bb = self.backbone
        acc = self.projector.accumulator(bb.device)
        feed = [0.0]
        k = len(self.timesteps)
        losses = []
        autocast = torch.autocast(bb.device.type, dtype=torch.bfloat16, enabled=self.estimator.precision == "bf16")
        with self.model_lock:  # waiting for another clip's turn is not this clip's fwd_bwd time
            t0 = time.perf_counter()
            with self._streaming(acc, feed), torch.enable_grad():
                # K shared pairs: the mean of K gradients
                for timestep, noise in zip(self.timesteps, self.noises):
                    z_t, model_t, target = bb.noisy_input(clip.latents[None], noise[None], timestep)
                    with autocast:
                        pred = bb.predict(z_t, model_t, clip.text[None])
                    loss = weighted_loss(self.estimator.loss, pred[0], target[0], clip.weight)
                    if not torch.isfinite(loss):
                        raise GradientError(clip.name,
                                            f"loss is {loss.item()} (not finite) at timestep {timestep}")
                    (loss / k).backward()  # the hooks stream every parameter's gradient into acc
                    losses.append(float(loss.detach()))
        t1 = time.perf_counter()
        v = acc.result()
        if not bool(torch.isfinite(v).all()):  # every projected entry sums every gradient entry
            raise GradientError(clip.name, "gradient has NaN or inf entries")
        try:
            v = unit(v)
        except FloatingPointError as e:
            raise GradientError(clip.name, f"projected gradient: {e}") from e
        t2 = time.perf_counter()
        # The projection's time: feeding the fold during backward (asynchronous on a GPU, so there it lands in
        # fwd_bwd) plus the final transform.
        clip.timings.update(fwd_bwd=t1 - t0 - feed[0], projection=t2 - t1 + feed[0])
        clip.metadata["loss"] = sum(losses) / k
        return v.detach().to("cpu", torch.float32).numpy()

    def embed(self, path: str, caption: str = "", start_sec=None, end_sec=None,
              name: str | None = None, read=None) -> tuple[np.ndarray, PreparedClip]:
        clip = self.prepare(path, caption, start_sec, end_sec, name, read=read)
        return self.vector(clip), clip
