"""The ``hnsw`` kind: a FAISS HNSW graph over the float32 vectors, for vectors without cluster structure.

A graph cannot delete a node, so a removal is a *tombstone*: the label joins a set that every search filters
out inside FAISS (an ``IDSelectorNot`` over the set, passed in the search parameters, so a search still
returns ``k`` live neighbours). The graph's vectors are stored uncompressed: scores are exact inner products.

When the tombstoned share of the graph's nodes passes :data:`REBUILD_SHARE`, a new graph over the live
vectors is built in a background thread while searches go on against the old one. Adds and removes made
meanwhile go to the old graph and into a journal; when the new graph is built the journal is replayed into it
(removes become its tombstones) and it takes the old one's place in one assignment, so a removed clip never
comes back. While it is built both graphs are in memory.

Saved as the FAISS serialization of the graph (tombstoned nodes included); the tombstones are not saved: they
are the graph's labels that the index's id map no longer holds (:meth:`HnswKind.keep_only`).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from .backends import _faiss
from .kinds import ADD_CHUNK, KIND_HNSW, RECALL_K, RECALL_QUERIES, Kind, add_chunked, exact_topk, recall_at_k

#: graph degree (FAISS's ``M``: links per node per layer, twice as many on the bottom layer)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
#: ``efSearch`` values tried while tuning, in this order (the first reaching the recall target is kept)
EF_SEARCH_LADDER = (16, 32, 64, 128, 256, 512, 1024)
#: tombstoned share of the graph's nodes that starts a background rebuild
REBUILD_SHARE = 0.1
#: the graph is not rebuilt for fewer tombstones than this (small graphs: a filtered search is cheap)
REBUILD_MIN = 64

log = logging.getLogger("motive_index.index")


def _new_graph(dim: int):
    faiss = _faiss()
    graph = faiss.IndexHNSWFlat(int(dim), HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return faiss.IndexIDMap2(graph)


def _stored(index) -> tuple[np.ndarray, np.ndarray]:
    """Zero-copy ``(labels (N,), vectors (N, dim))`` of every node of the graph ``index``, tombstones included."""
    faiss = _faiss()
    n, dim = int(index.ntotal), int(index.d)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    storage = faiss.downcast_index(faiss.downcast_index(index.index).storage)
    vecs = faiss.rev_swig_ptr(storage.get_xb(), n * dim).reshape(n, dim)
    return faiss.rev_swig_ptr(index.id_map.data(), n), vecs


class _State:
    """One graph and its tombstones, swapped as one object (a search takes one and uses it throughout)."""

    def __init__(self, index, removed: np.ndarray):
        faiss = _faiss()
        self.index = index
        self.removed = np.unique(np.asarray(removed, np.int64))  # sorted tombstoned labels
        # the selector objects must outlive every search that uses them: kept here, with the graph
        self._batch = faiss.IDSelectorBatch(self.removed) if len(self.removed) else None
        self.selector = faiss.IDSelectorNot(self._batch) if self._batch is not None else None


class HnswKind(Kind):
    """A FAISS HNSW graph with tombstone removal and a background rebuild (see the module)."""

    name = KIND_HNSW

    def __init__(self, index, removed=(), ef_search: int = 64, rebuild_share: float = REBUILD_SHARE):
        # not Kind.__init__: the graph lives in the state, swapped whole by a rebuild
        self._state = _State(index, np.asarray(removed, np.int64))
        self.ef_search = int(ef_search)
        self.rebuild_share = float(rebuild_share)
        self._lock = threading.Lock()  # between add / remove and the rebuild thread (searches take no lock)
        self._journal: list[tuple[str, np.ndarray, np.ndarray | None]] | None = None  # changes during a rebuild
        self._rebuild: threading.Thread | None = None
        self.rebuilds = 0              # rebuilds finished (for display and tests)
        self.last_rebuild_error: str | None = None
        #: called at the start of a background rebuild's build, outside the lock (tests hold it there)
        self._on_rebuild_start = None

    @classmethod
    def build(cls, dim: int) -> "HnswKind":
        return cls(_new_graph(dim))

    @property
    def index(self):
        return self._state.index

    @property
    def ntotal(self) -> int:
        st = self._state
        return int(st.index.ntotal) - len(st.removed)

    @property
    def dim(self) -> int:
        return int(self._state.index.d)

    @property
    def tombstones(self) -> int:
        return len(self._state.removed)

    @property
    def rebuilding(self) -> bool:
        return self._rebuild is not None and self._rebuild.is_alive()

    def search(self, q, k):
        st = self._state
        faiss = _faiss()
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, int(k)))
        if st.selector is not None:
            params.sel = st.selector
        return st.index.search(q, int(k), params=params)

    def add(self, labels, vectors) -> None:
        labels = np.asarray(labels, np.int64)
        with self._lock:
            add_chunked(self._state.index, labels, vectors)
            if self._journal is not None:
                self._journal.append(("add", labels.copy(), np.array(vectors, np.float32)))

    def remove(self, labels) -> None:
        labels = np.asarray(labels, np.int64)
        if not len(labels):
            return
        with self._lock:
            st = self._state
            self._state = _State(st.index, np.concatenate([st.removed, labels]))
            if self._journal is not None:
                self._journal.append(("remove", labels.copy(), None))
        self._maybe_rebuild()

    def keep_only(self, live: np.ndarray) -> None:
        """Tombstone every node whose label is not in ``live`` (after a load: the id map says which are)."""
        labels, _ = _stored(self._state.index)
        gone = np.setdiff1d(labels, np.asarray(live, np.int64))
        with self._lock:
            self._state = _State(self._state.index, gone)

    def params(self) -> dict:
        return {"ef_search": self.ef_search}

    def set_params(self, params: dict) -> None:
        if "ef_search" in params:
            self.ef_search = int(params["ef_search"])

    def contents(self):
        st = self._state
        labels, vecs = _stored(st.index)
        live = ~np.isin(labels, st.removed) if len(st.removed) else np.ones(len(labels), bool)
        return np.array(labels[live], np.int64), np.array(vecs[live], np.float32)

    @property
    def resident_bytes(self) -> int:
        """Vectors, ids and the bottom layer's links of every node, tombstones included (upper layers are few)."""
        n = int(self._state.index.ntotal)
        return n * (self.dim * 4 + 8 + 2 * HNSW_M * 4)

    # ---- the background rebuild ------------------------------------------------------------------------------

    def _maybe_rebuild(self) -> None:
        st = self._state
        dead = len(st.removed)
        if dead < REBUILD_MIN or dead <= self.rebuild_share * int(st.index.ntotal) or self.rebuilding:
            return
        self.start_rebuild()

    def start_rebuild(self) -> bool:
        """Start building a graph of the live vectors in a background thread; False if one is under way."""
        with self._lock:
            if self.rebuilding:
                return False
            self._journal = []
            labels, vectors = self.contents()  # copies: the old graph may grow meanwhile
            self._rebuild = threading.Thread(target=self._rebuild_from, args=(labels, vectors),
                                             name="motive-hnsw-rebuild", daemon=True)
            self._rebuild.start()
        return True

    def wait_rebuilt(self, timeout: float | None = None) -> bool:
        """Wait for a rebuild under way to finish; True when none is running any more."""
        t = self._rebuild
        if t is not None:
            t.join(timeout)
        return not self.rebuilding

    def _rebuild_from(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        t0 = time.perf_counter()
        try:
            if self._on_rebuild_start is not None:
                self._on_rebuild_start()
            fresh = _new_graph(vectors.shape[1])
            add_chunked(fresh, labels, vectors)
            with self._lock:  # replay what changed while building, then swap in one assignment
                removed = []
                for op, lbs, vecs in self._journal:
                    if op == "add":
                        add_chunked(fresh, lbs, vecs)
                    else:
                        removed.append(lbs)
                old = self._state
                self._state = _State(fresh, np.concatenate(removed) if removed else np.zeros(0, np.int64))
                self._journal = None
                self.rebuilds += 1
            log.info("hnsw graph rebuilt without %d tombstones in %.1fs (%d nodes)", len(old.removed),
                     time.perf_counter() - t0, int(fresh.ntotal))
        except Exception as e:  # the old graph (with its tombstones) keeps answering
            with self._lock:
                self._journal = None
            self.last_rebuild_error = f"{type(e).__name__}: {e}"
            log.warning("hnsw background rebuild failed; the graph with tombstones keeps answering",
                        exc_info=True)


def build_hnsw(vectors: np.ndarray, labels: np.ndarray, recall_target: float, seed: int
               ) -> tuple[HnswKind, dict]:
    """A graph over ``vectors`` with ``efSearch`` tuned to ``recall_target``, and the tuning's stats.

    Tuned on held-out queries: :data:`RECALL_QUERIES` sampled vectors are left out of the graph while
    ``efSearch`` is raised along :data:`EF_SEARCH_LADDER` (recall@10 against exact search over the others),
    then added. A query that is itself a node of the graph is found through its own links and would overstate
    the recall a new query (a generated video's vector) gets: 0.95 measured that way was 0.89 on held-out
    queries (3 k random unit vectors of dim 32). Returns ``{ef_search, recall_at_10, recall_by_nprobe (by
    efSearch), reached}``."""
    n = len(vectors)
    kind = HnswKind.build(vectors.shape[1])
    rng = np.random.default_rng(seed)
    nq = min(RECALL_QUERIES, n // 10)
    qpos = np.sort(rng.choice(n, nq, replace=False))
    rest = np.ones(n, bool)
    rest[qpos] = False
    for a in range(0, n, ADD_CHUNK):  # the graph without the queries, in chunks (vectors may be a memory map)
        keep = np.flatnonzero(rest[a:a + ADD_CHUNK]) + a
        add_chunked(kind.index, labels[keep], np.asarray(vectors[keep]))
    queries = np.ascontiguousarray(vectors[qpos], np.float32)
    truth = labels[exact_topk(vectors, queries, min(RECALL_K, n - nq), exclude=qpos)]  # (nq, 10)
    tried: dict[str, float] = {}
    best = None
    for ef in EF_SEARCH_LADDER:
        kind.ef_search = ef
        _, found = kind.search(queries, truth.shape[1])
        rec = round(recall_at_k(found, truth, np.full(nq, -1), RECALL_K), 4)
        tried[str(ef)] = rec
        if best is None or rec > best[0] or rec >= recall_target:
            best = (rec, ef)
        if rec >= recall_target:
            break
    rec, ef = best
    kind.ef_search = ef
    add_chunked(kind.index, labels[qpos], queries)
    return kind, {"ef_search": ef, "recall_at_10": rec, "recall_by_nprobe": tried, "reached": rec >= recall_target}
