"""Where searches run: the device a search asks for, and the search copies derived for it.

The saved index is always a CPU FAISS index. A search on a GPU (or through torch) answers from a *copy* derived
from it when the index is opened and kept in step by every catch-up, never saved:

- ``faiss-cpu``: no copy; the CPU index answers (:mod:`.kinds` says how, per kind).
- ``faiss-gpu``: :class:`FaissGpuCopy`, the FAISS index copied to a GPU (``index_cpu_to_gpu``), when the
  installed faiss is a GPU build that sees one. GPU indexes cannot remove ids, so a catch-up copies again.
- ``torch-cpu`` / ``torch-cuda``: :class:`TorchCopy`, every stored vector as one float32 ``(N, dim)`` tensor,
  searched exactly (``q @ V.T``, ``topk``) whatever the kind.

torch is imported only for a torch backend or a CUDA device.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import MotiveIndexError

BACKENDS = ("auto", "faiss", "torch")
#: FAISS GPU indexes answer at most this many neighbours per query (GPU k-selection limit); above, the CPU index
FAISS_GPU_MAX_K = 2048
#: the torch backend scores queries in blocks of at most this many (query, vector) pairs: (B, N) float32 scores
TORCH_SCORE_BLOCK = 1 << 27
#: extra candidates rescored in full float32 when matmuls run at reduced precision (TF32)
TORCH_RESCORE_EXTRA = 32


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise ImportError("motive-index needs FAISS for search: pip install faiss-cpu "
                          "(or faiss-gpu on a CUDA machine)") from e
    return faiss


def _torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a dependency of the package
        raise ImportError("the torch search backend needs torch: pip install torch") from e
    return torch


class SearchDeviceError(MotiveIndexError, ValueError):
    """The search device asked for is not usable here (no CUDA, a CPU build of torch or faiss, ...)."""

    exit_code = 2


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


class DeviceCopy:
    """A search copy of the CPU index on a device. ``exact``: its scores are exact inner products (no re-rank).

    :meth:`search` returns ``(scores (B, k), labels (B, k))`` best first, or None when it cannot answer this
    ``k`` (the CPU index answers then); :meth:`update` follows a catch-up (called under the index's write lock).
    """

    name = ""
    exact = False

    def __init__(self, device: str):
        self.device = device

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:  # pragma: no cover
        raise NotImplementedError

    def update(self, kind, removed: np.ndarray, new_labels: np.ndarray, new_vecs: np.ndarray) -> None:
        """Follow a catch-up of the CPU index ``kind`` (a :class:`~.kinds.Kind`, already updated)."""
        raise NotImplementedError  # pragma: no cover


class FaissGpuCopy(DeviceCopy):
    """The FAISS index copied to one GPU (flat stays exact, ivf keeps its tuned nprobe). Searches are serialized:
    FAISS GPU indexes are not thread-safe, even to search."""

    name = "faiss-gpu"

    def __init__(self, device: str, cpu_index, nprobe: int | None):
        super().__init__(device)
        self._res = _faiss().StandardGpuResources()  # kept alive with the GPU index
        self._nprobe = nprobe
        self._lock = threading.Lock()
        self._copy(cpu_index)

    def _copy(self, cpu_index) -> None:
        faiss = _faiss()
        gpu = faiss.index_cpu_to_gpu(self._res, int(self.device.split(":")[1]), cpu_index)
        if self._nprobe is not None:
            try:
                gpu.nprobe = int(self._nprobe)
            except AttributeError:  # pragma: no cover - older GPU IVF wrappers
                faiss.GpuParameterSpace().set_index_parameter(gpu, "nprobe", int(self._nprobe))
        self._gpu = gpu

    def search(self, q, k):
        if k > FAISS_GPU_MAX_K:
            return None
        with self._lock:
            return self._gpu.search(q, k)

    def update(self, kind, removed, new_labels, new_vecs) -> None:
        self._gpu = None  # GPU indexes cannot remove ids: copy the caught-up CPU index again
        self._copy(kind.index)


class TorchCopy(DeviceCopy):
    """Every vector as one float32 ``(N, dim)`` tensor on the device, searched exactly; row ``r`` holds label
    ``row_labels[r]``. Under a reduced float32 matmul precision (TF32) the best candidates are rescored in full
    float32, so scores stay exact."""

    exact = True

    def __init__(self, device: str, labels: np.ndarray, vectors: np.ndarray):
        super().__init__(device)
        torch = _torch()
        self.name = "torch-cpu" if device == "cpu" else "torch-cuda"
        self.mat = torch.from_numpy(np.ascontiguousarray(vectors, np.float32)).to(torch.device(device))
        self.row_labels = np.asarray(labels, np.int64)

    def search(self, q, k):
        return _torch_topk(self.mat, self.row_labels, q, k)

    def update(self, kind, removed, new_labels, new_vecs) -> None:
        torch = _torch()
        if len(removed):
            keep = ~np.isin(self.row_labels, removed)  # (N,)
            self.mat = self.mat[torch.from_numpy(keep).to(self.mat.device)]
            self.row_labels = self.row_labels[keep]
        if len(new_labels):
            add = torch.from_numpy(np.ascontiguousarray(new_vecs, dtype=np.float32)).to(self.mat.device)
            self.mat = torch.cat([self.mat, add])  # (N', dim)
            self.row_labels = np.concatenate([self.row_labels, np.asarray(new_labels, np.int64)])
        if self.mat.shape[0] != kind.ntotal or len(self.row_labels) != kind.ntotal:
            raise RuntimeError(f"torch copy has {self.mat.shape[0]} rows, the index {kind.ntotal}")

    @property
    def nbytes(self) -> int:
        return int(self.mat.numel() * self.mat.element_size())
