"""A cheap answer for ``info``: the index's summary kept beside it, valid while its tables are unchanged.

Opening the LanceDB store costs a cold process about 2 s of imports before it reads anything. ``info`` needs
only counts that change when a table gets a new version, so every write session (and every full ``info``)
leaves ``summary.json``: what ``info`` answered, and the newest version of each LanceDB table it came from.
:func:`fast_info` lists the tables' version folders (``<table>.lance/_versions/``: no LanceDB import) and
answers from the summary when every version is the one it records; otherwise it returns None and the caller
opens the store. What can change without a table version (the model's files, the FAISS index's catch-up, the
null distributions) is read fresh each time.

The versions are listed *before* the counts are read, so a write landing in between leaves a summary whose
versions are older than the tables': it is refused next time, never trusted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ._io import atomic_write

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
FORMAT = 1
_CHANNELS = ("", "motion")                      # the influence store at the root, the motion channel in motion/
_TABLES = ("clips", "failures", "removed")
_INVERTED = 2**63                               # Lance's newer manifest naming stores u64::MAX - version
_FRESH = ("model_files", "search", "calibration", "verify")  # read again on every info: no table version


def _latest_version(location, versions_dir: str) -> int | None:
    """The newest version of a Lance table from its ``_versions`` folder (None if it has none)."""
    names = location.list_names(versions_dir)
    if names is None:
        return None
    found = []
    for name in names:
        stem, dot, ext = name.partition(".")
        if ext == "manifest" and stem.isdigit():
            v = int(stem)
            found.append(2**64 - 1 - v if v >= _INVERTED else v)
    return max(found) if found else None


def table_versions(index) -> dict[str, int | None]:
    """``{"clips": v, "failures": v, "removed": v, "motion/clips": v, ...}`` read from the folders alone
    (``index``: a folder, ``s3://`` URI or Location; on object storage, one listing per table)."""
    from .location import Location

    location = Location.of(index)
    out: dict[str, int | None] = {}
    for channel in _CHANNELS:
        db = f"{channel}/lancedb" if channel else "lancedb"
        for table in _TABLES:
            out[f"{channel}/{table}" if channel else table] = _latest_version(location, f"{db}/{table}.lance/_versions")
    return out


def write_summary(index, versions: dict, info: dict[str, Any]) -> None:
    """Keep ``info`` (computed after ``versions`` were listed) as the summary, in the index's local folder
    (its cache, for one on object storage); a read-only index keeps none."""
    from .location import Location

    keep = {k: v for k, v in info.items() if k not in _FRESH}
    local = Location.of(index).local
    try:
        local.mkdir(parents=True, exist_ok=True)
        atomic_write(local / SUMMARY_FILE,
                     json.dumps({"format": FORMAT, "versions": versions, "info": keep}, default=str))
    except OSError as e:
        log.info("could not keep %s in %s: %s", SUMMARY_FILE, local, e)


def cached_info(index) -> tuple[dict[str, Any], dict] | None:
    """``(info, versions)``: the summary's ``info`` if every table still has the version it records (the
    versions, as just listed), else None."""
    from .location import Location

    location = Location.of(index)
    path = location.local / SUMMARY_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("info"), dict):
        return None
    versions = table_versions(location)
    if versions.get("clips") is None or doc.get("versions") != versions:
        return None
    return dict(doc["info"]), versions


def fast_info(index) -> dict[str, Any] | None:
    """:meth:`MotiveIndex.info` without opening the store, when the summary is current (else None; also when
    ``settings.json`` is corrupt, so that the caller's full ``info`` reports it)."""
    from .calibration import load_null
    from .errors import IndexStateError
    from .location import Location
    from .settings import read_settings

    location = Location.of(index)
    cached = cached_info(location)
    if cached is None:
        return None
    info, versions = cached
    try:
        settings = read_settings(location, model_given=False)
    except IndexStateError:
        return None
    model = info.get("model")
    record = settings.get("weights_record") if model and settings.get("model") == model else None
    out = dict(info)
    out["index"] = str(location)
    out["model_files"] = model_files_text(model, record)
    out["search"] = saved_search_stats(location.local, versions["clips"])
    cal: dict[str, Any] = {}
    for channel, folder, key in (("influence", location.local, "clips"),
                                 ("motion", location.local / "motion", "motion/clips")):
        if versions.get(key) is None:
            continue
        null = load_null(folder)
        cal[channel] = None if null is None else {**null.summary(), "stale": null.store_version != versions[key]}
    out["calibration"] = cal
    return out


def model_files_text(model: str | None, record: dict | None) -> str:
    """Whether the model's files are as the weights record saw them (stat calls and header reads only)."""
    from .backbones import check_record
    from .errors import MotiveIndexError

    if not model:
        return "no model recorded"
    if record is None:
        return "no weights record (the next load hashes every weight)"
    try:
        why = check_record(model, record)
    except MotiveIndexError as e:
        return f"cannot be read: {e}"
    return ("unchanged since the weights record (loads without rehashing)" if why is None
            else f"changed since the weights record: {why} (the next load rehashes every weight)")


def saved_search_stats(index_dir: Path, store_version: int | None) -> dict[str, Any]:
    """The saved FAISS index's stats (kind, recall, latency) without loading it; ``stale`` when the store has
    moved on since (the next query catches it up)."""
    from .index import META_FILE

    try:
        meta = json.loads((Path(index_dir) / META_FILE).read_text(encoding="utf-8"))
        stats, version = dict(meta.get("stats", {})), meta.get("store_version")
    except (OSError, ValueError, AttributeError):
        return {"kind": "none", "stale": True}
    stats["stale"] = version != store_version
    return stats
