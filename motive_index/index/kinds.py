"""The index kinds: how the CPU index over the vectors is built, tuned, searched and kept in step.

- ``flat`` (:class:`FlatKind`): exact search, ``IndexFlatIP`` behind an ``IndexIDMap2``. Single queries are
  scored with one NumPy matrix-vector product over FAISS's own storage (BLAS uses every core; FAISS runs one
  query on one thread), batches by FAISS.
- ``ivf`` (:class:`IvfKind`): ``IndexIVFFlat``; vectors stored uncompressed, so its scores are the exact inner
  products of the candidates it visits. ``nprobe`` tuned to a recall target.
- ``compressed`` (:class:`CompressedKind`): ``IndexIVFScalarQuantizer`` (8-bit codes, a quarter of float32),
  whose ``rerank x k`` best candidates are re-scored exactly against the float32 vectors
  (:class:`~.floatcopy.FloatCopy`, memory-mapped from disk): returned scores are exact inner products, and
  recall is tuned and measured after the re-rank.

Tuning (:func:`tune`): ``nprobe`` (and, for ``compressed``, the re-rank depth) is raised until recall@10 on the
store's own vectors (sampled stored vectors as queries, themselves left out, against exact search) reaches the
target. ``auto`` (:func:`choose_kind`) picks by size.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from .backends import _faiss
from .floatcopy import FloatCopy

KIND_FLAT = "flat"
KIND_IVF = "ivf"
KIND_COMPRESSED = "compressed"
KIND_HNSW = "hnsw"  # :mod:`.hnsw`: a graph, asked for by name (``auto`` never picks it: see choose_kind)
KINDS = ("auto", KIND_FLAT, KIND_IVF, KIND_COMPRESSED, KIND_HNSW)

#: ``auto`` picks exact search while N * dim is at most this (flat single-query p50 on the 2-core dev machine:
#: 0.5 ms at 5 k x 512, 1.3 ms at 10 k, 3.8 ms at 20 k: 2 ms is passed near 15 k x 512 = 7.7 M floats).
AUTO_FLAT_MAX_ELEMENTS = 8_000_000
#: ``auto`` picks ``compressed`` above this many floats (N * dim; 2 M x 512 = 4 GB of float32 in memory)
AUTO_COMPRESSED_MIN_ELEMENTS = 1 << 30
#: a compressed index's float copy is kept as float16 (``float_copy="auto"``) when float32 would take more than
#: this many bytes (above 4 M x 512): 10 M x 512 is 10 GB instead of 20, so the re-rank's rows can stay in the
#: page cache of a 24 GB machine; scores are then exact for the float16-rounded vectors (about 1e-4 off)
AUTO_FLOAT16_MIN_BYTES = 8 << 30
FLOAT_COPIES = ("auto", "float32", "float16")
#: ``ivf`` / ``compressed`` need at least this many vectors (fewer: exact search is both exact and fast).
IVF_MIN_N = 256
IVF_MAX_NLIST = 4096
#: k-means training sample: this many vectors per list (bounded by N; FAISS warns below 39)
IVF_TRAIN_PER_LIST = 39
#: lists per sqrt(N): 2 sqrt(N) = 2000 at 1 M (built in 36 s on 2 cores with p50 0.40 ms, recall@10 0.98 at
#: nprobe 2; 4 sqrt(N) = 4000 took 89 s, p50 0.61 ms in the same run: k-means costs nlist^2, the assignment nlist)
IVF_LISTS_PER_SQRT_N = 2
IVF_TRAIN_NITER = 10
#: the scalar quantizer's training sample (its per-dimension ranges)
SQ_TRAIN_N = 100_000
RECALL_QUERIES = 200             # sampled stored vectors used to measure recall@10
RECALL_K = 10
#: compressed: candidates re-scored per wanted neighbour, tried in this order (with each, nprobe is raised; then
#: every list is scanned)
RERANK_FACTORS = (4, 16)
#: vectors added to an IVF index per call while building (bounded memory for the codes' temporaries)
ADD_CHUNK = 100_000
#: a single query (or at most this many) is answered by one NumPy product on a flat index, and by an IVF index
#: with its inverted lists scanned in parallel (FAISS's parallel_mode 1; larger batches: one query per thread)
NUMPY_MAX_BATCH = 4


def choose_kind(n: int, dim: int, kind: str = "auto") -> str:
    """The index kind ``kind`` means for ``n`` vectors of ``dim``: ``auto`` -> flat, ivf or compressed by size."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is invalid: one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    if n * dim <= AUTO_FLAT_MAX_ELEMENTS or n < IVF_MIN_N:
        return KIND_FLAT
    return KIND_COMPRESSED if n * dim > AUTO_COMPRESSED_MIN_ELEMENTS else KIND_IVF


