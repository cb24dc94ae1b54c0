"""LanceDB store: the source of truth for clip vectors, clip metadata and the index's fingerprint.

Layout of an index directory ``INDEX_DIR``::

    INDEX_DIR/
      lancedb/              a plain LanceDB database
        clips.lance         clip_id, path, caption, metadata (JSON text), vector (float32[dim]), added_at
        failures.lance      clip_id, path, reason, at            (append-only log of failed clips)
        removed.lance       clip_id, reason, at                  (tombstones: one row per removed clip)
      write.lock            the index's write lock (``lock.py``): one writer at a time, across processes
      fingerprint.json      human-readable copy of the fingerprint (the table's copy is authoritative)
      faiss.index, faiss.json   the derived FAISS index (see ``index.py``)

``INDEX_DIR`` may also be a prefix on object storage, ``s3://bucket/prefix`` (``location.py``): the same layout
there, but for the derived files (FAISS, null distributions, summary), which live in a local cache folder.

The fingerprint lives in the Arrow schema metadata of the ``clips`` table under the key
``motive_index.fingerprint`` (JSON text). LanceDB keeps schema metadata across appends, merges, deletes and
compaction, so the fingerprint travels with the vectors it describes and anyone who opens the table (pandas,
DuckDB, lancedb itself) sees it with ``table.schema.metadata``.

Reads see the newest committed data: every read first moves the table handle to the latest version, and
each read is served from one table version (LanceDB snapshot semantics), so another process may append while
this one reads. Writes are one LanceDB commit per call, each under the index's write lock (``lock.py``), so two
writers never interleave a check and an insert: inserts are insert-if-absent under any interleaving.

Removal: a removed clip gets one tombstone row (:class:`Tombstones`), written once, before anything is
deleted; a store with a motion channel shares its tombstones with it. Readers filter results against the
tombstones, so a row that raced in (or whose deletion was interrupted) is never returned, and the next write
deletes it (:meth:`ClipStore.repair`). This module never imports torch or any model code.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Collection, Iterable, NamedTuple

import numpy as np
import pyarrow as pa

from ._io import plain
from .location import Location
from .lock import write_lock
from .errors import FingerprintMismatchError, IndexNotFoundError, IndexStateError

DB_DIRNAME = "lancedb"
CLIPS_TABLE = "clips"
FAILURES_TABLE = "failures"
REMOVED_TABLE = "removed"  # tombstones: a removed clip is never stored again by a later add or build
FINGERPRINT_FILE = "fingerprint.json"
FINGERPRINT_KEY = b"motive_index.fingerprint"
FORMAT_KEY = b"motive_index.format"
FORMAT_VERSION = b"1"
STORE_ID_KEY = b"motive_index.store_id"  # a random id given at creation: tells a store from one made again there

# Ids per ``clip_id IN (...)`` filter: keeps each SQL expression small; LanceDB answers each in milliseconds.
_IN_CHUNK = 1000


def _lancedb():
    try:
        import lancedb
    except ImportError as e:  # pragma: no cover - lancedb is a hard dependency
        raise ImportError("motive-index needs LanceDB for its store: pip install lancedb") from e
    return lancedb


# --------------------------------------------------------------------------------------------------------------
# fingerprint


class _Missing:
    """Stands for a key absent on one side of a fingerprint comparison."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


