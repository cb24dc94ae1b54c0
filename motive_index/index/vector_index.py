"""VectorIndex: inner-product search over a store's vectors, with int64 labels mapped to clip ids.

Every vector has an int64 label (``clip_id <-> label`` kept here), so a catch-up removes by label and adds with
new labels (never reused). Saved as ``INDEX_DIR/faiss.index`` (the FAISS serialization), ``INDEX_DIR/faiss.ids``
(an Arrow IPC file: ``label`` int64, ``clip_id`` string), for ``compressed`` the float copy's segments
(``vectors/``), and ``INDEX_DIR/faiss.json`` (format, store version, the :class:`~.record.BuildRecord`, sizes
and CRC-32s of the other files), each written to a temp file and moved into place with ``os.replace``, the
JSON last, so a reader never pairs a new JSON with old files.

Thread safety: :meth:`VectorIndex.search` may run in several threads while another thread runs
:meth:`VectorIndex.catch_up` on the same object (a readers-writer lock: searches share, a catch-up is alone).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from .._io import atomic_write
from .backends import DeviceCopy, FaissGpuCopy, TorchCopy, _faiss, resolve_backend
from .floatcopy import FloatCopy
from .idmap import IdMap
from .hnsw import HnswKind, build_hnsw
from .kinds import (IVF_MIN_N, KIND_COMPRESSED, KIND_FLAT, KIND_HNSW, KIND_IVF, RECALL_K, CompressedKind,
                    FlatKind, IvfKind, Kind, build_ivf_index, choose_float_copy, choose_kind, rescore, tune)
from .record import BuildRecord
from .shards import ShardedKind

INDEX_FILE = "faiss.index"
IDS_FILE = "faiss.ids"
META_FILE = "faiss.json"
FORMAT = 3
LATENCY_QUERIES = 20             # single queries timed for the record's p50_ms (fewer once 1 s is spent)
_IDS_SCHEMA = pa.schema([("label", pa.int64()), ("clip_id", pa.string())])

log = logging.getLogger("motive_index.index")


class _RWLock:
    """Many readers or one writer (writers wait for readers to leave; new readers wait for a waiting writer)."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    def acquire_read(self):
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self):
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    def acquire_write(self):
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True

    def release_write(self):
        with self._cond:
            self._writer = False
            self._cond.notify_all()


#: vectors checked for NaN / inf per block (a memory-mapped source is never read whole)
CHECK_BLOCK = 1 << 20


def _as_matrix(vectors, n_ids: int) -> np.ndarray:
    """``vectors`` as ``(N, dim)`` C-contiguous float32, checked finite; not copied when it already is one (a
    memory map stays one)."""
    vectors = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] < 1:
        raise ValueError(f"vectors shape {vectors.shape} is invalid: (N, dim) with dim >= 1")
    if vectors.shape[0] != n_ids:
        raise ValueError(f"{vectors.shape[0]} vectors but {n_ids} ids")
    if vectors.dtype != np.float32 or not vectors.flags.c_contiguous:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, dim)
    for a in range(0, len(vectors), CHECK_BLOCK):
        if not np.isfinite(vectors[a:a + CHECK_BLOCK]).all():
            raise ValueError("vectors contain NaN or inf")
    return vectors


def positions(ids: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """The row of each of ``wanted`` in ``ids``."""
    pos = {c: i for i, c in enumerate(ids)} if wanted else {}
    return [pos[c] for c in wanted]


def _ids_blob(labels: np.ndarray, ids: pa.Array) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, _IDS_SCHEMA) as w:
        w.write_table(pa.table({"label": pa.array(labels, pa.int64()), "clip_id": ids}, schema=_IDS_SCHEMA))
    return sink.getvalue().to_pybytes()


def _read_checked(path: Path, size, crc) -> bytes:
    data = path.read_bytes()
    if len(data) != size:
        raise ValueError(f"{str(path)!r} has {len(data)} bytes, {META_FILE} expects {size}")
    if zlib.crc32(data) != crc:
        raise ValueError(f"{str(path)!r}: checksum does not match {META_FILE}")
    return data


