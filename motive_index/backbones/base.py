"""The backbone interface every model family implements (small ABC, one file per family)."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import VideoSpec
from ..errors import ModelLoadError

TEXT_CACHE_SIZE = 32  # distinct captions kept; a real UMT5 embedding is 512 x 4096 fp32 = 8 MiB


_BOOKKEEPING = ("transformers_version", "dtype", "torch_dtype", "architectures")


def _clean(cfg: Any) -> Any:
    """A config without the bookkeeping that save/load changes (``_name_or_path``, versions, dtype)."""
    if isinstance(cfg, dict):
        return {str(k): _clean(v) for k, v in cfg.items()
                if not str(k).startswith("_") and k not in _BOOKKEEPING}
    if isinstance(cfg, (list, tuple)):
        return [_clean(v) for v in cfg]
    return cfg


def _config_hash(cfg: dict, clean: dict | None = None) -> str:
    """``clean``: entries added as they are, known to be what :func:`_clean` would leave them (a tokenizer's
    256 k-entry vocabulary as (token, id) pairs: cleaning it would take most of a second to change nothing)."""
    return hashlib.sha256(json.dumps({**_clean(cfg), **(clean or {})}, sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


def _weights_hash(modules) -> str:
    """sha256 over every parameter and buffer, by name, exactly (no sampling)."""
    h = hashlib.sha256()
    for m in modules:
        for name, t in sorted(m.state_dict().items()):
            t = t.detach().to("cpu").contiguous()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().reshape(-1).view(np.uint8))
    return h.hexdigest()[:16]


def load_components(root: Path, loaders: dict[str, Callable]) -> dict[str, Any]:
    """Load each component folder of a diffusers-format directory, naming the part that failed."""
    parts: dict[str, Any] = {}
    for name, load in loaders.items():
        if not (root / name).is_dir():
            raise ModelLoadError(f"model {str(root)!r}: missing component folder {name}/")
        try:
            parts[name] = load(str(root / name), local_files_only=True)
        except Exception as e:  # diffusers/transformers raise many kinds; name the part that failed
            raise ModelLoadError(f"model {str(root)!r}: could not load {name}/ ({type(e).__name__}: {e})") from e
    return parts


def save_components(out: Path, parts: dict[str, Any], scheduler_config: dict, model_index: dict,
                    extra: tuple[str, dict]) -> Path:
    """Write a diffusers-format directory: each part's save_pretrained, the scheduler config, model_index.json
    and the motive-index config file ``extra`` = (file name, content)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        part.save_pretrained(out / name)
    (out / "scheduler").mkdir(exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2))
    (out / "model_index.json").write_text(json.dumps(model_index, indent=2))
    (out / extra[0]).write_text(json.dumps(extra[1], indent=2))
    return out


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

    _text_cache: "OrderedDict[str, torch.Tensor]"

    def _cached_text(self, caption: str, compute: Callable[[str], torch.Tensor]) -> torch.Tensor:
        """``compute(caption)`` once per distinct caption; the last TEXT_CACHE_SIZE are kept (LRU)."""
        if not hasattr(self, "_text_cache"):
            self._text_cache = OrderedDict()
        hit = self._text_cache.get(caption)
        if hit is not None:
            self._text_cache.move_to_end(caption)
            return hit
        emb = self._text_cache[caption] = compute(caption)
        if len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return emb

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

    _weights_hash: str | None = None
    _configs_identity: dict[str, Any] | None = None
    _record: dict[str, Any] | None = None   # what this model was loaded from (record.py), without its hash
    record_status: str = "none"
    """How :meth:`identity` gets the weights hash: ``"matched"`` (from the record given to ``load_backbone``,
    which still matches the files: no rehash), ``"stale"`` (a record was given but the files, the libraries or
    the preset differ: hashed in full), ``"verify"`` (``verify=True``: hashed in full whatever the record says) or
    ``"none"`` (no record given: hashed in full)."""

    def _weights(self) -> str:
        if self._weights_hash is None:
            self._weights_hash = _weights_hash([self.transformer, self.vae, self.text_encoder])
        return self._weights_hash

    def identity(self) -> dict[str, Any]:
        """What makes this model this model: hashes of everything that changes the vectors (every component's
        config and exact weights, the scheduler, the tokenizer's vocabulary, the text length). Families with
        ``transformer``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler_config`` and ``text_max_length``
        (diffusers layouts) use this as it is. Computed once (the weights hash possibly taken from a matching
        weights record, see ``record.py``) until :meth:`invalidate_identity`."""
        if self._configs_identity is None:
            configs = {"transformer": dict(self.transformer.config), "vae": dict(self.vae.config),
                       "text_encoder": self.text_encoder.config.to_dict(), "scheduler": self.scheduler_config,
                       "text_max_length": self.text_max_length}
            vocab = sorted(self.tokenizer.get_vocab().items())
            self._configs_identity = {"transformer_config": _config_hash(configs["transformer"]),
                                      "configs": _config_hash(configs, clean={"tokenizer": vocab})}
        return {"family": self.family, **self._configs_identity, "weights": self._weights(),
                "num_params": sum(p.numel() for p in self.transformer.parameters())}

    def weights_record(self) -> dict[str, Any] | None:
        """The record to save beside an index (e.g. in its settings.json) so that a later
        ``load_backbone(model, record=...)`` skips the full weights hash while the files are unchanged: the files
        (or the preset) this model was loaded from, the library versions and the weights hash (computed now if
        not yet known). None for a model not loaded by ``load_backbone`` or changed in memory since
        (:meth:`invalidate_identity`): no file vouches for its weights."""
        if self._record is None:
            return None
        rec = {**json.loads(json.dumps(self._record)), "weights": self._weights()}
        if rec.get("kind") == "preset":
            rec["calibration"] = self.calibration()
        return rec

    def calibration(self) -> dict[str, Any]:
        """What a preset measured when it was built (the tiny VAE's latent scaling), kept in its record so that
        rebuilding it gives the same configs without measuring again. Families with a preset override this."""
        return {}

    def invalidate_identity(self) -> None:
        """Called after the weights change (fine-tuning), so identity() is recomputed (and no record of the files
        it was loaded from is given any more: they no longer hold these weights)."""
        self._weights_hash = None
        self._configs_identity = None
        self._record = None
        self.record_status = "none"

    @abstractmethod
    def save_pretrained(self, out_dir: str | Path) -> Path: ...