def normalize_fingerprint(fingerprint: dict) -> dict:
    """The fingerprint as it reads back from JSON (tuples become lists, keys become strings).

    Comparing normalized forms means a fingerprint given with tuples equals the one stored as lists.
    """
    if not isinstance(fingerprint, dict):
        raise TypeError(f"fingerprint={fingerprint!r} is invalid: a dict (JSON-able, may be nested)")
    try:
        return json.loads(json.dumps(fingerprint, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"fingerprint is not JSON-able ({e}); use plain dicts, lists, str, numbers, bool, "
                         f"None (config objects: .to_dict())") from e


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _first_difference(stored: Any, given: Any, path: str) -> tuple[str, Any, Any] | None:
    if isinstance(stored, dict) and isinstance(given, dict):
        keys = list(stored) + [k for k in given if k not in stored]
        for k in keys:
            sub = _join(path, k)
            if k not in stored:
                return sub, MISSING, given[k]
            if k not in given:
                return sub, stored[k], MISSING
            diff = _first_difference(stored[k], given[k], sub)
            if diff is not None:
                return diff
        return None
    if isinstance(stored, list) and isinstance(given, list) and len(stored) == len(given):
        for i, (s, g) in enumerate(zip(stored, given)):
            diff = _first_difference(s, g, f"{path}[{i}]")
            if diff is not None:
                return diff
        return None
    # bool is an int in Python; True must not equal 1 here.
    if isinstance(stored, bool) != isinstance(given, bool) or stored != given:
        return path or "<root>", stored, given
    return None


def fingerprint_id(fingerprint: dict) -> str:
    """A short stable id of a fingerprint (sha256 of its canonical JSON, 16 hex digits): two indexes whose
    vectors are comparable have the same id, so an embedding made on one machine can be matched on another."""
    import hashlib

    canon = json.dumps(normalize_fingerprint(fingerprint), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]


def check_fingerprint(stored: dict, given: dict) -> None:
    """Raise :class:`FingerprintMismatchError` naming the first field (dotted path) where the two differ.

    Both are compared in their JSON form. A key present on only one side counts as differing (the missing
    side is reported as ``<missing>``). Field order: the stored fingerprint's keys first, then new keys.
    """
    diff = _first_difference(normalize_fingerprint(stored), normalize_fingerprint(given), "")
    if diff is not None:
        raise FingerprintMismatchError(*diff)


# --------------------------------------------------------------------------------------------------------------
# helpers


def _sql_str(s: str) -> str:
    """A SQL string literal (DataFusion): single quotes doubled; backslashes are not escapes."""
    return "'" + s.replace("'", "''") + "'"


def _in_filter(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(_sql_str(v) for v in values)})"


def _chunks(xs: list, n: int) -> Iterable[list]:
    for i in range(0, len(xs), n):
        yield xs[i:i + n]


class StoreChanges(NamedTuple):
    """:meth:`ClipStore.changes_since`'s answer, all read from table version ``version``."""

    version: int
    count: int              # rows stored
    ids: list[str]          # clips added at or after the time asked that the caller does not hold
    vectors: np.ndarray     # (len(ids), dim) float32
    still_stored: set[str]  # which of the ids asked about are still stored


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


_TS = pa.timestamp("us", tz="UTC")


def clips_schema(dim: int, fingerprint: dict | None = None) -> pa.Schema:
    """Arrow schema of the ``clips`` table (fingerprint, if given, in the schema metadata, with a new store
    id)."""
    meta = None
    if fingerprint is not None:
        meta = {FINGERPRINT_KEY: json.dumps(fingerprint, sort_keys=True).encode(), FORMAT_KEY: FORMAT_VERSION,
                STORE_ID_KEY: uuid.uuid4().hex.encode()}
    return pa.schema([
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("metadata", pa.string()),  # JSON text: keeps the table plain for pandas / DuckDB
        pa.field("vector", pa.list_(pa.float32(), dim)),
        pa.field("added_at", _TS),
    ], metadata=meta)


REMOVED_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("reason", pa.string()),
    pa.field("at", _TS),
])

FAILURES_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("path", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("at", _TS),
])


def _existing_db(location: Location):
    """The LanceDB connection of the store at ``location``, or None if it holds none (creates nothing)."""
    if not location.has_folder(DB_DIRNAME):  # lancedb.connect would create the folder: look first
        return None
    _lancedb()
    db = location.connect(DB_DIRNAME)
    return db if CLIPS_TABLE in _table_names(db) else None


def _table_names(db) -> list[str]:
    names: list[str] = []
    token = None
    while True:
        resp = db.list_tables(page_token=token)
        names.extend(resp.tables)
        token = getattr(resp, "page_token", None)
        if not token:
            return names


# --------------------------------------------------------------------------------------------------------------
# tombstones


class _Reading(threading.local):
    depth = 0       # nested reading() blocks of this thread
    looked = False  # whether this thread's outermost block has looked up the newest version yet