class VectorIndex:
    """Inner-product search over a store's vectors, with int64 labels mapped to clip ids.

    ``store_version`` is the store version the vectors came from. Build with :meth:`build`, persist with
    :meth:`save` / :meth:`load`, bring up to date with :meth:`catch_up`, or get a current one from
    :func:`~.opening.open_index`. :attr:`record` is what the build made and measured (frozen); :attr:`stats`
    a display dict of it with the live state (n, changes since the build, the backend and device that answer).
    Searches run on the CPU index until :meth:`use_device` moves them to a GPU (or to torch).
    """

    def __init__(self, kind: Kind, labels: Sequence[int], ids: Sequence[str], store_version: int,
                 record: BuildRecord, next_label: int | None = None, changes_since_build: int = 0):
        if kind.ntotal != len(ids) or len(ids) != len(labels):
            raise ValueError(f"index has {kind.ntotal} vectors but {len(ids)} ids and {len(labels)} labels")
        self._kind = kind
        self._ids = IdMap(labels, ids)  # clip id <-> label
        self._next_label = max(int(next_label if next_label is not None else 0), self._ids.span)
        self.store_version = int(store_version)
        self.record = record
        self.changes_since_build = int(changes_since_build)
        self._lock = _RWLock()
        self._copy: DeviceCopy | None = None  # the search copy on a device, derived from the CPU index
        self._held_cache: tuple | None = None  # count_held's last answer
        #: how :func:`~.opening.open_index` got this index (``load``, ``catch_up`` or ``rebuild``, and why)
        self.opened = None
        #: wall time (epoch seconds) just before the store was last read in full or for its changes (None:
        #: never read from a store): a catch-up reads only the rows added since (less a margin)
        self.synced_at: float | None = None
        self.unsaved_changes = 0             # adds + removes since the last save or load
        self.saved_at: float | None = None   # wall time of the last save or load

    # ---- construction ---------------------------------------------------------------------------------------

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, store_version: int, *, kind: str = "auto",
              recall_target: float = 0.95, seed: int = 0, folder: str | os.PathLike | None = None,
              float_copy: str = "auto") -> "VectorIndex":
        """Index ``vectors`` (``(N, dim)``, row ``i`` for ``ids[i]``) as read at ``store_version``.

        ``kind``: ``flat``, ``ivf``, ``compressed``, ``hnsw`` or ``auto`` (:func:`~.kinds.choose_kind`). An
        ``hnsw`` graph that cannot reach ``recall_target`` at any efSearch tried falls back to ``flat``; an ``ivf``
        index that cannot reach it (recall@10 on the vectors themselves) falls back to ``flat``,
        or, when ``auto`` asked for it, to ``compressed`` (which scans every list if it must, so it falls back
        to ``flat`` only if even that misses). ``folder``: where a ``compressed`` index writes its float copy
        now (default: held in RAM until :meth:`save`); ``vectors`` may be a memory map (read in chunks).
        ``float_copy``: that copy's dtype, ``float32``, ``float16`` or ``auto``
        (:func:`~.kinds.choose_float_copy`: float16 above 8 GB of float32).
        """
        t0 = time.perf_counter()
        ids = list(ids)
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids")
        vectors = _as_matrix(vectors, len(ids))
        if not 0.0 < recall_target <= 1.0:
            raise ValueError(f"recall_target={recall_target!r} is invalid: in (0, 1]")
        n, dim = vectors.shape
        want = choose_kind(n, dim, kind)
        copy_dtype = choose_float_copy(n, dim, float_copy)
        labels = np.arange(n, dtype=np.int64)
        info: dict = {}
        built: Kind | None = None
        if want != KIND_FLAT and n < IVF_MIN_N:
            info["fallback"] = f"{n} vectors: too few for {want} (< {IVF_MIN_N})"
        elif want == KIND_HNSW:
            built, tuned = build_hnsw(vectors, labels, recall_target, seed)
            info = {k: v for k, v in tuned.items() if k != "reached"}
            if not tuned["reached"]:
                info["fallback"] = (f"hnsw recall@10 {tuned['recall_at_10']:.3f} < target {recall_target} at "
                                    f"efSearch {tuned['ef_search']}; exact search")
                built = None
        elif want != KIND_FLAT:
            # auto's ivf that cannot reach the target tries compressed next: its codes can be scanned exhaustively
            tries = [want] + ([KIND_COMPRESSED] if kind == "auto" and want == KIND_IVF else [])
            short = ""  # why the attempts so far fell short
            for attempt in tries:
                index, train = build_ivf_index(vectors, compressed=attempt == KIND_COMPRESSED, seed=seed)
                built = (CompressedKind(index, FloatCopy(dim, folder, copy_dtype)) if attempt == KIND_COMPRESSED
                         else IvfKind(index))
                built.add(labels, vectors)
                tuned = tune(built, vectors, labels, recall_target, seed)
                info = {**train, **{k: v for k, v in tuned.items() if k != "reached"}}
                if tuned["reached"]:
                    if short:
                        info["fallback"] = f"{short}; {attempt} instead"
                    break
                rerank = f", re-rank x{tuned['rerank']}" if "rerank" in tuned else ""
                short += ("; " if short else "") + (
                    f"{attempt} recall@10 {tuned['recall_at_10']:.3f} < target {recall_target} at nprobe "
                    f"{tuned['nprobe']} (nlist {info['nlist']}{rerank}): vectors lack cluster structure")
                built = None
            if built is None:
                info["fallback"] = f"{short}; exact search"
        if built is None:
            built = FlatKind.build(dim)
            built.add(labels, vectors)
            info.update({"nlist": None, "nprobe": None, "rerank": None, "ef_search": None, "recall_at_10": 1.0})
        if isinstance(built, CompressedKind):
            info["rerank_dtype"] = built.floats.dtype
        record = BuildRecord(kind=built.name, requested=kind, recall_target=recall_target, built_n=n, **info)
        self = cls(built, labels, ids, store_version, record, next_label=n)
        if folder is not None:
            self.warm()
        self.record = BuildRecord(**{**record.to_dict(), "p50_ms": self._measure_p50_ms(vectors, seed),
                                     "build_seconds": round(time.perf_counter() - t0, 3)})
        return self

    @classmethod
    def from_parts(cls, parts: Sequence["VectorIndex"], store_version: int) -> "VectorIndex":
        """One index that searches ``parts`` as one (:mod:`.shards`): indexes of one kind and dim over disjoint
        clips, e.g. each built by one worker from its share of the store. Its answers are those of one index
        over all their vectors (exactly so for flat parts; ivf / compressed parts keep their own tuned
        settings, and the record's recall@10 is the lowest of theirs). The parts' structures are taken over,
        not copied: do not use the parts afterwards."""
        parts = list(parts)
        if not parts or any(isinstance(p._kind, ShardedKind) for p in parts):
            raise ValueError("from_parts needs one or more indexes, none of them sharded")
        offsets, labels, ids = [], [], []
        offset = 0
        for p in parts:
            offsets.append(offset)
            lbs, cids = p._ids.arrow()
            labels.append(lbs + offset)
            ids.append(cids)
            offset += p._next_label
        labels, ids = np.concatenate(labels), pa.concat_arrays(ids)
        if len(pa.compute.unique(ids)) != len(ids):
            raise ValueError("the parts hold the same clip id more than once")
        kind = ShardedKind([p._kind for p in parts], offsets)
        recs = [p.record for p in parts]
        fallbacks = sorted({r.fallback for r in recs if r.fallback})
        record = BuildRecord(kind=kind.name, requested=recs[0].requested,
                             recall_target=min(r.recall_target for r in recs), built_n=len(ids),
                             recall_at_10=min(r.recall_at_10 for r in recs), nlist=None, nprobe=None, rerank=None,
                             fallback="; ".join(fallbacks) or None,
                             build_seconds=round(sum(r.build_seconds or 0.0 for r in recs), 3), shards=len(parts))
        return cls(kind, labels, ids, store_version, record, next_label=offset)

    def _measure_p50_ms(self, vectors: np.ndarray, seed: int) -> float | None:
        n = len(vectors)
        if n == 0:
            return None
        rng = np.random.default_rng(seed + 1)
        qs = vectors[rng.choice(n, min(LATENCY_QUERIES, n), replace=False)]
        times = []
        for q in qs:
            t = time.perf_counter()
            self._kind.search(q[None, :], min(RECALL_K, n))
            times.append(time.perf_counter() - t)
            if len(times) >= 3 and sum(times) > 1.0:  # slow (large flat): a few queries are enough
                break
        return round(float(np.median(times)) * 1000, 3)

    # ---- properties -----------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self._kind.name

    @property
    def dim(self) -> int:
        return self._kind.dim

    @property
    def backend(self) -> str:
        """Which search answers: ``faiss-cpu``, ``faiss-gpu``, ``torch-cpu`` or ``torch-cuda``."""
        return self._copy.name if self._copy is not None else "faiss-cpu"

    @property
    def device(self) -> str:
        return self._copy.device if self._copy is not None else "cpu"

    @property
    def stats(self) -> dict:
        """For display: the build record, with ``n``, ``changes_since_build``, ``backend`` and ``device``."""
        out = {**self.record.to_dict(), "n": len(self), "changes_since_build": self.changes_since_build,
               "backend": self.backend, "device": self.device}
        graphs = [p for p, _ in self._parts() if isinstance(p, HnswKind)]
        if graphs:  # removed clips still in the graph (filtered out of every search), and a rebuild under way
            out.update({"tombstones": sum(g.tombstones for g in graphs),
                        "rebuilding": any(g.rebuilding for g in graphs)})
        return out

    @property
    def resident_bytes(self) -> int:
        """Bytes the CPU search structures hold in memory (codes, ids, centroids; not the mapped float copy,
        nor the label maps)."""
        return self._kind.resident_bytes

    @property
    def mapped_bytes(self) -> int:
        """Bytes of the float copy a compressed index re-ranks with (memory-mapped once saved), else 0."""
        return sum(p.floats.nbytes for p, _ in self._parts() if isinstance(p, CompressedKind))

    @property
    def ids(self) -> list[str]:
        """Clip ids, in label order (a copy)."""
        self._lock.acquire_read()
        try:
            return self._ids.ids()
        finally:
            self._lock.release_read()

    def __len__(self) -> int:
        return self._kind.ntotal

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._ids

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, n={len(self)}, dim={self.dim}, store_version={self.store_version})"

    def warm(self, wait: bool = False) -> bool:
        """Read a compressed index's float copy into the page cache in the background (when it fits in 3/4 of
        the available memory: :meth:`~.floatcopy.FloatCopy.warm`); done on :meth:`load`, and by :meth:`build`
        given a folder. ``wait``: return once every read was asked for (the kernel reads ahead on its own
        time). Returns whether any copy is being (or was) asked for."""
        started = [p.floats for p, _ in self._parts() if isinstance(p, CompressedKind) and p.floats.warm()]
        if wait:
            for f in started:
                f.warming.join()
        return bool(started)

    # ---- search device --------------------------------------------------------------------------------------

    def use_device(self, device: str = "cpu", backend: str = "auto") -> "VectorIndex":
        """Answer searches on ``device`` (``cpu``, ``cuda``, ``cuda:N``) with ``backend`` (see
        :func:`~.backends.resolve_backend`); returns ``self``. A :class:`~.backends.SearchDeviceError` when the
        device is not there.

        The device copy (FAISS GPU index, or torch tensor of the vectors) is derived from the CPU index, which
        stays the one that is caught up and saved. Searches in other threads wait while the copy is made.
        """
        name, dev = resolve_backend(device, backend)
        self._lock.acquire_write()
        try:
            if (name, dev) != (self.backend, self.device):
                self._copy = None
                self._copy = self._make_copy(name, dev)
        finally:
            self._lock.release_write()
        return self

    def _make_copy(self, name: str, dev: str) -> DeviceCopy | None:
        if name == "faiss-gpu" and not isinstance(self._kind, (ShardedKind, HnswKind)):
            return FaissGpuCopy(dev, self._kind.index, self._kind.params().get("nprobe"))
        if name in ("torch-cpu", "torch-cuda", "faiss-gpu"):  # sharded or a graph on a GPU: exact torch search
            labels, vectors = self._kind.contents()  # (N,), (N, dim)
            return TorchCopy(dev, labels, vectors)
        return None

    def _search_labels(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (B, k), labels (B, k))``, exact scores, from the active backend (read lock held)."""
        copy = self._copy
        if copy is not None:
            if copy.exact or not isinstance(self._kind, CompressedKind):
                found = copy.search(q, k)
                if found is not None:
                    return found
            else:  # compressed codes on the GPU: its candidates, re-scored exactly here
                found = copy.search(q, self._kind.candidates(k))
                if found is not None:
                    return rescore(self._kind.floats, q, found[1], k)
        return self._kind.search(q, k)

    # ---- search ---------------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, negative: bool = False) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(clip_id, score)`` per query, highest inner product first.

        ``queries`` is ``(dim,)`` or ``(B, dim)``; the answer always has one list per query (``B`` lists).
        ``negative=True`` returns the most negative scores first (searching with ``-q`` and negating back).
        ``k`` larger than the index returns every clip it finds; an empty index returns empty lists.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k={k!r} is invalid: a positive int")
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]  # (1, dim)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries shape {np.shape(queries)} is invalid: ({self.dim},) or (B, {self.dim})")
        if not np.isfinite(q).all():
            raise ValueError("queries contain NaN or inf")
        if negative:
            q = -q
        q = np.ascontiguousarray(q)  # (B, dim) float32
        self._lock.acquire_read()
        try:
            n = len(self)
            if n == 0 or q.shape[0] == 0:
                return [[] for _ in range(q.shape[0])]
            scores, labels = self._search_labels(q, min(int(k), n))  # (B, kk), (B, kk)
            id_of = self._ids.id_of
            out = [[(id_of(lb), float(s)) for lb, s in zip(lrow, srow) if lb >= 0]
                   for lrow, srow in zip(labels.tolist(), scores.tolist())]
        finally:
            self._lock.release_read()
        if negative:
            out = [[(c, -s) for c, s in row] for row in out]
        return out

    def count_held(self, clip_ids: frozenset[str]) -> int:
        """How many of ``clip_ids`` the index holds (e.g. tombstoned clips whose rows are not yet deleted).

        Cached per (store version, set object): a tombstone set is one object until it changes, so a search
        pays for this only when either moves."""
        key = (self.store_version, id(clip_ids))
        cached = self._held_cache
        if cached is not None and cached[0] == key and cached[1] is clip_ids:
            return cached[2]
        self._lock.acquire_read()
        try:
            n = sum(1 for c in clip_ids if c in self._ids)
        finally:
            self._lock.release_read()
        self._held_cache = (key, clip_ids, n)
        return n

    # ---- catch-up -------------------------------------------------------------------------------------------

    def diff(self, store_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """``(added, removed)``: ids in ``store_ids`` not indexed, and indexed ids not in ``store_ids``."""
        held = self._ids.ids()
        store_set, held_set = set(store_ids), set(held)
        added = [c for c in dict.fromkeys(store_ids) if c not in held_set]
        removed = [c for c in held if c not in store_set]
        return added, removed

    def catch_up(self, ids: Sequence[str], vectors: np.ndarray, store_version: int) -> tuple[int, int]:
        """Make the index hold exactly ``ids`` (a store snapshot: ``vectors`` row ``i`` for ``ids[i]``).

        Removes the indexed ids not in ``ids`` and adds the new ones (:meth:`apply`). Returns ``(added,
        removed)``.
        """
        ids = list(ids)
        vectors = self._rows_for(ids, vectors)
        self._lock.acquire_read()
        try:
            added, removed = self.diff(ids)
        finally:
            self._lock.release_read()
        return self.apply(added, vectors[positions(ids, added)], removed, store_version)

    def _rows_for(self, ids: list[str], vectors) -> np.ndarray:
        """``vectors`` as an array, checked to hold one ``dim``-wide row per id."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids) or (len(ids) and vectors.shape[1] != self.dim):
            raise ValueError(f"vectors shape {vectors.shape} does not match {len(ids)} ids of dim {self.dim}")
        return vectors

    def apply(self, added: Sequence[str], vectors: np.ndarray, removed: Sequence[str], store_version: int
              ) -> tuple[int, int]:
        """Add ``added`` (``vectors`` row ``i`` for ``added[i]``) and remove ``removed`` (in the CPU index and in
        the search copy on a device, if any), then record ``store_version``. Ids already held are not added
        again, ids not held are not removed. Searches in other threads wait while this runs and then see the
        new state. Returns ``(added, removed)`` counts."""
        added = list(added)
        vectors = self._rows_for(added, vectors)
        self._lock.acquire_write()
        try:
            seen: set[str] = set()
            keep = []  # the first occurrence of each id not held
            for i, c in enumerate(added):
                if c not in seen and c not in self._ids:
                    seen.add(c)
                    keep.append(i)
            added = [added[i] for i in keep]
            new_vecs = _as_matrix(vectors[keep] if keep else np.zeros((0, self.dim)), len(added))
            found = [(c, self._ids.label(c)) for c in dict.fromkeys(removed)]
            removed = [c for c, lb in found if lb is not None]
            rm = np.array([lb for _, lb in found if lb is not None], dtype=np.int64)
            new_labels = np.arange(self._next_label, self._next_label + len(added), dtype=np.int64)
            if removed:
                self._kind.remove(rm)
                self._ids.remove(rm)
            if added:
                self._kind.add(new_labels, new_vecs)
                self._ids.add(added, int(new_labels[0]))
                self._next_label += len(added)
            if self._copy is not None and (removed or added):
                try:
                    self._copy.update(self._kind, rm, new_labels, new_vecs)
                except Exception:  # never answer from a stale copy: the CPU index is current, search there
                    log.warning("search copy on %s (%s) could not follow the catch-up; searching on the CPU",
                                self.device, self.backend, exc_info=True)
                    self._copy = None
                    raise
            self.store_version = int(store_version)
            self.changes_since_build += len(added) + len(removed)
            self.unsaved_changes += len(added) + len(removed)
        finally:
            self._lock.release_write()
        return len(added), len(removed)

    # ---- persistence ----------------------------------------------------------------------------------------

    def _parts(self) -> list[tuple[Kind, int]]:
        """``(kind, label offset)`` of each part: one, or a sharded index's parts."""
        k = self._kind
        return list(zip(k.parts, k.offsets.tolist())) if isinstance(k, ShardedKind) else [(k, 0)]

    def save(self, index_dir: str | os.PathLike) -> None:
        """Write ``faiss.index`` (a sharded index: ``faiss.shard-<i>.index`` per part), ``faiss.ids`` (and a
        compressed index's float segments), then ``faiss.json``, each atomically, into ``index_dir``; then
        delete float segments no saved index names."""
        index_dir = Path(index_dir)
        index_dir.mkdir(parents=True, exist_ok=True)
        parts = self._parts()
        self._lock.acquire_read()  # a consistent state: no catch-up while serializing
        try:
            blobs, part_meta = [], []
            for i, (part, offset) in enumerate(parts):
                blobs.append(memoryview(np.ascontiguousarray(_faiss().serialize_index(part.index))))
                pm = {"file": INDEX_FILE if len(parts) == 1 else f"faiss.shard-{i}.index", "offset": offset,
                      "params": part.params()}
                if isinstance(part, CompressedKind):
                    pm["segments"] = part.floats.save_to(index_dir)
                    pm["float_dtype"] = part.floats.dtype
                part_meta.append(pm)
            ids_blob = _ids_blob(*self._ids.arrow())
            meta = {"format": FORMAT, "kind": self.kind, "store_version": self.store_version, "count": len(self),
                    "dim": self.dim, "next_label": self._next_label,
                    "changes_since_build": self.changes_since_build, "synced_at": self.synced_at,
                    "stats": self.record.to_dict(), "parts": part_meta}
            unsaved = self.unsaved_changes
        finally:
            self._lock.release_read()
        for pm, blob in zip(part_meta, blobs):
            atomic_write(index_dir / pm["file"], blob)
            pm.update({"index_bytes": blob.nbytes, "crc32": zlib.crc32(blob)})
        atomic_write(index_dir / IDS_FILE, ids_blob)
        meta.update({"ids_bytes": len(ids_blob), "ids_crc32": zlib.crc32(ids_blob)})
        atomic_write(index_dir / META_FILE, json.dumps(meta).encode("utf-8"))
        self.unsaved_changes -= unsaved
        self.saved_at = time.time()
        copies = [part.floats for part, _ in parts if isinstance(part, CompressedKind)]
        if copies:
            copies[0].remove_unused(also_used={m["name"] for c in copies for m in c.to_meta()})

    @classmethod
    def load(cls, index_dir: str | os.PathLike) -> "VectorIndex":
        """Read a saved index. ``FileNotFoundError`` if none; ``ValueError`` if the files are inconsistent."""
        index_dir = Path(index_dir)
        meta_path = index_dir / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"no saved FAISS index in {str(index_dir)!r}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            fmt = meta.get("format") if isinstance(meta, dict) else None
            raise ValueError(f"{str(meta_path)!r}: saved in format {fmt!r}, this version reads {FORMAT}")
        kind = meta.get("kind")
        if kind not in (KIND_FLAT, KIND_IVF, KIND_COMPRESSED, KIND_HNSW) or not meta.get("parts"):
            raise ValueError(f"{str(meta_path)!r}: unknown kind {kind!r} or no parts")
        missing = [pm["file"] for pm in meta["parts"] if not (index_dir / pm["file"]).exists()]
        if missing:
            raise FileNotFoundError(f"no saved FAISS index in {str(index_dir)!r} ({', '.join(missing)} missing)")
        table = pa.ipc.open_file(pa.py_buffer(_read_checked(index_dir / IDS_FILE, meta.get("ids_bytes"),
                                                            meta.get("ids_crc32")))).read_all()
        labels, ids = table.column("label").to_numpy(), table.column("clip_id")
        bounds = [int(pm["offset"]) for pm in meta["parts"]] + [int(meta["next_label"])]
        parts = [_load_part(index_dir, pm, kind, int(meta["dim"]), labels[(labels >= a) & (labels < b)] - a)
                 for pm, a, b in zip(meta["parts"], bounds, bounds[1:])]
        built = parts[0] if len(parts) == 1 else ShardedKind(parts, [int(pm["offset"]) for pm in meta["parts"]])
        if built.ntotal != meta["count"] or len(ids) != meta["count"] or built.dim != meta["dim"]:
            raise ValueError(f"{str(index_dir)!r}: faiss index has {built.ntotal} x {built.dim}, metadata says "
                             f"{meta['count']} x {meta['dim']} with {len(ids)} ids")
        record = BuildRecord.from_dict(meta.get("stats") or {})
        if record.kind != kind:
            raise ValueError(f"{str(meta_path)!r}: kind {kind!r}, its record says {record.kind!r}")
        self = cls(built, labels, ids, meta["store_version"], record, next_label=meta["next_label"],
                   changes_since_build=int(meta.get("changes_since_build", 0)))
        synced = meta.get("synced_at")
        self.synced_at = float(synced) if isinstance(synced, (int, float)) else None
        self.saved_at = time.time()
        self.warm()
        return self


