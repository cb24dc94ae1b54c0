"""An index's ``settings.json``: where its model (and a learned flow model) live and how to run them, and the
model's weights record. Needed to query, but not part of the fingerprint (the model may move; its identity may
not)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .config import MaskConfig
from .errors import IndexStateError

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
_SETTINGS_TYPES = {"model": str, "flow_model": str, "checkpointing": bool, "weights_record": dict}


def _location(index):
    from .location import Location

    return Location.of(index)


def read_settings(index, model_given: bool) -> dict:
    """``settings.json`` of an index (a folder, ``s3://`` URI or Location; {} if absent). A corrupt file is an
    :class:`IndexStateError` naming it and the fix, unless the model is given anyway (then a warning: the model
    path is what it holds)."""
    location = _location(index)
    path = location.join(SETTINGS_FILE)
    try:
        text = location.read_text(SETTINGS_FILE)
        settings = json.loads(text) if text is not None else {}
        if not isinstance(settings, dict):
            raise ValueError(f"a JSON object was expected, got {type(settings).__name__}")
        for key, kind in _SETTINGS_TYPES.items():
            if key in settings and not isinstance(settings[key], kind):
                raise ValueError(f"{key!r} is {settings[key]!r}, not a {kind.__name__}")
    except (ValueError, UnicodeDecodeError) as e:
        if model_given:
            log.warning("%s is corrupt (%s); using the model given", path, e)
            return {}
        raise IndexStateError(f"{path!r} is corrupt ({e}); it records the model the index was built with: "
                              f"pass the model again (--model MODEL_DIR, or model=... in Python), or rewrite the "
                              f"file as {{\"model\": \"/path/to/model\"}}") from e
    return settings


def write_settings(index, model: str, mask: MaskConfig, checkpointing: bool = False,
                   record: dict | None = None) -> None:
    """Where the model (and a learned flow model) live and how to run it: needed to query, but not part of the
    fingerprint. ``record``: the model's weights record (``backbones/record.py``), so that opening the index
    later does not rehash every weight while the model's files are unchanged."""
    location = _location(index)
    if location.read_text(SETTINGS_FILE) is None:
        settings = {"model": model, "checkpointing": bool(checkpointing)}
        if mask.flow_model:
            settings["flow_model"] = str(Path(mask.flow_model).resolve())
        if record is not None:
            settings["weights_record"] = record
        location.write_text(SETTINGS_FILE, json.dumps(settings, indent=2))
    else:
        save_record(location, model, record)


def save_record(index, model: str, record: dict | None) -> None:
    """Keep ``record`` in settings.json when it describes the model the settings name and differs from the one
    kept (the model's files were touched, a library upgraded, or the index predates records)."""
    location = _location(index)
    if record is None:
        return
    try:
        settings = json.loads(location.read_text(SETTINGS_FILE) or "null")
        if isinstance(settings, dict) and settings.get("model") == model and settings.get("weights_record") != record:
            settings["weights_record"] = record
            location.write_text(SETTINGS_FILE, json.dumps(settings, indent=2))
    except Exception as e:  # a read-only index (or bucket) still answers queries; the next load rehashes again
        log.info("could not keep the weights record in %s: %s", location.join(SETTINGS_FILE), e)