class _Pinned:
    """``with x.reading():`` the reads of this thread in the block look up the table's newest version once, at
    the first, instead of each read doing so (on object storage each lookup is a request or two). Another
    thread's reads and every write still look it up themselves; the block only skips lookups it already did."""

    def _reading_state(self) -> _Reading:
        state = self.__dict__.get("_reading")
        if state is None:
            state = self.__dict__["_reading"] = _Reading()
        return state

    @contextmanager
    def reading(self):
        state = self._reading_state()
        if state.depth == 0:
            state.looked = False
        state.depth += 1
        try:
            yield self
        finally:
            state.depth -= 1

    def _look_up(self, force: bool) -> bool:
        """Whether to look up the newest version now (always outside a reading block, and when forced)."""
        state = self._reading_state()
        if force or state.depth == 0:
            return True
        if state.looked:
            return False
        state.looked = True
        return True


def _open_or_create(db, name: str, schema: pa.Schema):
    """Table ``name`` of ``db``, created empty with ``schema`` if absent (another process may create it first)."""
    try:
        return db.open_table(name)
    except ValueError:
        try:
            return db.create_table(name, schema=schema)
        except ValueError as e:
            if "already exists" not in str(e):
                raise
            return db.open_table(name)


class Tombstones(_Pinned):
    """The removed clip ids of an index: one ``removed`` row per clip, written once, never deleted.

    Held in memory and re-read only when the table's version moves (checking costs ~0.3 ms), so every search
    can filter against the current set. ``legacy`` names older tables whose ids count as removed too (indexes
    made before the channels shared one table kept a second one in ``motion/``).
    """

    def __init__(self, db, legacy: tuple = ()):
        self._db = db
        self._table = None
        self._legacy = legacy
        self._legacy_ids: set[str] | None = None
        self._ids: frozenset[str] = frozenset()
        self._version: int | None = None
        self._lock = threading.Lock()

    def _handle(self):
        if self._table is None:
            self._table = _open_or_create(self._db, REMOVED_TABLE, REMOVED_SCHEMA)
        return self._table

    def ids(self, force: bool = False) -> frozenset[str]:
        """Every removed clip id, as of now (as of the block's start in a :meth:`reading` block, unless
        ``force``: writes force)."""
        with self._lock:
            table = self._handle()
            if self._look_up(force) or self._version is None:
                table.checkout_latest()
            version = int(table.version)
            if version != self._version:
                ids = set(table.search().select(["clip_id"]).limit(None).to_arrow().column("clip_id").to_pylist())
                if self._legacy_ids is None:
                    self._legacy_ids = set()
                    for t in self._legacy:
                        self._legacy_ids.update(t.search().select(["clip_id"]).limit(None).to_arrow()
                                                .column("clip_id").to_pylist())
                self._ids, self._version = frozenset(ids | self._legacy_ids), version
            return self._ids

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self.ids()

    def __len__(self) -> int:
        return len(self.ids())

    def add(self, clip_ids: list[str], reason: str = "") -> list[str]:
        """Write a tombstone for each of ``clip_ids`` not yet removed (one LanceDB append); returns those.

        Appends never conflict, so this needs no write lock: a removal is visible to every reader at once even
        while another process holds the lock."""
        ids = [c for c in dict.fromkeys(clip_ids) if c not in self.ids(force=True)]
        if ids:
            with self._lock:
                self._handle().add(pa.table({
                    "clip_id": pa.array(ids, pa.string()), "reason": pa.array([reason] * len(ids), pa.string()),
                    "at": pa.array([_now()] * len(ids), _TS)}, schema=REMOVED_SCHEMA))
        return ids

    def include(self, table) -> None:
        """Count the ids of another (legacy) ``removed`` table as removed too."""
        with self._lock:
            self._legacy = (*self._legacy, table)
            self._legacy_ids, self._version = None, None

    def table(self):
        """The LanceDB table (for purge)."""
        with self._lock:
            return self._handle()


# --------------------------------------------------------------------------------------------------------------
# the store


