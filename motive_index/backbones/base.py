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


# ------------------------------------------------------------------------------------------ diffusers families


def byte_tokenizer():
    """A byte-level tokenizer built in code (256 byte symbols + pad/eos/unk): no vocabulary file to download.
    The tiny presets' tokenizer, for every family."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def quiet_hf() -> None:
    """No per-shard progress bars from diffusers/transformers: our own bars report the work."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()


def diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


class DiffusersBackbone(Backbone):
    """What the diffusers families share: a transformer, a VAE, a text encoder and a tokenizer in a
    diffusers-format directory (one folder each, a scheduler config, ``model_index.json``, and motive-index's
    ``motive_index.json`` with the standard shape and text length), loaded and saved the same way; the latent
    grid's shape; moving to a device; the text cache; encoding a clip to the VAE's latent mode; the tiny
    presets' calibration clips. A family file keeps only what differs: its classes (:meth:`_classes`), the
    pipeline it is saved as, its defaults, how it scales latents, noises, forms the target and predicts."""

    #: diffusers' pipeline class name written into model_index.json
    pipeline_class: str
    #: the scheduler's class name when its config does not say
    default_scheduler_class: str

    def _init_parts(self, transformer, vae, text_encoder, tokenizer, scheduler_config: dict, spec: VideoSpec,
                    text_max_length: int, source: str) -> None:
        self.transformer, self.vae, self.text_encoder, self.tokenizer = transformer, vae, text_encoder, tokenizer
        self.scheduler_config = dict(scheduler_config)
        self.spec = spec
        self.text_max_length = int(text_max_length)
        self._weights_hash = None
        self.source = source
        self._text_cache = OrderedDict()
        self.device = torch.device("cpu")
        for m in (self.transformer, self.vae, self.text_encoder):
            m.eval()
        self.vae.requires_grad_(False)
        self.text_encoder.requires_grad_(False)

    # ----- loading and saving -------------------------------------------------------------------------------
    @classmethod
    def _classes(cls) -> dict[str, tuple[str, Any]]:
        """``{part: (library, class)}`` for transformer, vae, text_encoder (imported when called)."""
        raise NotImplementedError

    @classmethod
    def _defaults(cls, parts: dict[str, Any], scheduler: dict | None) -> tuple[dict, VideoSpec, int]:
        """(scheduler config, standard shape, text length) for a directory without motive_index.json's."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(cls, root: str | Path, device: str = "cpu") -> "DiffusersBackbone":
        from transformers import AutoTokenizer

        from .specs import MOTIVE_CONFIG

        quiet_hf()
        root = Path(root)
        loaders = {name: klass.from_pretrained for name, (_, klass) in cls._classes().items()}
        parts = load_components(root, {**loaders, "tokenizer": AutoTokenizer.from_pretrained})
        sched_path = root / "scheduler" / "scheduler_config.json"
        scheduler = json.loads(sched_path.read_text()) if sched_path.is_file() else None
        extra_path = root / MOTIVE_CONFIG
        extra = json.loads(extra_path.read_text()) if extra_path.is_file() else {}
        scheduler, spec, text_len = cls._defaults(parts, scheduler)
        if "spec" in extra:
            spec = VideoSpec.from_dict(extra["spec"])
        text_len = int(extra.get("text_max_length", text_len))
        backbone = cls(parts["transformer"], parts["vae"], parts["text_encoder"], parts["tokenizer"], scheduler,
                       spec, text_len, source=str(root.resolve()))
        return backbone.to(device)

    def save_pretrained(self, out_dir: str | Path) -> Path:
        from .specs import MOTIVE_CONFIG

        quiet_hf()
        index = {"_class_name": self.pipeline_class, "_diffusers_version": diffusers_version(),
                 **{name: [lib, klass.__name__] for name, (lib, klass) in self._classes().items()},
                 "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
                 "scheduler": ["diffusers", self.scheduler_config.get("_class_name", self.default_scheduler_class)]}
        parts = {"transformer": self.transformer, "vae": self.vae, "text_encoder": self.text_encoder,
                 "tokenizer": self.tokenizer}
        return save_components(Path(out_dir), parts, self.scheduler_config, index,
                               (MOTIVE_CONFIG, {"spec": self.spec.to_dict(), "text_max_length": self.text_max_length}))

    # ----- the shared interface -----------------------------------------------------------------------------
    def to(self, device: str | torch.device) -> "DiffusersBackbone":
        self.device = torch.device(device)
        for m in (self.transformer, self.vae, self.text_encoder):
            m.to(self.device)
        self._text_cache.clear()
        self._moved()
        return self

    def _moved(self) -> None:
        """After :meth:`to`: move or drop the family's own device state."""

    def encode_text(self, caption: str) -> torch.Tensor:
        return self._cached_text(caption, self._encode_text)

    @abstractmethod
    def _encode_text(self, caption: str) -> torch.Tensor: ...

    @torch.no_grad()
    def _vae_mode(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 3, H, W) in [0, 1] -> the VAE's latent mode (C, F', H', W'), unscaled."""
        x = frames.to(self.device, torch.float32).permute(1, 0, 2, 3)[None] * 2 - 1   # (1, 3, T, H, W) in [-1, 1]
        return self.vae.encode(x).latent_dist.mode()[0]

    def latent_shape(self) -> tuple[int, int, int, int]:
        s = self.spec
        return (self.z_dim, 1 + (s.frames - 1) // self.temporal_factor, s.height // self.spatial_factor,
                s.width // self.spatial_factor)

    def _calibration_latents(self, seed: int) -> torch.Tensor:
        """Unscaled latents (n, C, F', H', W') of a few synthetic clips (one per motion class), seeded: what a
        tiny preset measures its latent scaling on, as real models ship measured values."""
        from ..synthetic import MOTIONS, SynthSpec, render_clip
        from ..video import frames_to_tensor, standardize

        lats = []
        for i, motion in enumerate(MOTIONS):
            s = SynthSpec(motion=motion, shape="square", colour="red", texture="striped",
                          frames=self.spec.frames, fps=self.spec.fps, seed=seed * 1000 + i)
            frames, _ = render_clip(s)
            frames = standardize(frames, s.fps, self.spec)
            lats.append(self.encode_video(frames_to_tensor(frames), normalize=False))
        return torch.stack(lats)
