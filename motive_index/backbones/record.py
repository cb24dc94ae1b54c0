"""The weights record: what lets a model be loaded again without rehashing every weight.

An index's fingerprint holds the model's exact weights hash (``base._weights_hash``: sha256 over every parameter
and buffer). Computing it reads every weight once more after loading: 0.01 s for the tiny model, tens of seconds
for Wan2.1 (a 5.7 GB transformer, a 0.5 GB VAE and an 11 GB text encoder). The record is saved beside an index
at build time and says *which files* gave that hash, cheaply enough to check at every load:

    {"format": 1, "kind": "directory", "family": "wan", "versions": {torch, diffusers, transformers, ...},
     "files": [{"path": "transformer/diffusion_pytorch_model.safetensors", "size": ..., "mtime_ns": ...,
                "header_sha256": ...}, ...],            # every file of transformer/, vae/, text_encoder/
     "weights": "<the full weights hash>"}

For ``.safetensors`` files the header (its first 8 bytes give the header's length, a JSON header follows)
names every tensor with its dtype, shape and byte offsets, so hashing it catches any change of layout; size and
modification time catch a rewrite. A library upgrade (another torch/diffusers/transformers/motive-index) could
load the same files into other values, so the versions are part of the record too. When the record still
matches the files, ``load_backbone(..., record=...)`` takes its weights hash instead of recomputing it; when
anything differs, the hash is computed in full (and :meth:`Backbone.weights_record` gives the refreshed record).
``verify=True`` always rehashes. What a record cannot see: a weight file rewritten with the same size, the same
tensor layout and its modification time set back (``touch -d``); ``verify`` (e.g. ``info --verify``) is the
check for that.

The ``tiny`` preset is built in code from a seed, with the trained VAE shipped in the package: its record is
``{"kind": "preset", "preset": "tiny", "seed", "family", "versions", "files": [the VAE weights' sha256],
"weights"}`` plus the VAE's latent calibration, so a query rebuilds the exact model the index was built with
(same configs hash), and a retrained VAE file is seen as a change.

Nothing here imports torch or diffusers: checking a record is a few ``stat`` calls and header reads.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

RECORD_FORMAT = 1
WEIGHT_COMPONENTS = ("transformer", "vae", "text_encoder")  # the folders whose weights make the weights hash
LIBRARIES = ("torch", "diffusers", "transformers", "safetensors")
_MAX_HEADER = 100 * 2**20   # safetensors caps its JSON header at 100 MB
_MATCH_KEYS = ("format", "kind", "family", "preset", "seed", "versions", "files")


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    from importlib import metadata

    from .. import __version__

    out = {"motive_index": __version__}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = ""
    return tuple(out.items())


def library_versions() -> dict[str, str]:
    """Versions of the libraries that turn weight files into tensors (from package metadata: no import)."""
    return dict(_versions())


def safetensors_header_sha256(path: str | Path) -> str:
    """sha256 of a safetensors file's length prefix and JSON header (every tensor's name, dtype, shape, offsets).

    Raises ValueError when the file is not a safetensors file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{str(path)!r}: too short for a safetensors file")
        n = int.from_bytes(prefix, "little")
        if n > _MAX_HEADER or n > size - 8:
            raise ValueError(f"{str(path)!r}: header length {n} is not that of a safetensors file of {size} bytes")
        header = f.read(n)
    if not header.lstrip().startswith(b"{"):
        raise ValueError(f"{str(path)!r}: its header is not JSON")
    return hashlib.sha256(prefix + header).hexdigest()


def _file_entry(path: Path, rel: str) -> dict[str, Any]:
    st = path.stat()  # follows symlinks (a Hugging Face cache links to its blobs): the blob is what is loaded
    entry: dict[str, Any] = {"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if path.name.endswith(".safetensors"):
        try:
            entry["header_sha256"] = safetensors_header_sha256(path)
        except (OSError, ValueError):
            entry["header_sha256"] = None  # loading will say what is wrong with it
    return entry


def scan_directory(root: str | Path, family: str) -> dict[str, Any]:
    """The record of a diffusers-format model directory, without its weights hash: every file (hidden ones aside)
    under its weight-bearing component folders, with size, modification time and safetensors header hash."""
    root = Path(root)
    files = []
    for comp in WEIGHT_COMPONENTS:
        folder = root / comp
        if not folder.is_dir():
            continue
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                continue
            files.append(_file_entry(p, rel.as_posix()))
    return {"format": RECORD_FORMAT, "kind": "directory", "family": family, "versions": library_versions(),
            "files": files}


def preset_record(preset: str, family: str, seed: int, files: dict[str, Path] | None = None) -> dict[str, Any]:
    """The record of a preset built in code, without its weights hash. ``files``: weight files the preset loads
    (the tiny Wan's trained VAE), by name: their sha256 is part of the record (a retrained file changes it)."""
    rec = {"format": RECORD_FORMAT, "kind": "preset", "preset": preset, "family": family, "seed": int(seed),
           "versions": library_versions()}
    if files:
        rec["files"] = [{"path": name, "sha256": _file_sha256(Path(p))} for name, p in sorted(files.items())]
    return rec


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    """sha256 of a (small) file's bytes, cached while its size and modification time stay the same."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def _files_difference(old: list, new: list) -> str:
    old_by = {f.get("path"): f for f in old if isinstance(f, dict)}
    new_by = {f["path"]: f for f in new}
    for path in sorted(set(old_by) | set(new_by)):
        a, b = old_by.get(path), new_by.get(path)
        if a is None:
            return f"{path}: new file"
        if b is None:
            return f"{path}: missing"
        for key in ("size", "mtime_ns", "header_sha256", "sha256"):
            if a.get(key) != b.get(key):
                return f"{path}: {key} changed ({a.get(key)} -> {b.get(key)})"
    return "files differ"


def record_difference(record: Any, current: dict[str, Any]) -> str | None:
    """None when ``record`` (a saved record) vouches for the model ``current`` describes (a fresh scan or preset
    record); otherwise the first difference, in words."""
    if not isinstance(record, dict):
        return "no record"
    if not isinstance(record.get("weights"), str) or not record["weights"]:
        return "the record has no weights hash"
    for key in _MATCH_KEYS:
        if record.get(key) != current.get(key):
            if key == "files" and isinstance(record.get(key), list):
                return _files_difference(record["files"], current["files"])
            if key == "versions" and isinstance(record.get(key), dict):
                changed = sorted(k for k in set(record[key]) | set(current[key])
                                 if record[key].get(k) != current[key].get(k))
                return "library versions changed: " + ", ".join(
                    f"{k} {record[key].get(k)} -> {current[key].get(k)}" for k in changed)
            return f"{key} changed ({record.get(key)!r} -> {current.get(key)!r})"
    return None