def choose_float_copy(n: int, dim: int, float_copy: str = "auto") -> str:
    """The dtype of a compressed index's float copy: ``auto`` -> float16 above :data:`AUTO_FLOAT16_MIN_BYTES`."""
    if float_copy not in FLOAT_COPIES:
        raise ValueError(f"float_copy={float_copy!r} is invalid: one of {', '.join(FLOAT_COPIES)}")
    if float_copy != "auto":
        return float_copy
    return "float16" if n * dim * 4 > AUTO_FLOAT16_MIN_BYTES else "float32"


def choose_nlist(n: int) -> int:
    """``~2 sqrt(n)`` (:data:`IVF_LISTS_PER_SQRT_N`), at most :data:`IVF_MAX_NLIST` and at most ``n / 39``
    (k-means needs points per list)."""
    return int(max(1, min(round(IVF_LISTS_PER_SQRT_N * math.sqrt(max(n, 1))), IVF_MAX_NLIST, n // 39)))


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 65536,
               exclude: np.ndarray | None = None) -> np.ndarray:
    """Row positions of the exact top-``k`` inner products, best first: ``(B, k)`` int64 (NumPy, in row blocks,
    so no copy of ``vectors`` is made). Rows in ``exclude`` (sorted positions) are never returned."""
    b = len(queries)
    best_s = np.full((b, 0), -np.inf, np.float32)
    best_p = np.zeros((b, 0), np.int64)
    for a in range(0, len(vectors), block):
        s = queries @ np.asarray(vectors[a:a + block]).T  # (B, block)
        if exclude is not None:
            lo, hi = np.searchsorted(exclude, [a, a + s.shape[1]])
            s[:, exclude[lo:hi] - a] = -np.inf
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]  # (B, kk)
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_p = np.concatenate([best_p, part + a], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_p = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_p, keep, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_p, order, 1)


def _top_of(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores (B, k), columns (B, k))`` of the ``k`` highest per row of ``scores`` (B, M), best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    s = np.take_along_axis(scores, part, 1)
    order = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(s, order, 1), np.take_along_axis(part, order, 1)


def recall_at_k(found: np.ndarray, truth: np.ndarray, self_labels: np.ndarray, k: int) -> float:
    """Mean share of the true top-``k`` (each query's own label left out of both lists) found in the top-``k``."""
    hits = 0
    for f, t, own in zip(found.tolist(), truth.tolist(), self_labels.tolist()):
        f = [x for x in f if x != own and x >= 0][:k]
        t = [x for x in t if x != own and x >= 0][:k]
        hits += len(set(f) & set(t)) / max(1, len(t))
    return hits / max(1, len(found))


def add_chunked(index, labels: np.ndarray, vectors: np.ndarray) -> None:
    """``index.add_with_ids`` in chunks of :data:`ADD_CHUNK` (bounded temporaries; ``vectors`` may be a map)."""
    for a in range(0, len(labels), ADD_CHUNK):
        index.add_with_ids(np.ascontiguousarray(vectors[a:a + ADD_CHUNK], np.float32),
                           np.ascontiguousarray(labels[a:a + ADD_CHUNK], np.int64))


# ---- the kinds -------------------------------------------------------------------------------------------------


class Kind:
    """A CPU index over labelled vectors. :meth:`search` returns ``(scores (B, k), labels (B, k))`` best first,
    scores exact inner products, label -1 padding where fewer are found."""

    name = ""

    def __init__(self, index):
        self.index = index

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(q, k)

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        add_chunked(self.index, labels, vectors)

    def remove(self, labels: np.ndarray) -> None:
        if len(labels):
            self.index.remove_ids(_faiss().IDSelectorBatch(np.asarray(labels, np.int64)))

    def params(self) -> dict:
        """Search settings restored on load (``nprobe``, ...)."""
        return {}

    def set_params(self, params: dict) -> None:
        pass

    def contents(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - per kind
        """``(labels (N,) int64, vectors (N, dim) float32)``: what the index holds."""
        raise NotImplementedError

    @property
    def resident_bytes(self) -> int:
        """Bytes the search structures hold in memory (the serialized index's size: codes, ids, centroids)."""
        return int(_faiss().serialize_index(self.index).size)


class FlatKind(Kind):
    name = KIND_FLAT

    @classmethod
    def build(cls, dim: int) -> "FlatKind":
        faiss = _faiss()
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(int(dim))))

    def _storage(self) -> tuple[np.ndarray, np.ndarray]:
        """Zero-copy views of FAISS's vectors ``(N, dim)`` and their labels ``(N,)`` (read lock held)."""
        faiss = _faiss()
        n, dim = self.ntotal, self.dim
        vecs = faiss.rev_swig_ptr(faiss.downcast_index(self.index.index).get_xb(), n * dim).reshape(n, dim)
        labels = faiss.rev_swig_ptr(self.index.id_map.data(), n)
        return vecs, labels

    def search(self, q, k):
        if len(q) > NUMPY_MAX_BATCH or self.ntotal == 0:
            return self.index.search(q, k)
        vecs, labels = self._storage()
        scores, cols = _top_of(q @ vecs.T, k)  # (B, k): BLAS on every core
        return scores, labels[cols]

    def contents(self):
        vecs, labels = self._storage() if self.ntotal else (np.zeros((0, self.dim), np.float32), np.zeros(0))
        return np.array(labels, np.int64), np.array(vecs, np.float32)

    @property
    def resident_bytes(self) -> int:
        return self.ntotal * (self.dim * 4 + 8)


