"""Read the manifests users write (CSV, Parquet, JSONL) into :class:`~motive_index.types.Clip` records.

Columns: ``clip_id`` and ``path`` (aliases ``video_path``, ``url``) are required; ``caption`` (alias ``text``),
``start_sec`` and ``end_sec`` are optional; every other column is kept in ``Clip.metadata``. Relative paths
are resolved against the manifest's folder. Errors name the file, the line (Parquet: the row) and the column.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote, urlparse

import pandas as pd

from ._io import plain
from .errors import ManifestError
from .types import Clip

__all__ = ["read_manifest", "write_manifest", "SUPPORTED_KINDS"]

SUPPORTED_KINDS = (".csv", ".parquet", ".jsonl", ".ndjson")
_PATH_COLUMNS = ("path", "video_path", "url")
_CAPTION_COLUMNS = ("caption", "text")
_STRING_COLUMNS = ("clip_id",) + _PATH_COLUMNS + _CAPTION_COLUMNS + ("start_sec", "end_sec")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _text(v: Any) -> str:
    """A cell that must be text (clip_id, path, caption): '' when missing."""
    v = plain(v)
    return "" if v is None else str(v).strip()


def _rows_csv(path: Path) -> tuple[list[str], list[tuple[int, dict]], str]:
    # The csv module gives the file line each record starts on (multi-line quoted fields included);
    # pandas gives the column types users expect for metadata. Special columns are read as text.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ManifestError(str(path), "the file is empty; write a header line with at least clip_id,path")
        lines, end = [], reader.line_num
        for record in reader:
            if len(record) > len(header):
                raise ManifestError(str(path), f"{len(record)} fields but the header has {len(header)}; quote "
                                               f"values that contain commas", line=end + 1)
            if record:  # blank lines are skipped, as pandas does
                lines.append(end + 1)
            end = reader.line_num
    special = [c for c in header if c in _STRING_COLUMNS]
    try:
        df = pd.read_csv(path, dtype={c: str for c in special}, index_col=False, encoding="utf-8-sig")
        # verbatim text for the special columns: a clip_id "NA" or "null" is an id, not a missing value
        df[special] = pd.read_csv(path, usecols=special, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, ValueError) as e:
        raise ManifestError(str(path), f"not a valid CSV file ({e})") from e
    if len(lines) != len(df):  # e.g. a line that is only whitespace: fall back to header + row index
        lines = list(range(2, len(df) + 2))
    rows = [(ln, {c: plain(v) for c, v in rec.items()}) for ln, rec in zip(lines, df.to_dict("records"))]
    return [str(c) for c in df.columns], rows, "line"


def _rows_parquet(path: Path) -> tuple[list[str], list[tuple[int, dict]], str]:
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises ArrowInvalid (a ValueError) and OSError variants
        raise ManifestError(str(path), f"not a readable Parquet file ({type(e).__name__}: {e})") from e
    rows = [(i + 1, {str(c): plain(v) for c, v in rec.items()}) for i, rec in enumerate(df.to_dict("records"))]
    return [str(c) for c in df.columns], rows, "row"


def _rows_jsonl(path: Path) -> tuple[list[str], list[tuple[int, dict]], str]:
    rows, columns = [], {}
    with open(path, encoding="utf-8-sig") as f:
        for ln, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                raise ManifestError(str(path), f"malformed JSON ({e.msg} at column {e.colno}); each line must "
                                               f"be one JSON object", line=ln) from e
            if not isinstance(rec, dict):
                raise ManifestError(str(path), f"expected a JSON object, got {type(rec).__name__}", line=ln)
            columns.update(dict.fromkeys(rec))
            rows.append((ln, rec))
    return list(columns), rows, "line"


def _seconds(path: Path, v: Any, where: str, ln: int, column: str) -> float | None:
    v = plain(v)
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    try:
        if isinstance(v, bool):
            raise ValueError
        x = float(v)
    except (TypeError, ValueError):
        raise ManifestError(str(path), f"{where} {ln}: {column}={v!r} is not a number of seconds",
                            line=ln, column=column) from None
    if not math.isfinite(x) or x < 0:
        raise ManifestError(str(path), f"{where} {ln}: {column}={v!r} must be a finite number >= 0",
                            line=ln, column=column)
    return x


def _resolve(path: Path, value: str, where: str, ln: int, column: str) -> str:
    if value.lower().startswith("file://"):
        value = unquote(urlparse(value).path)
    elif _SCHEME.match(value):
        raise ManifestError(str(path), f"{where} {ln}: {value!r} is a remote URL; remote URLs are not "
                                       f"fetched, download the video first and give its local path",
                            line=ln, column=column)
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = Path(os.path.abspath(path.parent)) / p
    return os.path.abspath(p)


def read_manifest(path: str | Path) -> list[Clip]:
    """Read a ``.csv``, ``.parquet`` or ``.jsonl``/``.ndjson`` manifest into clips with absolute paths."""
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in SUPPORTED_KINDS:
        raise ManifestError(str(path), f"unsupported manifest kind {kind or '(no extension)'!r}; "
                                       f"use one of {', '.join(SUPPORTED_KINDS)}")
    if not path.is_file():
        raise ManifestError(str(path), "file not found; check the path")
    reader = {".csv": _rows_csv, ".parquet": _rows_parquet}.get(kind, _rows_jsonl)
    try:
        columns, rows, where = reader(path)
    except UnicodeDecodeError as e:
        line = None
        if kind != ".parquet":
            line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise ManifestError(str(path), f"not UTF-8 text ({e.reason} at byte {e.start}); save the manifest as "
                                       f"UTF-8", line=line) from e
    if not rows:
        raise ManifestError(str(path), "the manifest has no rows; add one row per clip")
    if "clip_id" not in columns:
        raise ManifestError(str(path), f"missing required column 'clip_id'; found columns {columns}",
                            column="clip_id")
    path_col = next((c for c in _PATH_COLUMNS if c in columns), None)
    if path_col is None:
        raise ManifestError(str(path), f"missing required column 'path' (or an alias: 'video_path', 'url'); "
                                       f"found columns {columns}", column="path")
    caption_col = next((c for c in _CAPTION_COLUMNS if c in columns), None)
    used = {"clip_id", path_col, caption_col, "start_sec", "end_sec"}

    clips: list[Clip] = []
    seen: dict[str, int] = {}
    for ln, rec in rows:
        clip_id = _text(rec.get("clip_id"))
        if not clip_id:
            raise ManifestError(str(path), f"{where} {ln}: empty clip_id", line=ln, column="clip_id")
        if clip_id in seen:
            raise ManifestError(str(path), f"{where} {ln}: duplicate clip_id {clip_id!r} (first on {where} "
                                           f"{seen[clip_id]}, again on {where} {ln}); clip ids must be unique",
                                line=ln, column="clip_id")
        seen[clip_id] = ln
        value = _text(rec.get(path_col))
        if not value:
            raise ManifestError(str(path), f"{where} {ln}: empty {path_col} for clip {clip_id!r}",
                                line=ln, column=path_col)
        start = _seconds(path, rec.get("start_sec"), where, ln, "start_sec")
        end = _seconds(path, rec.get("end_sec"), where, ln, "end_sec")
        if start is not None and end is not None and end <= start:
            raise ManifestError(str(path), f"{where} {ln}: end_sec={end} must be greater than start_sec={start}",
                                line=ln, column="end_sec")
        clips.append(Clip(clip_id=clip_id, path=_resolve(path, value, where, ln, path_col),
                          caption=_text(rec.get(caption_col)) if caption_col else "",
                          start_sec=start, end_sec=end,
                          metadata={str(k): plain(v) for k, v in rec.items() if k not in used}))
    return clips


def write_manifest(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` (dicts; columns in order of first appearance) to a CSV manifest and return its path."""
    rows = list(rows)
    if not rows:
        raise ValueError(f"write_manifest({str(path)!r}): no rows to write")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: ("" if row.get(k) is None else row.get(k)) for k in columns} for row in rows)
    return path
