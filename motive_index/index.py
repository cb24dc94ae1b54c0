"""FAISS inner-product search, derived from the store and never ahead of it.

The index is a cache of the store's vectors: it records the store (``clips`` table) version it was built from
and :func:`open_index` loads it only while that version is still the store's newest; otherwise (missing,
stale, unreadable) it rebuilds from the store and saves again. Saved as ``INDEX_DIR/faiss.index`` (the FAISS
serialization) and ``INDEX_DIR/faiss.json`` (store_version, count, dim, kind, ids), each written to a temp file
and moved into place with ``os.replace``, the JSON last, so a reader never pairs a new JSON with an old index.

No torch, no model code here.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ._io import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from .store import ClipStore

INDEX_FILE = "faiss.index"
META_FILE = "faiss.json"
FORMAT = 1
KIND_FLAT_IP = "flat_ip"

_log = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("motive-index needs FAISS for search: pip install faiss-cpu "
                          "(or faiss-gpu on a CUDA machine)") from e
    return faiss


class VectorIndex:
    """Exact inner-product search (``faiss.IndexFlatIP``) over a store's vectors.

    Row ``i`` of the FAISS index is clip ``ids[i]``. ``store_version`` is the store version the vectors came
    from. Build with :meth:`build`, persist with :meth:`save` / :meth:`load`, or get a current one from
    :func:`open_index`.
    """

    kind = KIND_FLAT_IP

    def __init__(self, index, ids: list[str], store_version: int):
        if index.ntotal != len(ids):
            raise ValueError(f"index has {index.ntotal} vectors but {len(ids)} ids")
        self._index = index
        self._ids = list(ids)
        self.store_version = int(store_version)

    # ---- construction ---------------------------------------------------------------------------------------

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, store_version: int) -> "VectorIndex":
        """Index ``vectors`` (``(N, dim)``, row ``i`` for ``ids[i]``) as read at ``store_version``."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] < 1:
            raise ValueError(f"vectors shape {vectors.shape} is invalid: (N, dim) with dim >= 1")
        if vectors.shape[0] != len(ids):
            raise ValueError(f"{vectors.shape[0]} vectors but {len(ids)} ids")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, dim)
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or inf")
        index = _faiss().IndexFlatIP(int(vectors.shape[1]))
        if len(vectors):
            index.add(vectors)
        return cls(index, list(ids), store_version)

    # ---- properties -----------------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def ids(self) -> list[str]:
        """Clip ids by index position (a copy)."""
        return list(self._ids)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, n={len(self)}, dim={self.dim}, store_version={self.store_version})"

    # ---- search ---------------------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, negative: bool = False) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(clip_id, score)`` per query, highest inner product first.

        ``queries`` is ``(dim,)`` or ``(B, dim)``; the answer always has one list per query (``B`` lists).
        ``negative=True`` returns the most negative scores first (searching with ``-q`` and negating back).
        ``k`` larger than the index returns every clip; an empty index returns empty lists.
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
        n = len(self)
        if n == 0 or q.shape[0] == 0:
            return [[] for _ in range(q.shape[0])]
        kk = min(int(k), n)
        scores, pos = self._index.search(q, kk)  # (B, kk), (B, kk)
        if negative:
            scores = -scores
        ids = self._ids
        return [[(ids[p], float(s)) for p, s in zip(prow, srow) if p >= 0]
                for prow, srow in zip(pos.tolist(), scores.tolist())]

    # ---- persistence ----------------------------------------------------------------------------------------

    def save(self, index_dir: str | os.PathLike) -> None:
        """Write ``faiss.index`` then ``faiss.json`` atomically into ``index_dir``."""
        index_dir = Path(index_dir)
        index_dir.mkdir(parents=True, exist_ok=True)
        data = _faiss().serialize_index(self._index)  # uint8 array
        blob = memoryview(np.ascontiguousarray(data))
        atomic_write(index_dir / INDEX_FILE, blob)
        meta = {"format": FORMAT, "kind": self.kind, "store_version": self.store_version, "count": len(self),
                "dim": self.dim, "index_bytes": blob.nbytes, "crc32": zlib.crc32(blob), "ids": self._ids}
        atomic_write(index_dir / META_FILE, json.dumps(meta).encode("utf-8"))

    @classmethod
    def load(cls, index_dir: str | os.PathLike) -> "VectorIndex":
        """Read a saved index. ``FileNotFoundError`` if none; ``ValueError`` if the files are inconsistent."""
        index_dir = Path(index_dir)
        meta_path, index_path = index_dir / META_FILE, index_dir / INDEX_FILE
        if not meta_path.exists() or not index_path.exists():
            raise FileNotFoundError(f"no saved FAISS index in {str(index_dir)!r}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") != cls.kind:
            raise ValueError(f"{str(meta_path)!r}: unknown format/kind "
                             f"{meta.get('format') if isinstance(meta, dict) else meta!r}")
        data = np.fromfile(index_path, dtype=np.uint8)
        if data.size != meta.get("index_bytes"):
            raise ValueError(f"{str(index_path)!r} has {data.size} bytes, {str(meta_path)!r} expects "
                             f"{meta.get('index_bytes')}")
        if zlib.crc32(memoryview(data)) != meta.get("crc32"):
            raise ValueError(f"{str(index_path)!r}: checksum does not match {str(meta_path)!r}")
        index = _faiss().deserialize_index(data)
        ids = meta["ids"]
        if index.ntotal != meta["count"] or len(ids) != meta["count"] or index.d != meta["dim"]:
            raise ValueError(f"{str(index_dir)!r}: faiss index has {index.ntotal} x {index.d}, metadata says "
                             f"{meta['count']} x {meta['dim']} with {len(ids)} ids")
        if not isinstance(index, _faiss().IndexFlatIP):
            raise ValueError(f"{str(index_path)!r} is a {type(index).__name__}, expected IndexFlatIP")
        return cls(index, ids, meta["store_version"])


def open_index(store: "ClipStore", index_dir: str | os.PathLike | None = None,
               log: logging.Logger = _log) -> VectorIndex:
    """A :class:`VectorIndex` current with ``store``: the saved one if still current, else rebuilt and saved.

    ``index_dir`` defaults to the store's folder. Logs one INFO line saying whether the index was loaded or
    why it was rebuilt (missing, stale, corrupt). A failure to save (read-only folder) is logged, not raised.
    """
    index_dir = Path(index_dir) if index_dir is not None else Path(store.path)
    version, count, dim = store.version, len(store), store.dim
    try:
        index = VectorIndex.load(index_dir)
    except FileNotFoundError:
        why = "built (no saved index)"
    except Exception as e:  # garbage or truncated files, a FAISS error, bad JSON: rebuild
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        why = f"rebuilt because corrupt: {type(e).__name__}: {first_line}"
    else:
        if index.store_version == version and len(index) == count and index.dim == dim:
            log.info("FAISS index at %s: loaded (store version %d, %d vectors, dim %d)",
                     index_dir, version, count, dim)
            return index
        why = (f"rebuilt because stale (index: store version {index.store_version}, {len(index)} vectors, "
               f"dim {index.dim}; store: version {version}, {count} vectors, dim {dim})")
    version, ids, vectors = store.snapshot()
    index = VectorIndex.build(ids, vectors, version)
    try:
        index.save(index_dir)
    except OSError as e:
        log.warning("FAISS index at %s: could not save (%s); using it in memory", index_dir, e)
    log.info("FAISS index at %s: %s; now store version %d, %d vectors", index_dir, why, version, len(index))
    return index