def _ivf_search(index, q: np.ndarray, k: int):
    # parallel over the lists a query visits for a few queries (else one thread serves each query); two threads
    # searching at once may each see the other's mode: either is correct, only the speed differs
    index.parallel_mode = 1 if len(q) <= NUMPY_MAX_BATCH else 0
    return index.search(q, k)


class IvfKind(Kind):
    name = KIND_IVF

    def search(self, q, k):
        return _ivf_search(self.index, q, k)

    def params(self) -> dict:
        return {"nprobe": int(self.index.nprobe)}

    def set_params(self, params: dict) -> None:
        self.index.nprobe = int(params["nprobe"])

    def contents(self):
        return _ivf_contents(self.index, decode=True)

    @property
    def resident_bytes(self) -> int:
        return _ivf_bytes(self.index)


class CompressedKind(Kind):
    """8-bit scalar-quantized IVF codes in memory; candidates re-scored against the float copy."""

    name = KIND_COMPRESSED

    def __init__(self, index, floats: FloatCopy, rerank: int = RERANK_FACTORS[0]):
        super().__init__(index)
        self.floats = floats
        self.rerank = int(rerank)

    def candidates(self, k: int) -> int:
        return min(self.ntotal, max(k * self.rerank, k + 32))

    def search(self, q, k):
        _, cand = _ivf_search(self.index, q, self.candidates(k))  # (B, R) labels, approximate order
        return rescore(self.floats, q, cand, k)

    def add(self, labels, vectors) -> None:
        if len(labels):  # the exact rows first: the index never holds a label the copy cannot rescore
            self.floats.append(int(labels[0]), vectors)
        super().add(labels, vectors)

    def params(self) -> dict:
        return {"nprobe": int(self.index.nprobe), "rerank": self.rerank}

    def set_params(self, params: dict) -> None:
        self.index.nprobe = int(params["nprobe"])
        self.rerank = int(params["rerank"])

    def contents(self):
        labels, _ = _ivf_contents(self.index, decode=False)
        labels = np.sort(labels)
        return labels, self.floats.rows(labels)

    @property
    def resident_bytes(self) -> int:
        return _ivf_bytes(self.index)


def _ivf_bytes(index) -> int:
    """An IVF index's memory: codes and ids in its lists, and the coarse centroids (computed, not serialized)."""
    return int(index.ntotal) * (int(index.code_size) + 8) + int(index.nlist) * int(index.d) * 4


