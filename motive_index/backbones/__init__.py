"""Video diffusion backbones: the only place that imports diffusers/transformers.

``load_backbone('tiny')`` builds the tiny random Wan preset in code; ``load_backbone(DIR)`` loads a
diffusers-format model directory (what ``save_pretrained`` writes, and what a real Wan2.1 checkout holds),
dispatching on the transformer's ``_class_name``: Wan (``wan.py``) or CogVideoX (``cogvideox.py``).
``build_tiny(family='cogvideox')`` builds the tiny CogVideoX preset.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ModelLoadError
from .base import Backbone

__all__ = ["Backbone", "load_backbone", "build_tiny", "read_spec"]

_FAMILIES = {"WanTransformer3DModel": "wan", "CogVideoXTransformer3DModel": "cogvideox"}


def _backbone_class(family: str):
    if family == "cogvideox":
        from .cogvideox import CogVideoXBackbone

        return CogVideoXBackbone
    if family == "wan":
        from .wan import WanBackbone

        return WanBackbone
    raise ModelLoadError(f"model family {family!r} is not supported; supported: {sorted(set(_FAMILIES.values()))}")


def _transformer_class(root: Path) -> str:
    return json.loads((root / "transformer" / "config.json").read_text()).get("_class_name", "")


def build_tiny(seed: int = 0, family: str = "wan", **overrides) -> Backbone:
    return _backbone_class(family).tiny(seed=seed, **overrides)


def read_spec(model: str | Path):
    """The standard clip shape of a model without loading its weights (``'tiny'`` or a model directory)."""
    from .wan import MOTIVE_CONFIG, PAPER_SPEC, TINY_SPEC
    from ..config import VideoSpec

    if str(model) == "tiny":
        return TINY_SPEC
    root = Path(model).expanduser()
    if not (root / "transformer" / "config.json").is_file():
        raise ModelLoadError(f"model {str(model)!r}: not a diffusers-format model directory (no "
                             f"transformer/config.json) and not the preset 'tiny'")
    extra = root / MOTIVE_CONFIG
    if extra.is_file():
        cfg = json.loads(extra.read_text())
        if "spec" in cfg:
            return VideoSpec.from_dict(cfg["spec"])
    try:
        family = _FAMILIES.get(_transformer_class(root))
    except json.JSONDecodeError:
        family = None
    if family == "cogvideox" and (root / "vae" / "config.json").is_file():
        from .cogvideox import default_spec

        return default_spec(json.loads((root / "transformer" / "config.json").read_text()),
                            json.loads((root / "vae" / "config.json").read_text()))
    return PAPER_SPEC


def load_backbone(model: str | Path, device: str = "cpu") -> Backbone:
    """``'tiny'`` or a local diffusers-format model directory. Never downloads."""
    if str(model) == "tiny":
        return build_tiny().to(device)
    root = Path(model).expanduser()
    if not root.is_dir():
        raise ModelLoadError(f"model {str(model)!r}: not a directory (and not the preset 'tiny'); pass a local "
                             f"diffusers-format model directory, e.g. one written by `motive-index finetune`")
    cfg_path = root / "transformer" / "config.json"
    if not cfg_path.is_file():
        raise ModelLoadError(f"model {str(root)!r}: no transformer/config.json; expected a diffusers-format "
                             f"directory with transformer/, vae/, text_encoder/, tokenizer/, scheduler/")
    try:
        cls_name = _transformer_class(root)
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"model {str(root)!r}: transformer/config.json is not valid JSON ({e})") from e
    family = _FAMILIES.get(cls_name)
    if family is None:
        raise ModelLoadError(f"model {str(root)!r}: transformer class {cls_name!r} is not supported; "
                             f"supported: {sorted(_FAMILIES)}")
    return _backbone_class(family).from_pretrained(root, device=device)