class ClipStore(_Pinned):
    """Clip vectors, metadata and the fingerprint in a LanceDB database under ``index_dir``.

    Use :meth:`create` (or continue) and :meth:`open`; the constructor is internal.
    """

    def __init__(self, location: Location, db, clips, tombstones: Tombstones | None = None, lock=None):
        self._location = location
        self._path = location.local
        self._db = db
        self._clips = clips
        self._failures = None
        self._lock = threading.RLock()  # this handle's state, between threads
        #: the removed ids this store refuses and readers filter out (shared with the motion channel)
        self.tombstones = tombstones if tombstones is not None else Tombstones(db)
        #: the index's write lock, held by every write (shared with the motion channel)
        self.write_lock = lock if lock is not None else write_lock(location)
        meta = clips.schema.metadata or {}
        if FINGERPRINT_KEY not in meta:
            raise IndexStateError(
                f"{location.join(DB_DIRNAME)!r}: table {CLIPS_TABLE!r} has no motive-index fingerprint in its "
                f"schema metadata; it was not made by motive-index. Use another --index folder.")
        self._fingerprint = json.loads(meta[FINGERPRINT_KEY].decode())
        #: the id given at creation (None for a store made before ids were given)
        self.store_id = meta[STORE_ID_KEY].decode() if STORE_ID_KEY in meta else None
        location.claim_cache(self.store_id)
        vtype = clips.schema.field("vector").type
        self._dim = int(vtype.list_size)

    # ---- construction ---------------------------------------------------------------------------------------

    @staticmethod
    def exists(index_dir: "str | os.PathLike | Location") -> bool:
        """Whether ``index_dir`` (a folder, an ``s3://`` URI or a Location) holds a store (never creates
        anything)."""
        return _existing_db(Location.of(index_dir)) is not None

    @classmethod
    def open(cls, index_dir: "str | os.PathLike | Location", tombstones: Tombstones | None = None,
             lock=None) -> "ClipStore":
        """Open an existing store at its newest version; :class:`IndexNotFoundError` if there is none.

        ``tombstones`` and ``lock``: another store's (the motion channel shares the influence store's);
        by default its own ``removed`` table and the lock of ``index_dir``."""
        location = Location.of(index_dir)
        db = _existing_db(location)
        if db is None:
            raise IndexNotFoundError(str(location))
        try:
            clips = db.open_table(CLIPS_TABLE)
        except ValueError as e:  # removed between exists() and here
            raise IndexNotFoundError(str(location)) from e
        return cls(location, db, clips, tombstones, lock)

    @classmethod
    def create(cls, index_dir: "str | os.PathLike | Location", fingerprint: dict, dim: int,
               tombstones: Tombstones | None = None, lock=None) -> "ClipStore":
        """Create a store, or continue the one already there if its fingerprint and ``dim`` equal these.

        Raises :class:`FingerprintMismatchError` naming the first differing field otherwise.
        ``tombstones``, ``lock``: as for :meth:`open`.
        """
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim={dim!r} is invalid: a positive int (the projection's output size)")
        dim = int(dim)
        fingerprint = normalize_fingerprint(fingerprint)
        location = Location.of(index_dir)
        if cls.exists(location):
            store = cls.open(location, tombstones, lock)
        else:
            if not location.remote:
                Path(location.uri).mkdir(parents=True, exist_ok=True)
            _lancedb()
            db = location.connect(DB_DIRNAME)
            try:
                clips = db.create_table(CLIPS_TABLE, schema=clips_schema(dim, fingerprint))
            except ValueError as e:
                if "already exists" not in str(e):
                    raise
                clips = db.open_table(CLIPS_TABLE)  # another process created it first: check theirs
            store = cls(location, db, clips, tombstones, lock)
        check_fingerprint(store._fingerprint, fingerprint)
        if store._dim != dim:
            raise FingerprintMismatchError("dim", store._dim, dim)
        store._ensure_failures_table()
        text = json.dumps(store._fingerprint, indent=2, sort_keys=True) + "\n"
        if location.read_text(FINGERPRINT_FILE) != text:
            location.write_text(FINGERPRINT_FILE, text)
        return store

    # ---- properties -----------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The local folder of the store's derived files: the index directory itself, or the local cache of
        an index on object storage (:attr:`location`)."""
        return self._path

    @property
    def location(self) -> Location:
        """Where the store lives (a folder or an ``s3://`` prefix)."""
        return self._location

    @property
    def fingerprint(self) -> dict:
        """The stored fingerprint (a copy)."""
        return json.loads(json.dumps(self._fingerprint))

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def version(self) -> int:
        """The newest LanceDB version of the ``clips`` table (grows with every write to it)."""
        with self._lock:
            self._refresh()
            return int(self._clips.version)

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return int(self._clips.count_rows())

    def __repr__(self) -> str:
        return f"ClipStore({str(self._location)!r}, dim={self._dim})"

    # ---- internals ------------------------------------------------------------------------------------------

    def _refresh(self, force: bool = False) -> None:
        """Move the table handle to the newest committed version (another process may have written); in a
        :meth:`reading` block only at its first read (``force``: always; every write forces)."""
        if self._look_up(force):
            self._clips.checkout_latest()

    def _ensure_failures_table(self):
        """The append-only ``failures`` table, created on first use, at its newest version."""
        if self._failures is None:
            self._failures = _open_or_create(self._db, FAILURES_TABLE, FAILURES_SCHEMA)
        else:
            self._failures.checkout_latest()
        return self._failures

    def legacy_tombstones(self):
        """This store's own ``removed`` table if it has one (the motion channel's, before the channels shared
        one), else None. Never created."""
        if REMOVED_TABLE not in _table_names(self._db):
            return None
        return self._db.open_table(REMOVED_TABLE)

    def _scan(self, columns: list[str], where: str | None = None) -> pa.Table:
        """Read ``columns`` of the rows matching ``where`` from the current handle version (no limit)."""
        q = self._clips.search()
        if where is not None:
            q = q.where(where)
        # search() without a query is a plain scan, but it has a default limit of 10: lift it.
        return q.select(columns).limit(None).to_arrow()

    # ---- writes ---------------------------------------------------------------------------------------------

    def _validate(self, rec: dict) -> tuple[str, str, str, str, np.ndarray]:
        if not isinstance(rec, dict):
            raise ValueError(f"record={rec!r} is invalid: a dict with clip_id, path, caption, metadata, vector")
        clip_id = rec.get("clip_id")
        if not isinstance(clip_id, str) or not clip_id:
            raise ValueError(f"clip_id={clip_id!r} is invalid: a non-empty string")
        path = rec.get("path", "")
        caption = rec.get("caption", "")
        if path is None:
            path = ""
        if caption is None:
            caption = ""
        if not isinstance(path, (str, os.PathLike)) or not isinstance(caption, str):
            raise ValueError(f"clip {clip_id!r}: path and caption must be strings, got path={path!r}, "
                             f"caption={caption!r}")
        metadata = rec.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ValueError(f"clip {clip_id!r}: metadata={metadata!r} is invalid: a dict")
        try:
            meta_text = json.dumps(plain(metadata), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"clip {clip_id!r}: metadata is not JSON-able ({e})") from e
        if "vector" not in rec:
            raise ValueError(f"clip {clip_id!r}: no vector")
        try:
            vec = np.asarray(rec["vector"], dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise ValueError(f"clip {clip_id!r}: vector is not numeric ({e})") from e
        if vec.shape != (self._dim,):
            raise ValueError(f"clip {clip_id!r}: vector shape {vec.shape} does not match the store's "
                             f"({self._dim},)")
        if not np.isfinite(vec).all():
            raise ValueError(f"clip {clip_id!r}: vector has NaN or inf values")
        return clip_id, os.fspath(path), caption, meta_text, vec

    def add(self, records: list[dict]) -> int:
        """Store new clips in one LanceDB write; return how many were actually added.

        Each record: ``clip_id``, ``path``, ``caption``, ``metadata`` (dict), ``vector`` (float32, shape
        ``(dim,)``). Every record is validated first (``ValueError`` naming the clip; nothing is written then).
        Clip ids already stored, or repeated within ``records``, are skipped (the first occurrence wins), so
        re-adding is harmless; so are removed clip ids (:meth:`remove`: a withdrawn licence stays withdrawn).
        No write (and no new version) happens when nothing is new.
        """
        rows = [self._validate(r) for r in records]
        seen: set[str] = set()
        unique = []
        for row in rows:
            if row[0] not in seen:
                seen.add(row[0])
                unique.append(row)
        if not unique:
            return 0
        with self.write_lock.hold("add"), self._lock:  # no other writer between the check and the insert
            self._refresh(force=True)  # merge_insert matches against the handle's version: it must be the newest
            removed = self.tombstones.ids(force=True)
            stored = self.has([r[0] for r in unique if r[0] not in removed])
            new = [r for r in unique if r[0] not in stored and r[0] not in removed]
            if not new:
                return 0
            n = len(new)
            vectors = np.stack([r[4] for r in new]).astype(np.float32, copy=False)  # (n, dim)
            now = _now()
            table = pa.table({
                "clip_id": pa.array([r[0] for r in new], pa.string()),
                "path": pa.array([r[1] for r in new], pa.string()),
                "caption": pa.array([r[2] for r in new], pa.string()),
                "metadata": pa.array([r[3] for r in new], pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), self._dim),
                "added_at": pa.array([now] * n, _TS),
            }, schema=clips_schema(self._dim))
            # insert-if-absent (belt and braces: under the write lock nothing else can have stored it since)
            result = (self._clips.merge_insert("clip_id").when_not_matched_insert_all().execute(table))
            inserted = getattr(result, "num_inserted_rows", None)
            return int(inserted) if inserted is not None else n

    def record_failure(self, clip_id: str, path: str, reason: str) -> None:
        """Log that ``clip_id`` failed (append-only; the latest reason per clip wins in :meth:`failures`)."""
        if not isinstance(clip_id, str) or not clip_id:
            raise ValueError(f"clip_id={clip_id!r} is invalid: a non-empty string")
        with self.write_lock.hold("record_failure"), self._lock:
            table = self._ensure_failures_table()
            table.add(pa.table({
                "clip_id": pa.array([clip_id], pa.string()),
                "path": pa.array([os.fspath(path) if path is not None else ""], pa.string()),
                "reason": pa.array([str(reason)], pa.string()),
                "at": pa.array([_now()], _TS),
            }, schema=FAILURES_SCHEMA))

    def remove(self, clip_ids: Iterable[str], reason: str = "") -> int:
        """Remove clips (e.g. a licence withdrawn); return how many were stored. The tombstones are written
        first (from then on no search that filters against them returns the clips, and :meth:`add` refuses
        them), then the rows are deleted under the write lock (waiting for another writer if need be). Once this
        returns no read of the store sees them. :meth:`purge` also erases them from old versions on disk."""
        ids = [c for c in dict.fromkeys(clip_ids)]
        bad = [c for c in ids if not isinstance(c, str) or not c]
        if bad:
            raise ValueError(f"clip_id={bad[0]!r} is invalid: a non-empty string")
        if not ids:
            return 0
        self.tombstones.add(ids, reason)
        return self.delete(ids)

    def delete(self, clip_ids: Iterable[str]) -> int:
        """Delete the stored rows of ``clip_ids`` (no tombstone: :meth:`remove` writes those); how many were
        stored. Under the write lock."""
        ids = list(dict.fromkeys(clip_ids))
        if not ids:
            return 0
        with self.write_lock.hold("remove"), self._lock:
            self._refresh(force=True)
            present = self.has(ids)
            for chunk in _chunks(sorted(present), _IN_CHUNK):
                self._clips.delete(_in_filter("clip_id", chunk))
            return len(present)

    def removed(self, clip_ids: Iterable[str] | None = None) -> set[str]:
        """The removed (tombstoned) clip ids, or which of ``clip_ids`` are."""
        ids = self.tombstones.ids()
        return set(ids) if clip_ids is None else ids & set(clip_ids)

    def repair(self) -> dict[str, int]:
        """Delete what must not be stored: rows of removed clips (a removal interrupted between its tombstone
        and its delete, or an insert that raced it) and second copies of a clip (a writer that did not hold
        the lock). Under the write lock; returns ``{"removed": rows deleted, "duplicates": rows deleted}``."""
        with self.write_lock.hold("repair"), self._lock:
            self._refresh(force=True)
            t = self._clips.search().with_row_id(True).select(["clip_id"]).limit(None).to_arrow()
            ids, rowids = t.column("clip_id").to_pylist(), t.column("_rowid").to_pylist()
            removed = self.tombstones.ids(force=True)
            seen: set[str] = set()
            dup_rows: list[int] = []
            for cid, rid in zip(ids, rowids):
                if cid in seen and cid not in removed:
                    dup_rows.append(int(rid))
                seen.add(cid)
            gone = sorted(seen & removed)
            for chunk in _chunks(gone, _IN_CHUNK):
                self._clips.delete(_in_filter("clip_id", chunk))
            for chunk in _chunks(dup_rows, _IN_CHUNK):
                self._clips.delete(f"_rowid IN ({', '.join(map(str, chunk))})")
            n_removed = sum(1 for c in ids if c in removed)
            return {"removed": n_removed, "duplicates": len(dup_rows)}

    def compact(self) -> None:
        """Merge the small fragments that one-clip-at-a-time writes leave (scans stay fast); old versions
        older than LanceDB's default (7 days) are cleaned up on the way."""
        with self.write_lock.hold("compact"), self._lock:
            self._refresh(force=True)
            self._clips.optimize()

    def purge(self) -> dict[str, int]:
        """Compact every table and delete all its old versions from disk, so removed clips' data is gone
        (LanceDB keeps old versions for time travel until then). Returns the versions deleted per table.

        A reader in another process still holding an old version may fail its next read of it: purge when a
        licence withdrawal requires it, not as routine."""
        deleted = {}
        with self.write_lock.hold("purge"), self._lock:
            tables = {CLIPS_TABLE: self._clips, FAILURES_TABLE: self._ensure_failures_table()}
            if REMOVED_TABLE in _table_names(self._db):
                tables[REMOVED_TABLE] = self._db.open_table(REMOVED_TABLE)
            for name, table in tables.items():
                table.checkout_latest()
                before = len(table.list_versions())
                with warnings.catch_warnings():  # LanceDB warns that old versions go: that is the point here
                    warnings.simplefilter("ignore", UserWarning)
                    table.optimize(cleanup_older_than=_dt.timedelta(0), delete_unverified=True)
                table.checkout_latest()
                deleted[name] = max(0, before - len(table.list_versions()))
        return deleted

    # ---- reads ----------------------------------------------------------------------------------------------

    def has(self, clip_ids: Iterable[str]) -> set[str]:
        """Which of ``clip_ids`` are stored."""
        wanted = list(dict.fromkeys(clip_ids))
        if not wanted:
            return set()
        found: set[str] = set()
        with self._lock:
            self._refresh()
            for chunk in _chunks(wanted, _IN_CHUNK):
                t = self._scan(["clip_id"], _in_filter("clip_id", chunk))
                found.update(t.column("clip_id").to_pylist())
        return found

    def ids(self) -> list[str]:
        """Every stored clip id, in storage order."""
        with self._lock:
            self._refresh()
            return self._scan(["clip_id"]).column("clip_id").to_pylist()

    def snapshot(self) -> tuple[int, list[str], np.ndarray]:
        """``(version, ids, vectors)`` read from one table version: vectors is ``(N, dim)`` float32.

        The FAISS index records ``version`` so it is never ahead of the store.
        """
        with self._lock:
            self._refresh()
            version = int(self._clips.version)
            t = self._scan(["clip_id", "vector"])
        ids = t.column("clip_id").to_pylist()
        col = t.column("vector").combine_chunks()  # FixedSizeListArray (N, dim)
        if len(ids) == 0:
            return version, [], np.zeros((0, self._dim), np.float32)
        flat = col.flatten().to_numpy(zero_copy_only=False)  # (N * dim,)
        vectors = np.ascontiguousarray(flat.reshape(len(ids), self._dim), dtype=np.float32)
        if len(set(ids)) != len(ids):
            # only possible if two writers raced on the same clip: keep the first copy
            first: dict[str, int] = {}
            for i, c in enumerate(ids):
                first.setdefault(c, i)
            keep = np.array(sorted(first.values()), dtype=np.int64)
            ids = [ids[i] for i in keep]
            vectors = np.ascontiguousarray(vectors[keep])
        return version, ids, vectors

    def changes_since(self, since: _dt.datetime, maybe_gone: Iterable[str],
                      held: Collection[str] = ()) -> "StoreChanges":
        """What an index last synced at ``since`` needs to catch up, read from one table version without
        reading the whole snapshot: the clips whose ``added_at`` is at or after ``since`` and that ``held``
        does not hold (ids and vectors: the ids of the recent rows are read first, then the vectors of the new
        ones only), which of ``maybe_gone`` (e.g. tombstoned ids the index holds) are still stored (looked up
        only when the counts say some are: ``len(held)`` is then the number ``held`` holds), and the row count
        (the caller's check that nothing was missed)."""
        since = since.astimezone(_dt.timezone.utc) if since.tzinfo else since.replace(tzinfo=_dt.timezone.utc)
        where = f"added_at >= arrow_cast('{since.isoformat()}', 'Timestamp(Microsecond, Some(\"UTC\"))')"
        gone = list(dict.fromkeys(maybe_gone))
        with self._lock:
            self._refresh()
            version = int(self._clips.version)
            count = int(self._clips.count_rows())
            recent = self._clips.search().where(where).with_row_id(True).select(["clip_id"]).limit(None).to_arrow()
            seen: set[str] = set()
            rowids = []
            for cid, rid in zip(recent.column("clip_id").to_pylist(), recent.column("_rowid").to_pylist()):
                if cid not in held and cid not in seen:
                    seen.add(cid)
                    rowids.append(int(rid))
            tables = [self._clips.take_row_ids(chunk).select(["clip_id", "vector"]).to_arrow()
                      for chunk in _chunks(rowids, _IN_CHUNK)]  # by row id: no scan of the vectors
            still: set[str] = set()
            new = len(rowids)
            if gone and count != len(held) + new - len(gone):  # some of them are still stored: which ones
                for chunk in _chunks(gone, _IN_CHUNK):
                    still.update(self._scan(["clip_id"], _in_filter("clip_id", chunk)).column("clip_id")
                                 .to_pylist())
        ids: list[str] = []
        parts = []
        for t in tables:
            ids += t.column("clip_id").to_pylist()
            parts.append(t.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False))
        vectors = (np.ascontiguousarray(np.concatenate(parts).reshape(len(ids), self._dim), dtype=np.float32)
                   if ids else np.zeros((0, self._dim), np.float32))
        return StoreChanges(version, count, ids, vectors, still)

    def vectors(self) -> tuple[list[str], np.ndarray]:
        """All ids and their ``(N, dim)`` float32 vectors, row ``i`` belonging to ``ids[i]``."""
        _, ids, vectors = self.snapshot()
        return ids, vectors

    def rows(self, clip_ids: list[str]) -> dict[str, dict]:
        """``clip_id -> {clip_id, path, caption, metadata}`` (metadata parsed; no vectors) for stored ids.

        Ids that are not stored are left out.
        """
        wanted = list(dict.fromkeys(clip_ids))
        out: dict[str, dict] = {}
        if not wanted:
            return out
        with self._lock:
            self._refresh()
            tables = [self._scan(["clip_id", "path", "caption", "metadata"], _in_filter("clip_id", chunk))
                      for chunk in _chunks(wanted, _IN_CHUNK)]
        for t in tables:
            for cid, path, caption, meta in zip(*(t.column(c).to_pylist()
                                                 for c in ("clip_id", "path", "caption", "metadata"))):
                if cid in out:
                    continue
                out[cid] = {"clip_id": cid, "path": path or "", "caption": caption or "",
                            "metadata": json.loads(meta) if meta else {}}
        return out

    def get_vectors(self, clip_ids: list[str]) -> dict[str, np.ndarray]:
        """``clip_id -> (dim,) float32 vector`` for the stored ones of ``clip_ids``."""
        wanted = list(dict.fromkeys(clip_ids))
        if not wanted:
            return {}
        with self._lock:
            self._refresh()
            tables = [self._scan(["clip_id", "vector"], _in_filter("clip_id", chunk))
                      for chunk in _chunks(wanted, _IN_CHUNK)]
        out: dict[str, np.ndarray] = {}
        for t in tables:
            if t.num_rows == 0:
                continue
            vecs = t.column("vector").combine_chunks().flatten().to_numpy().reshape(-1, self._dim)
            for cid, v in zip(t.column("clip_id").to_pylist(), vecs):
                out.setdefault(cid, v.astype(np.float32, copy=True))
        return out

    def failures(self) -> list[dict]:
        """Clips whose latest attempt failed and that are not stored: ``[{clip_id, path, reason, at}]``."""
        with self._lock:
            table = self._ensure_failures_table()
            t = table.search().select(["clip_id", "path", "reason", "at"]).limit(None).to_arrow()
            latest: dict[str, dict] = {}
            for row in t.to_pylist():  # small: one row per failed attempt
                prev = latest.get(row["clip_id"])
                if prev is None or (row["at"] is not None and prev["at"] is not None and row["at"] >= prev["at"]):
                    latest[row["clip_id"]] = row
            stored = self.has(list(latest))
        return sorted((r for c, r in latest.items() if c not in stored), key=lambda r: (r["at"], r["clip_id"]))