def rescore(floats: FloatCopy, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-``k`` of each query's candidate labels (``cand`` (B, R), -1 = none): exact scores."""
    b = len(q)
    out_s = np.full((b, k), -np.inf, np.float32)
    out_l = np.full((b, k), -1, np.int64)
    for i in range(b):
        c = cand[i][cand[i] >= 0]
        if not len(c):
            continue
        s = floats.rows(c) @ q[i]  # (R,)
        top_s, top_c = _top_of(s[None, :], k)
        out_s[i, :top_s.shape[1]], out_l[i, :top_s.shape[1]] = top_s[0], c[top_c[0]]
    return out_s, out_l


def _ivf_contents(index, decode: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (and, with ``decode``, the float32 vectors of an ``IndexIVFFlat``) read out of the inverted lists."""
    faiss = _faiss()
    dim = int(index.d)
    inv = index.invlists
    parts_l, parts_v = [], []
    for lst in range(index.nlist):
        size = inv.list_size(lst)
        if not size:
            continue
        ids_ptr = inv.get_ids(lst)
        try:
            parts_l.append(faiss.rev_swig_ptr(ids_ptr, size).copy())  # (size,) int64
        finally:
            inv.release_ids(lst, ids_ptr)
        if decode:
            codes_ptr = inv.get_codes(lst)
            try:
                codes = faiss.rev_swig_ptr(codes_ptr, size * inv.code_size).copy()  # (size * dim * 4,) uint8
                parts_v.append(codes.view(np.float32).reshape(size, dim))  # IVFFlat codes are the raw floats
            finally:
                inv.release_codes(lst, codes_ptr)
    labels = np.concatenate(parts_l).astype(np.int64) if parts_l else np.zeros(0, np.int64)
    if not decode:
        return labels, None
    vectors = np.concatenate(parts_v) if parts_v else np.zeros((0, dim), np.float32)
    return labels, np.ascontiguousarray(vectors, dtype=np.float32)


# ---- building and tuning ----------------------------------------------------------------------------------------


def _train_sample(vectors: np.ndarray, n_train: int, rng) -> np.ndarray:
    n = len(vectors)
    if n_train >= n:
        return np.ascontiguousarray(vectors, np.float32)
    return np.ascontiguousarray(vectors[np.sort(rng.choice(n, n_train, replace=False))], np.float32)


def build_ivf_index(vectors: np.ndarray, compressed: bool, seed: int) -> tuple[object, dict]:
    """An empty trained ``IndexIVFFlat`` (or ``IndexIVFScalarQuantizer`` with 8-bit codes), and its stats.

    The coarse quantizer is trained on a sample (:data:`IVF_TRAIN_PER_LIST` vectors a list), the scalar
    quantizer on at most :data:`SQ_TRAIN_N`; ``vectors`` may be a memory map: only the samples are read."""
    faiss = _faiss()
    n, dim = vectors.shape
    rng = np.random.default_rng(seed)
    nlist = choose_nlist(n)
    quantizer = faiss.IndexFlatIP(int(dim))
    if compressed:
        index = faiss.IndexIVFScalarQuantizer(quantizer, int(dim), nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(quantizer, int(dim), nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = IVF_TRAIN_NITER
    index.cp.min_points_per_centroid = 5
    index.cp.seed = seed
    n_train = min(n, max(IVF_TRAIN_PER_LIST * nlist, SQ_TRAIN_N if compressed else 0))
    t = time.perf_counter()
    index.train(_train_sample(vectors, n_train, rng))
    return index, {"nlist": nlist, "train_n": int(n_train), "train_seconds": round(time.perf_counter() - t, 3)}


def tune(kind: Kind, vectors: np.ndarray, labels: np.ndarray, recall_target: float, seed: int,
         exact: Callable[[np.ndarray, int], np.ndarray] | None = None) -> dict:
    """Raise ``nprobe`` (doubling, up to ``nlist / 4``; for ``compressed`` with each re-rank depth of
    :data:`RERANK_FACTORS`, and then every list: an exhaustive scan of the codes, still re-ranked exactly) until
    recall@10 reaches ``recall_target``; leaves ``kind`` at the first setting that does (or the best tried).
    Returns ``{nprobe, recall_at_10, recall_by_nprobe[, rerank]}`` and ``reached`` (bool). ``exact(queries,
    k)``: exact top-k row positions (default: a NumPy scan of ``vectors``)."""
    n = len(vectors)
    rng = np.random.default_rng(seed)
    nq = min(RECALL_QUERIES, n)
    qpos = np.sort(rng.choice(n, nq, replace=False))
    queries = np.ascontiguousarray(vectors[qpos], np.float32)
    kk = min(RECALL_K + 1, n)
    truth = labels[(exact or (lambda q, k: exact_topk(vectors, q, k)))(queries, kk)]  # (nq, kk)
    own = labels[qpos]
    nlist = int(kind.index.nlist)
    doubling = [min(2 ** i, max(1, nlist // 4)) for i in range(max(1, nlist // 4).bit_length() + 1)]
    doubling = list(dict.fromkeys(doubling))  # 1, 2, 4, ..., nlist / 4
    if isinstance(kind, CompressedKind):
        ladder = [[(p, f) for p in doubling] for f in RERANK_FACTORS] + [[(nlist, f) for f in RERANK_FACTORS]]
    else:
        ladder = [[(p, None) for p in doubling]]
    tried: dict[str, float] = {}
    best = None
    for rung in ladder:
        for nprobe, factor in rung:
            kind.index.nprobe = nprobe
            if factor is not None:
                kind.rerank = factor
            _, found = kind.search(queries, kk)
            rec = round(recall_at_k(found, truth, own, RECALL_K), 4)
            tried[str(nprobe) if factor is None else f"{nprobe}x{factor}"] = rec
            if best is None or rec > best[0] or rec >= recall_target:
                best = (rec, nprobe, factor)
            if rec >= recall_target:
                break
        if best[0] >= recall_target:
            break
    rec, nprobe, factor = best
    kind.index.nprobe = nprobe
    out = {"nprobe": nprobe, "recall_at_10": rec, "recall_by_nprobe": tried, "reached": rec >= recall_target}
    if factor is not None:
        kind.rerank = factor
        out["rerank"] = factor
    return out
