"""FAISS inner-product search, derived from the store and never ahead of it.

The index is a cache of the store's vectors: it records the store (``clips`` table) version it was built from.
:func:`open_index` loads the saved one; when the store has moved on it *catches up* (removes the clips that
left, adds the new ones) or, when the change is large, the file is missing/corrupt, or the wanted kind changed,
rebuilds from the store; then it saves again. One INFO line says which.

Kinds (``kind=``):

- ``flat``: exact search (``IndexFlatIP`` behind an ``IndexIDMap2``).
- ``ivf``: ``IndexIVFFlat`` (inner product, vectors stored uncompressed, so its scores are the exact inner
  products of the candidates it visits: no re-rank needed). ``nlist ~ 4 sqrt(N)`` (bounded), trained on a
  sample; ``nprobe`` is tuned after every build by measuring recall@10 on the store's own vectors (sampled
  stored vectors as queries, themselves left out, against exact search), doubling until it reaches
  ``recall_target``. When no ``nprobe`` up to ``nlist / 4`` reaches it (vectors without cluster structure),
  the index falls back to exact ``flat`` search and says so in :attr:`VectorIndex.stats`.
- ``auto`` (default): ``flat`` while ``N * dim <= AUTO_FLAT_MAX_ELEMENTS`` (measured: one flat query on a
  2-core machine passes ~2 ms at about 15 k x 512 floats), ``ivf`` above.

Every vector has an int64 label (``clip_id <-> label`` kept here), so a catch-up removes by label and adds
with new labels. Saved as ``INDEX_DIR/faiss.index`` (the FAISS serialization) and ``INDEX_DIR/faiss.json``
(format, kind, store_version, ids, labels, stats, crc32), each written to a temp file and moved into place with
``os.replace``, the JSON last, so a reader never pairs a new JSON with an old index.

Search backends (``device=`` / ``backend=`` of :func:`open_index` and :meth:`VectorIndex.use_device`; which
one answers is ``stats["backend"]``):

- ``faiss-cpu`` (``device="cpu"``, the default): the saved FAISS index itself.
- ``faiss-gpu`` (``device="cuda[:N]"`` when the installed faiss is a GPU build that sees a GPU, i.e. the
  ``faiss-gpu`` wheel of the ``gpu`` extra): a copy of the FAISS index on that GPU (``index_cpu_to_gpu``; flat
  stays exact, ivf keeps its tuned nprobe), copied again after every catch-up. Searches on it are serialized
  (FAISS GPU indexes are not thread-safe); ``k`` above :data:`FAISS_GPU_MAX_K` is answered by the CPU index.
- ``torch-cuda`` (``device="cuda[:N]"`` without a GPU faiss, or ``backend="torch"``): the vectors, read out
  of the FAISS index, as one float32 ``(N, dim)`` tensor on the GPU, searched exactly (``q @ V.T``, then
  ``topk``) whatever the kind: no approximation and no recall to tune. A catch-up removes and appends the
  same rows. Under a reduced float32 matmul precision (TF32) the best candidates are
  rescored in full float32, so scores stay exact. ``backend="torch"`` with ``device="cpu"`` (``torch-cpu``)
  runs the same code on the CPU (for tests, or a CPU where torch is faster).

The saved files are always the CPU FAISS index; a device copy is derived on open and never saved. A CUDA device
that is not there (no GPU, a CPU build of torch, ``cuda:N`` out of range) raises :class:`SearchDeviceError`
before any work. torch is imported only for a torch backend or a CUDA device.

Thread safety: :meth:`VectorIndex.search` may run in several threads while another thread runs
:meth:`VectorIndex.catch_up` on the same object (a readers-writer lock: searches share, a catch-up is alone).

No model code here.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ._io import atomic_write
from .errors import MotiveIndexError

if TYPE_CHECKING:  # pragma: no cover
    from .store import ClipStore

INDEX_FILE = "faiss.index"
META_FILE = "faiss.json"
FORMAT = 2
KIND_FLAT = "flat"
KIND_IVF = "ivf"
KINDS = ("auto", KIND_FLAT, KIND_IVF)

#: ``auto`` picks exact search while N * dim is at most this (flat single-query p50 on the 2-core dev machine:
#: 0.5 ms at 5 k x 512, 1.3 ms at 10 k, 3.8 ms at 20 k: 2 ms is passed near 15 k x 512 = 7.7 M floats).
AUTO_FLAT_MAX_ELEMENTS = 8_000_000
#: ``ivf`` needs at least this many vectors (fewer: exact search is both exact and fast).
IVF_MIN_N = 256
IVF_MAX_NLIST = 4096
IVF_TRAIN_PER_LIST = 20          # k-means training sample: this many vectors per list (bounded by N)
IVF_TRAIN_NITER = 10
RECALL_QUERIES = 200             # sampled stored vectors used to measure recall@10
RECALL_K = 10
LATENCY_QUERIES = 20             # single queries timed for stats["p50_ms"] (fewer once 1 s is spent)
#: a catch-up is done when (changes since the last build) <= this share of the index size at that build
CATCH_UP_MAX_CHANGE = 0.20
BACKENDS = ("auto", "faiss", "torch")
#: FAISS GPU indexes answer at most this many neighbours per query (GPU k-selection limit); above, the CPU index
FAISS_GPU_MAX_K = 2048
#: the torch backend scores queries in blocks of at most this many (query, vector) pairs: (B, N) float32 scores
TORCH_SCORE_BLOCK = 1 << 27
#: extra candidates rescored in full float32 when matmuls run at reduced precision (TF32)
TORCH_RESCORE_EXTRA = 32
#: stats keys that describe this process's search device, not the saved index (never written to faiss.json)
_RUNTIME_STATS = ("backend", "device")

_log = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("motive-index needs FAISS for search: pip install faiss-cpu "
                          "(or faiss-gpu on a CUDA machine)") from e
    return faiss


class SearchDeviceError(MotiveIndexError, ValueError):
    """The search device asked for is not usable here (no CUDA, a CPU build of torch or faiss, ...)."""

    exit_code = 2


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency of the package
        raise ImportError("the torch search backend needs torch: pip install torch") from e
    return torch


def _faiss_gpus(faiss) -> int:
    """GPUs the installed faiss can use (0 for a CPU build, or a GPU build on a machine without a GPU)."""
    if not hasattr(faiss, "StandardGpuResources") or not hasattr(faiss, "get_num_gpus"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except Exception:  # a GPU build whose CUDA runtime cannot start
        return 0


def resolve_backend(device: str = "cpu", backend: str = "auto") -> tuple[str, str]:
    """``(backend name, device)`` that search on ``device`` with ``backend`` means here; raises before any work.

    ``backend``: ``auto`` (CPU: faiss; CUDA: faiss on the GPU when the installed faiss has GPU support and sees
    one, else exact torch search on the GPU), ``faiss`` or ``torch``. Names: ``faiss-cpu``, ``faiss-gpu``,
    ``torch-cpu``, ``torch-cuda``. The device is returned normalized (``cuda`` -> ``cuda:0``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is invalid: one of {', '.join(BACKENDS)}")
    dev = str(device if device is not None else "").strip().lower()  # a str or a torch.device
    if not dev:
        raise SearchDeviceError(f"device={device!r} is invalid: 'cpu', 'cuda' or 'cuda:N'")
    if dev == "cpu":
        return ("torch-cpu" if backend == "torch" else "faiss-cpu"), "cpu"
    kind, _, num = dev.partition(":")
    if kind != "cuda" or (num and not num.isdigit()):
        raise SearchDeviceError(f"device={device!r} is invalid for search: 'cpu', 'cuda' or 'cuda:N'")
    ordinal = int(num or 0)
    dev = f"cuda:{ordinal}"
    if backend != "torch":
        n_faiss = _faiss_gpus(_faiss())
        if ordinal < n_faiss:
            return "faiss-gpu", dev
        if backend == "faiss":
            raise SearchDeviceError(
                f"device={device!r} with backend='faiss': the installed faiss "
                + (f"sees {n_faiss} GPU(s)" if n_faiss else "has no GPU support or sees no GPU")
                + "; install the GPU build (see the README: pip install 'motive-index[gpu]', then replace "
                  "faiss-cpu) or use backend='torch' or 'auto'")
    torch = _torch()
    if not torch.cuda.is_available():
        why = ("this torch is a CPU build" if torch.version.cuda is None
               else f"torch (CUDA {torch.version.cuda}) finds no usable CUDA device")
        also = "" if backend == "torch" else ", and the installed faiss has no GPU either"
        raise SearchDeviceError(f"device={device!r}: {why}{also}; search with device='cpu', or install a CUDA "
                                f"build of torch")
    count = torch.cuda.device_count()
    if ordinal >= count:
        raise SearchDeviceError(f"device={device!r}: only {count} CUDA device(s) (cuda:0..cuda:{count - 1})")
    return "torch-cuda", dev


def _index_contents(index) -> tuple[np.ndarray, np.ndarray]:
    """``(labels (N,) int64, vectors (N, dim) float32)``: what a flat (``IndexIDMap2(IndexFlatIP)``) or
    ``IndexIVFFlat`` index holds, read out without changing it."""
    faiss = _faiss()
    n, dim = int(index.ntotal), int(index.d)
    if isinstance(index, faiss.IndexIDMap2):
        labels = faiss.vector_to_array(index.id_map).astype(np.int64)  # (N,)
        vectors = index.index.reconstruct_n(0, n) if n else np.zeros((0, dim), np.float32)  # (N, dim)
    elif isinstance(index, faiss.IndexIVFFlat):
        inv = index.invlists
        parts_l, parts_v = [], []
        for lst in range(index.nlist):
            size = inv.list_size(lst)
            if not size:
                continue
            ids_ptr, codes_ptr = inv.get_ids(lst), inv.get_codes(lst)
            try:
                parts_l.append(faiss.rev_swig_ptr(ids_ptr, size).copy())  # (size,) int64
                codes = faiss.rev_swig_ptr(codes_ptr, size * inv.code_size).copy()  # (size * dim * 4,) uint8
                parts_v.append(codes.view(np.float32).reshape(size, dim))  # IVFFlat codes are the raw floats
            finally:
                inv.release_ids(lst, ids_ptr)
                inv.release_codes(lst, codes_ptr)
        labels = np.concatenate(parts_l).astype(np.int64) if parts_l else np.zeros(0, np.int64)
        vectors = np.concatenate(parts_v) if parts_v else np.zeros((0, dim), np.float32)
    else:
        raise TypeError(f"cannot read the vectors of a {type(index).__name__}")
    if len(labels) != n or vectors.shape != (n, dim):
        raise RuntimeError(f"read {len(labels)} labels and {vectors.shape} vectors from an index of {n} x {dim}")
    return labels, np.ascontiguousarray(vectors, dtype=np.float32)


def _reduced_matmul_precision(torch, device) -> bool:
    """Whether float32 matmuls on ``device`` may run below full float32 (TF32 / bf16 passes)."""
    try:
        if torch.get_float32_matmul_precision() != "highest":
            return True
        return device.type == "cuda" and bool(torch.backends.cuda.matmul.allow_tf32)
    except Exception:  # pragma: no cover - an API change: assume the worst, rescoring is cheap
        return True


def _torch_topk(mat, row_labels: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of ``q`` (``(B, dim)`` float32) against ``mat`` (``(N, dim)`` tensor):
    ``(scores (B, k) float32, labels (B, k) int64)``, best first, like ``faiss.Index.search``."""
    torch = _torch()
    n = int(mat.shape[0])
    reduced = _reduced_matmul_precision(torch, mat.device)
    fetch = min(n, k + TORCH_RESCORE_EXTRA) if reduced else k
    step = max(1, TORCH_SCORE_BLOCK // max(n, 1))
    out_s, out_r = [], []
    with torch.inference_mode():
        qt = torch.tensor(q, dtype=torch.float32, device=mat.device)  # (B, dim)
        for a in range(0, qt.shape[0], step):
            qb = qt[a:a + step]  # (b, dim)
            s = qb @ mat.T  # (b, N)
            top_s, top_r = torch.topk(s, fetch, dim=1)  # (b, fetch), best first
            if reduced:  # rescore the candidates without tensor cores: exact float32 products
                exact = (mat[top_r] * qb[:, None, :]).sum(-1)  # (b, fetch)
                top_s, order = torch.topk(exact, k, dim=1)  # (b, k)
                top_r = torch.gather(top_r, 1, order)
            out_s.append(top_s.cpu())
            out_r.append(top_r.cpu())
        scores = torch.cat(out_s).numpy()  # (B, k)
        rows = torch.cat(out_r).numpy()  # (B, k)
    return scores, row_labels[rows]


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


def choose_kind(n: int, dim: int, kind: str = "auto") -> str:
    """The index kind ``kind`` means for ``n`` vectors of ``dim``: ``auto`` -> flat or ivf by size."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is invalid: one of {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    return KIND_IVF if n * dim > AUTO_FLAT_MAX_ELEMENTS and n >= IVF_MIN_N else KIND_FLAT


def choose_nlist(n: int) -> int:
    """``~4 sqrt(n)``, at most :data:`IVF_MAX_NLIST` and at most ``n / 39`` (k-means needs points per list)."""
    return int(max(1, min(round(4 * math.sqrt(max(n, 1))), IVF_MAX_NLIST, n // 39)))


def _as_matrix(vectors, n_ids: int) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] < 1:
        raise ValueError(f"vectors shape {vectors.shape} is invalid: (N, dim) with dim >= 1")
    if vectors.shape[0] != n_ids:
        raise ValueError(f"{vectors.shape[0]} vectors but {n_ids} ids")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # (N, dim)
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or inf")
    return vectors


def _exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 65536) -> np.ndarray:
    """Row positions of the exact top-``k`` inner products, best first: ``(B, k)`` int64 (NumPy, in row blocks,
    so no copy of ``vectors`` is made)."""
    b = len(queries)
    best_s = np.full((b, 0), -np.inf, np.float32)
    best_p = np.zeros((b, 0), np.int64)
    for a in range(0, len(vectors), block):
        s = queries @ vectors[a:a + block].T  # (B, block)
        kk = min(k, s.shape[1])
        part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]  # (B, kk)
        best_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        best_p = np.concatenate([best_p, part + a], axis=1)
        if best_s.shape[1] > k:
            keep = np.argpartition(-best_s, k - 1, axis=1)[:, :k]
            best_s, best_p = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_p, keep, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_p, order, 1)


def _recall_at_k(found: np.ndarray, truth: np.ndarray, self_labels: np.ndarray, k: int) -> float:
    """Mean share of the true top-``k`` (each query's own label left out of both lists) found in the top-``k``."""
    hits = 0
    for f, t, own in zip(found.tolist(), truth.tolist(), self_labels.tolist()):
        f = [x for x in f if x != own and x >= 0][:k]
        t = [x for x in t if x != own and x >= 0][:k]
        hits += len(set(f) & set(t)) / max(1, len(t))
    return hits / max(1, len(found))


class VectorIndex:
    """Inner-product search over a store's vectors, with int64 labels mapped to clip ids.

    ``store_version`` is the store version the vectors came from. Build with :meth:`build`, persist with
    :meth:`save` / :meth:`load`, bring up to date with :meth:`catch_up`, or get a current one from
    :func:`open_index`. :attr:`stats` describes it (kind, n, nlist, nprobe, recall@10, p50 ms of the CPU index,
    build seconds, and the ``backend`` and ``device`` that answer searches). Searches run on the CPU FAISS index
    until :meth:`use_device` moves them to a GPU (or to torch).
    """

    def __init__(self, index, labels: Sequence[int], ids: Sequence[str], store_version: int,
                 stats: dict | None = None, next_label: int | None = None):
        if index.ntotal != len(ids) or len(ids) != len(labels):
            raise ValueError(f"index has {index.ntotal} vectors but {len(ids)} ids and {len(labels)} labels")
        self._index = index
        self._label_to_id: dict[int, str] = {int(lb): c for lb, c in zip(labels, ids)}
        self._id_to_label: dict[str, int] = {c: int(lb) for lb, c in zip(labels, ids)}
        if len(self._label_to_id) != len(ids) or len(self._id_to_label) != len(ids):
            raise ValueError("duplicate ids or labels")
        self._next_label = int(next_label if next_label is not None
                               else (max(self._label_to_id) + 1 if self._label_to_id else 0))
        self.store_version = int(store_version)
        self.stats: dict = dict(stats or {})
        self.stats["n"] = len(ids)
        self._lock = _RWLock()
        # the search backend: the CPU index itself, or a device copy derived from it (never saved)
        self._backend, self._device = "faiss-cpu", "cpu"
        self._gpu_res = None         # faiss.StandardGpuResources, kept alive with the GPU index
        self._gpu_index = None       # faiss GPU copy of self._index
        self._gpu_lock = threading.Lock()  # FAISS GPU indexes are not thread-safe, even to search
        self._mat = None             # torch (N, dim) float32 on self._device: row r holds label _row_labels[r]
        self._row_labels = np.zeros(0, np.int64)
        self.stats.update({"backend": self._backend, "device": self._device})
        self._held_cache: tuple | None = None  # count_held's last answer

    # ---- construction ---------------------------------------------------------------------------------------

    @classmethod
    def build(cls, ids: Sequence[str], vectors: np.ndarray, store_version: int, *, kind: str = "auto",
              recall_target: float = 0.95, seed: int = 0) -> "VectorIndex":
        """Index ``vectors`` (``(N, dim)``, row ``i`` for ``ids[i]``) as read at ``store_version``.

        ``kind``: ``flat``, ``ivf`` or ``auto``; an ``ivf`` that cannot reach ``recall_target`` (recall@10 on
        the vectors themselves) falls back to ``flat``.
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
        stats: dict = {"requested": kind, "recall_target": recall_target}
        labels = np.arange(n, dtype=np.int64)
        index = None
        if want == KIND_IVF and n < IVF_MIN_N:
            stats["fallback"] = f"{n} vectors: too few for ivf (< {IVF_MIN_N})"
        elif want == KIND_IVF:
            index, ivf_stats = cls._build_ivf(vectors, labels, recall_target, seed)
            stats.update(ivf_stats)
        if index is None:
            index = _faiss().IndexIDMap2(_faiss().IndexFlatIP(int(dim)))
            if n:
                index.add_with_ids(vectors, labels)
            stats.update({"kind": KIND_FLAT, "nlist": None, "nprobe": None, "recall_at_10": 1.0})
        self = cls(index, labels.tolist(), ids, store_version, stats, next_label=n)
        self.stats["p50_ms"] = self._measure_p50_ms(vectors, seed)
        self.stats["build_seconds"] = round(time.perf_counter() - t0, 3)
        self.stats["built_n"] = n
        self.stats["changes_since_build"] = 0
        return self

    @staticmethod
    def _build_ivf(vectors: np.ndarray, labels: np.ndarray, recall_target: float, seed: int):
        """``(IndexIVFFlat or None, stats)``: None (with ``stats['fallback']``) when recall cannot be reached."""
        faiss = _faiss()
        n, dim = vectors.shape
        rng = np.random.default_rng(seed)
        nlist = choose_nlist(n)
        quantizer = faiss.IndexFlatIP(int(dim))
        index = faiss.IndexIVFFlat(quantizer, int(dim), nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = IVF_TRAIN_NITER
        index.cp.min_points_per_centroid = 5
        index.cp.seed = seed
        n_train = min(n, max(IVF_TRAIN_PER_LIST * nlist, 39 * nlist))
        sample = vectors if n_train >= n else vectors[np.sort(rng.choice(n, n_train, replace=False))]
        t = time.perf_counter()
        index.train(np.ascontiguousarray(sample))
        train_s = time.perf_counter() - t
        index.add_with_ids(vectors, labels)
        # recall: sampled stored vectors as queries, each one's own vector left out, against exact search
        nq = min(RECALL_QUERIES, n)
        qpos = np.sort(rng.choice(n, nq, replace=False))
        queries = np.ascontiguousarray(vectors[qpos])
        kk = min(RECALL_K + 1, n)
        truth = labels[_exact_topk(vectors, queries, kk)]  # (nq, kk) labels
        own = labels[qpos]
        max_nprobe = max(1, nlist // 4)
        tried = {}
        nprobe = 1
        while True:
            index.nprobe = nprobe
            _, found = index.search(queries, kk)
            tried[nprobe] = round(_recall_at_k(found, truth, own, RECALL_K), 4)
            if tried[nprobe] >= recall_target or nprobe >= max_nprobe:
                break
            nprobe = min(nprobe * 2, max_nprobe)
        stats = {"nlist": nlist, "train_n": int(n_train), "train_seconds": round(train_s, 3),
                 "recall_by_nprobe": {str(k): v for k, v in tried.items()}}
        if tried[nprobe] < recall_target:
            stats["fallback"] = (f"ivf recall@10 {tried[nprobe]:.3f} < target {recall_target} at nprobe "
                                 f"{nprobe} (nlist {nlist}): vectors lack cluster structure; exact search")
            return None, stats
        index.nprobe = nprobe
        stats.update({"kind": KIND_IVF, "nprobe": nprobe, "recall_at_10": tried[nprobe]})
        return index, stats

    def _measure_p50_ms(self, vectors: np.ndarray, seed: int) -> float | None:
        n = len(vectors)
        if n == 0:
            return None
        rng = np.random.default_rng(seed + 1)
        qs = vectors[rng.choice(n, min(LATENCY_QUERIES, n), replace=False)]
        times = []
        for q in qs:
            t = time.perf_counter()
            self._index.search(q[None, :], min(RECALL_K, n))
            times.append(time.perf_counter() - t)
            if len(times) >= 3 and sum(times) > 1.0:  # slow (large flat): a few queries are enough
                break
        return round(float(np.median(times)) * 1000, 3)

    # ---- properties -----------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self.stats.get("kind", KIND_FLAT)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def backend(self) -> str:
        """Which search answers: ``faiss-cpu``, ``faiss-gpu``, ``torch-cpu`` or ``torch-cuda``."""
        return self._backend

    @property
    def device(self) -> str:
        return self._device

    @property
    def ids(self) -> list[str]:
        """Clip ids, in label order (a copy)."""
        self._lock.acquire_read()
        try:
            return [self._label_to_id[lb] for lb in sorted(self._label_to_id)]
        finally:
            self._lock.release_read()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._id_to_label

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self.kind!r}, n={len(self)}, dim={self.dim}, store_version={self.store_version})"

    # ---- search device --------------------------------------------------------------------------------------

    def use_device(self, device: str = "cpu", backend: str = "auto") -> "VectorIndex":
        """Answer searches on ``device`` (``cpu``, ``cuda``, ``cuda:N``) with ``backend`` (see
        :func:`resolve_backend`); returns ``self``. A :class:`SearchDeviceError` when the device is not there.

        The device copy (FAISS GPU index, or torch tensor of the vectors) is derived from the CPU index, which
        stays the one that is caught up and saved. Searches in other threads wait while the copy is made.
        """
        name, dev = resolve_backend(device, backend)
        self._lock.acquire_write()
        try:
            if (name, dev) != (self._backend, self._device):
                self._drop_device_copy()
                self._make_device_copy(name, dev)
        finally:
            self._lock.release_write()
        return self

    def _drop_device_copy(self) -> None:
        self._gpu_index = self._gpu_res = self._mat = None
        self._row_labels = np.zeros(0, np.int64)
        self._backend, self._device = "faiss-cpu", "cpu"
        self.stats.update({"backend": self._backend, "device": self._device})

    def _make_device_copy(self, name: str, dev: str) -> None:
        """Build the ``name`` copy on ``dev`` from the CPU index (write lock held)."""
        if name == "faiss-gpu":
            faiss = _faiss()
            if self._gpu_res is None:
                self._gpu_res = faiss.StandardGpuResources()
            gpu = faiss.index_cpu_to_gpu(self._gpu_res, int(dev.split(":")[1]), self._index)
            if self.kind == KIND_IVF:
                try:
                    gpu.nprobe = int(self._index.nprobe)
                except AttributeError:  # pragma: no cover - older GPU IVF wrappers
                    faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", int(self._index.nprobe))
            self._gpu_index = gpu
        elif name in ("torch-cpu", "torch-cuda"):
            torch = _torch()
            labels, vectors = _index_contents(self._index)  # (N,), (N, dim)
            self._mat = torch.from_numpy(vectors).to(torch.device(dev))  # (N, dim) float32
            self._row_labels = labels
        self._backend, self._device = name, dev
        self.stats.update({"backend": name, "device": dev})

    def _update_device_copy(self, removed_labels: np.ndarray, new_labels: np.ndarray, new_vecs: np.ndarray) -> None:
        """Bring the device copy in line with the CPU index after a catch-up (write lock held)."""
        if self._backend == "faiss-gpu":
            self._gpu_index = None  # GPU indexes cannot remove ids: copy the caught-up CPU index again
            self._make_device_copy(self._backend, self._device)
        elif self._mat is not None:
            torch = _torch()
            if len(removed_labels):
                keep = ~np.isin(self._row_labels, removed_labels)  # (N,)
                self._mat = self._mat[torch.from_numpy(keep).to(self._mat.device)]
                self._row_labels = self._row_labels[keep]
            if len(new_labels):
                add = torch.from_numpy(np.ascontiguousarray(new_vecs, dtype=np.float32)).to(self._mat.device)
                self._mat = torch.cat([self._mat, add])  # (N', dim)
                self._row_labels = np.concatenate([self._row_labels, np.asarray(new_labels, np.int64)])
            if self._mat.shape[0] != self._index.ntotal or len(self._row_labels) != self._index.ntotal:
                raise RuntimeError(f"torch copy has {self._mat.shape[0]} rows, the index {self._index.ntotal}")

    def _search_labels(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (B, k), labels (B, k))`` from the active backend (read lock held; ``1 <= k <= len``)."""
        if self._mat is not None:
            return _torch_topk(self._mat, self._row_labels, q, k)
        if self._gpu_index is not None and k <= FAISS_GPU_MAX_K:
            with self._gpu_lock:
                return self._gpu_index.search(q, k)
        return self._index.search(q, k)

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
            ids = self._label_to_id
            out = [[(ids[lb], float(s)) for lb, s in zip(lrow, srow) if lb >= 0]
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
            n = sum(1 for c in clip_ids if c in self._id_to_label)
        finally:
            self._lock.release_read()
        self._held_cache = (key, clip_ids, n)
        return n

    # ---- catch-up -------------------------------------------------------------------------------------------

    def diff(self, store_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """``(added, removed)``: ids in ``store_ids`` not indexed, and indexed ids not in ``store_ids``."""
        store_set = set(store_ids)
        added = [c for c in dict.fromkeys(store_ids) if c not in self._id_to_label]
        removed = [c for c in self._id_to_label if c not in store_set]
        return added, removed

    def catch_up(self, ids: Sequence[str], vectors: np.ndarray, store_version: int) -> tuple[int, int]:
        """Make the index hold exactly ``ids`` (a store snapshot: ``vectors`` row ``i`` for ``ids[i]``).

        Removes the indexed ids not in ``ids`` and adds the new ones (in the CPU index and in the search copy
        on a device, if any), then records ``store_version``. Searches in other threads wait while this runs and
        then see the new state. Returns ``(added, removed)``.
        """
        ids = list(ids)
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids) or (len(ids) and vectors.shape[1] != self.dim):
            raise ValueError(f"vectors shape {vectors.shape} does not match {len(ids)} ids of dim {self.dim}")
        self._lock.acquire_write()
        try:
            faiss = _faiss()
            added, removed = self.diff(ids)
            pos = {c: i for i, c in enumerate(ids)}
            new_vecs = _as_matrix(vectors[[pos[c] for c in added]] if added else np.zeros((0, self.dim)),
                                  len(added))
            rm = np.zeros(0, np.int64)
            new_labels = np.zeros(0, np.int64)
            if removed:
                rm = np.array([self._id_to_label[c] for c in removed], dtype=np.int64)
                self._index.remove_ids(faiss.IDSelectorBatch(rm))
                for c, lb in zip(removed, rm.tolist()):
                    del self._id_to_label[c]
                    del self._label_to_id[lb]
            if added:
                new_labels = np.arange(self._next_label, self._next_label + len(added), dtype=np.int64)
                self._index.add_with_ids(new_vecs, new_labels)
                self._next_label += len(added)
                for c, lb in zip(added, new_labels.tolist()):
                    self._id_to_label[c] = lb
                    self._label_to_id[lb] = c
            if self._backend != "faiss-cpu" and (removed or added):
                try:
                    self._update_device_copy(rm, new_labels, new_vecs)
                except Exception:  # never answer from a stale copy: the CPU index is current, search there
                    _log.warning("search copy on %s (%s) could not follow the catch-up; searching on the CPU",
                                 self._device, self._backend, exc_info=True)
                    self._drop_device_copy()
                    raise
            self.store_version = int(store_version)
            self.stats["n"] = len(self._id_to_label)
            self.stats["changes_since_build"] = int(self.stats.get("changes_since_build", 0)) + len(added) + len(removed)
        finally:
            self._lock.release_write()
        return len(added), len(removed)

    # ---- persistence ----------------------------------------------------------------------------------------

    def save(self, index_dir: str | os.PathLike) -> None:
        """Write ``faiss.index`` then ``faiss.json`` atomically into ``index_dir``."""
        index_dir = Path(index_dir)
        index_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire_read()  # a consistent state: no catch-up while serializing
        try:
            data = _faiss().serialize_index(self._index)  # uint8 array
            labels = sorted(self._label_to_id)
            ids = [self._label_to_id[lb] for lb in labels]
            stats = {k: v for k, v in self.stats.items() if k not in _RUNTIME_STATS}  # this process's device
            meta = {"format": FORMAT, "kind": self.kind, "store_version": self.store_version, "count": len(self),
                    "dim": self.dim, "next_label": self._next_label, "stats": stats}
        finally:
            self._lock.release_read()
        blob = memoryview(np.ascontiguousarray(data))
        atomic_write(index_dir / INDEX_FILE, blob)
        meta.update({"index_bytes": blob.nbytes, "crc32": zlib.crc32(blob), "ids": ids, "labels": labels})
        atomic_write(index_dir / META_FILE, json.dumps(meta).encode("utf-8"))

    @classmethod
    def load(cls, index_dir: str | os.PathLike) -> "VectorIndex":
        """Read a saved index. ``FileNotFoundError`` if none; ``ValueError`` if the files are inconsistent."""
        faiss = _faiss()
        index_dir = Path(index_dir)
        meta_path, index_path = index_dir / META_FILE, index_dir / INDEX_FILE
        if not meta_path.exists() or not index_path.exists():
            raise FileNotFoundError(f"no saved FAISS index in {str(index_dir)!r}")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") not in (KIND_FLAT, KIND_IVF):
            raise ValueError(f"{str(meta_path)!r}: unknown format/kind "
                             f"{(meta.get('format'), meta.get('kind')) if isinstance(meta, dict) else meta!r}")
        data = np.fromfile(index_path, dtype=np.uint8)
        if data.size != meta.get("index_bytes"):
            raise ValueError(f"{str(index_path)!r} has {data.size} bytes, {str(meta_path)!r} expects "
                             f"{meta.get('index_bytes')}")
        if zlib.crc32(memoryview(data)) != meta.get("crc32"):
            raise ValueError(f"{str(index_path)!r}: checksum does not match {str(meta_path)!r}")
        index = faiss.deserialize_index(data)
        ids, labels = meta["ids"], meta["labels"]
        if index.ntotal != meta["count"] or len(ids) != meta["count"] or index.d != meta["dim"]:
            raise ValueError(f"{str(index_dir)!r}: faiss index has {index.ntotal} x {index.d}, metadata says "
                             f"{meta['count']} x {meta['dim']} with {len(ids)} ids")
        stats = meta.get("stats") or {}
        if meta["kind"] == KIND_IVF:
            if not isinstance(index, faiss.IndexIVFFlat):
                raise ValueError(f"{str(index_path)!r} is a {type(index).__name__}, expected IndexIVFFlat")
            index.nprobe = int(stats["nprobe"])
        elif not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{str(index_path)!r} is a {type(index).__name__}, expected IndexIDMap2")
        return cls(index, labels, ids, meta["store_version"], stats, next_label=meta["next_label"])


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def open_index(store: "ClipStore", index_dir: str | os.PathLike | None = None,
               log: logging.Logger = _log, *, kind: str = "auto", recall_target: float = 0.95,
               current: VectorIndex | None = None, device: str = "cpu", backend: str = "auto") -> VectorIndex:
    """A :class:`VectorIndex` current with ``store``: loaded, caught up, or rebuilt; saved when it changed.

    ``index_dir`` defaults to the store's folder. ``current`` (an index already in memory, e.g. a service's)
    is caught up in place instead of reading the saved one. Catch-up (remove the ids that left the store, add
    the new ones) is used while the changes since the last build stay within ``CATCH_UP_MAX_CHANGE`` of its
    size; otherwise, or when the saved index is missing/corrupt, or ``kind`` asks for another kind, or
    ``auto``'s choice changed with the size, it is rebuilt. Logs one INFO line saying which. A failure to save
    (read-only folder) is logged, not raised.

    ``device`` / ``backend``: where searches run (:meth:`VectorIndex.use_device`; e.g. ``device="cuda"``: FAISS
    on the GPU, or exact torch search on the GPU without a GPU faiss). Checked first: a device that is not
    there raises :class:`SearchDeviceError` before anything is loaded or built.
    """
    choose_kind(0, 1, kind)  # validates kind
    resolve_backend(device, backend)  # validates device and backend before any work
    index_dir = Path(index_dir) if index_dir is not None else Path(store.path)
    version, dim = store.version, store.dim
    index = current
    why = None
    if index is None:
        try:
            index = VectorIndex.load(index_dir)
        except FileNotFoundError:
            why = "built (no saved index)"
        except Exception as e:  # garbage or truncated files, a FAISS error, bad JSON: rebuild
            why = f"rebuilt because corrupt: {_first_line(e)}"
    if index is not None and index.dim != dim:
        why, index = f"rebuilt because stale (index dim {index.dim}, store dim {dim})", None
    if index is not None and index.store_version == version and len(index) == len(store):
        if current is not None:
            return current.use_device(device, backend)  # already current in memory
        if _kind_mismatch(index, len(index), kind, recall_target) is None:
            index.use_device(device, backend)
            log.info("FAISS index at %s: loaded (store version %d, %d vectors, dim %d, %s%s)",
                     index_dir, version, len(index), dim, index.kind, _on(index))
            return index
    version, ids, vectors = store.snapshot()
    if index is not None:
        added, removed = index.diff(ids)
        changes = len(added) + len(removed) + int(index.stats.get("changes_since_build", 0))
        base = max(int(index.stats.get("built_n", len(index))), 1)
        mismatch = _kind_mismatch(index, len(ids), kind, recall_target)
        if mismatch is not None:
            why = f"rebuilt because {mismatch}"
        elif changes > CATCH_UP_MAX_CHANGE * base:
            why = (f"rebuilt because stale and the change is large (+{len(added)} -{len(removed)}, "
                   f"{changes} changes since the build of {base} vectors > {CATCH_UP_MAX_CHANGE:.0%})")
        else:
            was = index.store_version
            try:
                index.catch_up(ids, vectors, version)
            except Exception as e:  # a FAISS error while updating: never fatal, rebuild
                why = f"rebuilt because catch-up failed: {_first_line(e)}"
            else:
                _save(index, index_dir, log)
                index.use_device(device, backend)
                log.info("FAISS index at %s: caught up: +%d -%d (store version %d -> %d, %d vectors, %s%s)",
                         index_dir, len(added), len(removed), was, version, len(index), index.kind, _on(index))
                return index
    new = VectorIndex.build(ids, vectors, version, kind=kind, recall_target=recall_target)
    _save(new, index_dir, log)
    new.use_device(device, backend)
    fb = f"; {new.stats['fallback']}" if new.stats.get("fallback") else ""
    log.info("FAISS index at %s: %s; now store version %d, %d vectors, %s (nprobe %s, recall@10 %s)%s%s",
             index_dir, why, version, len(new), new.kind, new.stats.get("nprobe"), new.stats.get("recall_at_10"), fb,
             _on(new))
    return new


def _on(index: VectorIndex) -> str:
    """``""`` for CPU FAISS search, else where searches run, for the log line."""
    if index.backend == "faiss-cpu":
        return ""
    return f"; search: {index.backend} on {index.device}" + (" (exact)" if index.backend.startswith("torch") else "")


def _kind_mismatch(index: VectorIndex, n: int, kind: str, recall_target: float) -> str | None:
    """Why ``index`` is not what ``kind`` asks for at size ``n`` (None if it is)."""
    requested = index.stats.get("requested", index.kind)
    if kind == "auto" and requested != "auto":
        return None  # built with an explicit kind: auto keeps it
    if kind != "auto":
        if requested != kind and index.kind != kind:
            return f"kind {index.kind!r} was asked to be {kind!r}"
        if kind == KIND_IVF and index.stats.get("recall_target", recall_target) < recall_target:
            return f"recall target raised to {recall_target}"
        return None
    want = choose_kind(n, index.dim, "auto")
    if want != index.kind and not (want == KIND_IVF and index.stats.get("fallback")):
        return f"auto picks {want!r} at {n} vectors (index is {index.kind!r})"
    return None


def _save(index: VectorIndex, index_dir: Path, log: logging.Logger) -> None:
    try:
        index.save(index_dir)
    except OSError as e:
        log.warning("FAISS index at %s: could not save (%s); using it in memory", index_dir, e)
