"""FAISS inner-product search, derived from the store and never ahead of it.

The index is a cache of the store's vectors, recording the store version it was built from
(:func:`open_index` loads, catches up or rebuilds it: :mod:`.opening`). Its parts:

- :mod:`.kinds`: how vectors are indexed: ``flat`` (exact), ``ivf`` (exact scores of the candidates visited,
  ``nprobe`` tuned to a recall target), ``compressed`` (8-bit codes in memory, candidates re-scored exactly
  against a memory-mapped float copy, :mod:`.floatcopy`, float32 or float16), and ``auto`` picking by size;
  :mod:`.hnsw`: ``hnsw`` (a graph, removals as tombstones, rebuilt in the background); :mod:`.shards`: parts
  searched as one.
- :mod:`.backends`: where searches run (FAISS on the CPU; a FAISS GPU copy; exact torch search on a GPU).
- :mod:`.record`: what a build made and measured (frozen, saved with the index).
- :mod:`.vector_index`: :class:`VectorIndex`, the clip id <-> label map, search, catch-up, save and load.

No model code here.
"""

from .backends import (BACKENDS, FAISS_GPU_MAX_K, TORCH_RESCORE_EXTRA, SearchDeviceError, _faiss, _faiss_gpus,
                       resolve_backend)
from .kinds import (AUTO_COMPRESSED_MIN_ELEMENTS, AUTO_FLAT_MAX_ELEMENTS, AUTO_FLOAT16_MIN_BYTES, IVF_MIN_N,
                    KIND_COMPRESSED, KIND_FLAT, KIND_HNSW, KIND_IVF, KINDS, choose_float_copy, choose_kind,
                    choose_nlist)
from .opening import CATCH_UP_MAX_CHANGE, OpenDecision, open_index
from .record import BuildRecord
from .vector_index import FORMAT, IDS_FILE, INDEX_FILE, META_FILE, VectorIndex

__all__ = ["AUTO_COMPRESSED_MIN_ELEMENTS", "AUTO_FLAT_MAX_ELEMENTS", "AUTO_FLOAT16_MIN_BYTES", "BACKENDS",
           "BuildRecord", "KIND_HNSW", "choose_float_copy",
           "CATCH_UP_MAX_CHANGE", "FAISS_GPU_MAX_K", "FORMAT", "IDS_FILE", "INDEX_FILE", "IVF_MIN_N",
           "KIND_COMPRESSED", "KIND_FLAT", "KIND_IVF", "KINDS", "META_FILE", "OpenDecision", "SearchDeviceError",
           "TORCH_RESCORE_EXTRA", "VectorIndex", "_faiss", "_faiss_gpus", "choose_kind", "choose_nlist",
           "open_index", "resolve_backend"]
