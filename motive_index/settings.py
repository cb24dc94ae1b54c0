"""An index's ``settings.json``: where its model (and a learned flow model) live and how to run them, and the
model's weights record. Needed to query, but not part of the fingerprint (the model may move; its identity may
not)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ._io import atomic_write
from .config import MaskConfig
from .errors import IndexStateError

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
_SETTINGS_TYPES = {"model": str, "flow_model": str, "checkpointing": bool, "weights_record": dict}


def read_settings(index_dir: Path, model_given: bool) -> dict:
    """``settings.json`` of an index ({} if absent). A corrupt file is an :class:`IndexStateError` naming it and
    the fix, unless the model is given anyway (then a warning: the model path is what it holds)."""
    path = index_dir / SETTINGS_FILE
    try:
        settings = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        if not isinstance(settings, dict):
            raise ValueError(f"a JSON object was expected, got {type(settings).__name__}")
        for key, kind in _SETTINGS_TYPES.items():
            if key in settings and not isinstance(settings[key], kind):
                raise ValueError(f"{key!r} is {settings[key]!r}, not a {kind.__name__}")
    except (ValueError, UnicodeDecodeError) as e:
        if model_given:
            log.warning("%s is corrupt (%s); using the model given", path, e)
            return {}
        raise IndexStateError(f"{str(path)!r} is corrupt ({e}); it records the model the index was built with: "
                              f"pass the model again (--model MODEL_DIR, or model=... in Python), or rewrite the "
                              f"file as {{\"model\": \"/path/to/model\"}}") from e
    return settings


def write_settings(index_dir: Path, model: str, mask: MaskConfig, checkpointing: bool = False,
                    record: dict | None = None) -> None:
    """Where the model (and a learned flow model) live and how to run it: needed to query, but not part of the
    fingerprint. ``record``: the model's weights record (``backbones/record.py``), so that opening the index
    later does not rehash every weight while the model's files are unchanged."""
    path = index_dir / SETTINGS_FILE
    if not path.is_file():
        settings = {"model": model, "checkpointing": bool(checkpointing)}
        if mask.flow_model:
            settings["flow_model"] = str(Path(mask.flow_model).resolve())
        if record is not None:
            settings["weights_record"] = record
        atomic_write(path, json.dumps(settings, indent=2))
    else:
        save_record(index_dir, model, record)


def save_record(index_dir: Path, model: str, record: dict | None) -> None:
    """Keep ``record`` in settings.json when it describes the model the settings name and differs from the one
    kept (the model's files were touched, a library upgraded, or the index predates records)."""
    path = index_dir / SETTINGS_FILE
    if record is None:
        return
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(settings, dict) and settings.get("model") == model and settings.get("weights_record") != record:
            settings["weights_record"] = record
            atomic_write(path, json.dumps(settings, indent=2))
    except (OSError, ValueError) as e:  # a read-only index still answers queries; the next load rehashes again
        log.info("could not keep the weights record in %s: %s", path, e)
