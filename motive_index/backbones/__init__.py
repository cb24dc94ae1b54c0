"""Video diffusion backbones: the only place that imports diffusers/transformers.

``load_backbone('tiny')`` builds the tiny random Wan preset in code; ``load_backbone(DIR)`` loads a
diffusers-format model directory (what ``save_pretrained`` writes, and what a real Wan2.1 checkout holds),
dispatching on the transformer's ``_class_name``: Wan (``wan.py``) or CogVideoX (``cogvideox.py``).
``build_tiny(family='cogvideox')`` builds the tiny CogVideoX preset.

Importing this package imports neither torch nor diffusers (``Backbone`` and the families load on first use), so
``read_spec`` and :func:`check_record` cost milliseconds. The weights record (``record.py``): save
``backbone.weights_record()`` beside an index, pass it back as ``load_backbone(model, record=...)``, and the
weights hash is not recomputed while the model's files are unchanged (``verify=True`` rehashes anyway).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelLoadError

if TYPE_CHECKING:
    from .base import Backbone

__all__ = ["Backbone", "load_backbone", "build_tiny", "read_spec", "check_record", "scan_model"]

_FAMILIES = {"WanTransformer3DModel": "wan", "CogVideoXTransformer3DModel": "cogvideox"}
TINY_SEED = 0  # the seed of the 'tiny' preset that load_backbone('tiny') builds


def __getattr__(name):  # lazy: importing the package must not import torch
    if name == "Backbone":
        from .base import Backbone

        return Backbone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def build_tiny(seed: int = 0, family: str = "wan", **overrides) -> "Backbone":
    return _backbone_class(family).tiny(seed=seed, **overrides)


def read_spec(model: str | Path):
    """The standard clip shape of a model without loading its weights (``'tiny'`` or a model directory)."""
    from .specs import MOTIVE_CONFIG, PAPER_SPEC, TINY_SPEC, cogvideox_spec
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
        return cogvideox_spec(json.loads((root / "transformer" / "config.json").read_text()),
                              json.loads((root / "vae" / "config.json").read_text()))
    return PAPER_SPEC


def _model_dir(model: str | Path) -> tuple[Path, str]:
    """(directory, family) of a diffusers-format model directory, or a ModelLoadError naming what is wrong."""
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
    return root, family


def _tiny_record() -> dict[str, Any]:
    """The tiny preset's record: its seed, and the sha256 of the trained VAE weights it loads."""
    from .record import preset_record

    vae_dir = Path(__file__).with_name("tiny_vae")  # tiny_vae.TINY_VAE_DIR, without importing numpy
    return preset_record("tiny", "wan", TINY_SEED,
                         files={"tiny_vae/diffusion_pytorch_model.safetensors":
                                vae_dir / "diffusion_pytorch_model.safetensors"})


def scan_model(model: str | Path) -> dict[str, Any]:
    """The cheap part of a model's weights record, as the model is now (no weights hash, no torch): for a
    directory its weight files' sizes, modification times and safetensors header hashes; for ``'tiny'`` the
    preset, its seed, the library versions and the sha256 of the trained VAE file it loads."""
    from .record import scan_directory

    if str(model) == "tiny":
        return _tiny_record()
    root, family = _model_dir(model)
    return scan_directory(root, family)


def check_record(model: str | Path, record: Any) -> str | None:
    """None when ``record`` (what :meth:`Backbone.weights_record` gave) still vouches for ``model``'s weights;
    otherwise why not, in words (the first difference). A few ``stat`` calls and header reads; imports no model
    library, so ``info`` can say whether the model's files changed since the build in milliseconds."""
    from .record import record_difference

    return record_difference(record, scan_model(model))


def load_backbone(model: str | Path, device: str = "cpu", record: dict | None = None,
                  verify: bool = False) -> "Backbone":
    """``'tiny'`` or a local diffusers-format model directory. Never downloads.

    ``record``: a weights record saved earlier (:meth:`Backbone.weights_record`). When it still matches the
    model (same files by size, modification time and safetensors header; same library versions; for ``'tiny'``
    the same preset and seed), its weights hash is used instead of hashing every weight again, and the tiny
    preset's latent calibration is reused instead of measured. Otherwise the hash is computed in full on first
    use, and ``backbone.weights_record()`` gives the refreshed record. ``verify=True`` always computes it in
    full. ``backbone.record_status`` says which happened."""
    from .record import record_difference, scan_directory

    if str(model) == "tiny":
        current = _tiny_record()
        use = record is not None and not verify and record_difference(record, current) is None
        backbone = None
        if use:
            try:
                backbone = build_tiny(seed=TINY_SEED, calibration=record.get("calibration"))
            except (KeyError, TypeError, ValueError):  # a record from elsewhere without a usable calibration
                use = False
        if backbone is None:
            backbone = build_tiny(seed=TINY_SEED)
        backbone = backbone.to(device)
    else:
        root, family = _model_dir(model)
        current = scan_directory(root, family)  # before loading: it describes at most what was loaded
        use = record is not None and not verify and record_difference(record, current) is None
        backbone = _backbone_class(family).from_pretrained(root, device=device)
    backbone._record = current
    if use:
        backbone._weights_hash = record["weights"]
    backbone.record_status = ("matched" if use else "verify" if verify else
                              "stale" if record is not None else "none")
    return backbone