def _load_part(index_dir: Path, pm: dict, kind: str, dim: int, live: np.ndarray) -> Kind:
    """One saved part; ``live``: the labels (the part's own) the id map holds."""
    faiss = _faiss()
    path = index_dir / pm["file"]
    index = faiss.deserialize_index(np.frombuffer(_read_checked(path, pm.get("index_bytes"), pm.get("crc32")),
                                                  np.uint8))
    expect = {KIND_FLAT: faiss.IndexIDMap2, KIND_IVF: faiss.IndexIVFFlat,
              KIND_COMPRESSED: faiss.IndexIVFScalarQuantizer, KIND_HNSW: faiss.IndexIDMap2}[kind]
    if not isinstance(index, expect):
        raise ValueError(f"{str(path)!r} is a {type(index).__name__}, expected {expect.__name__} ({kind})")
    if kind == KIND_FLAT:
        if not isinstance(faiss.downcast_index(index.index), faiss.IndexFlat):
            raise ValueError(f"{str(path)!r} holds no flat index ({kind})")
        part: Kind = FlatKind(index)
    elif kind == KIND_IVF:
        part = IvfKind(index)
    elif kind == KIND_HNSW:
        if not isinstance(faiss.downcast_index(index.index), faiss.IndexHNSWFlat):
            raise ValueError(f"{str(path)!r} holds no HNSW graph ({kind})")
        part = HnswKind(index)
        part.keep_only(live)  # the nodes the id map no longer holds are tombstones
    else:
        part = CompressedKind(index, FloatCopy.load(index_dir, dim, pm.get("segments") or [],
                                                    pm.get("float_dtype", "float32")))
    part.set_params(pm.get("params") or {})
    return part
