"""Attribution: turn a query vector into ranked training clips (most influential, or most opposed)."""

from __future__ import annotations

import numpy as np

from .index import VectorIndex
from .store import ClipStore
from .types import Hit


def rank(index: VectorIndex, store: ClipStore, vector: np.ndarray, k: int = 10,
         negative: bool = False) -> list[Hit]:
    """Top-k stored clips by influence score ĝ_trainᵀ ĝ_query (a cosine).

    ``negative=False``: highest scores first (the clips that most helped this motion); ``negative=True``:
    lowest first (the clips that pushed hardest against it).
    """
    if k < 1:
        raise ValueError(f"k={k} is invalid: need at least 1")
    found = index.search(np.asarray(vector, dtype=np.float32), k, negative=negative)[0]
    rows = store.rows([cid for cid, _ in found])
    hits = []
    for cid, score in found:
        row = rows.get(cid)
        if row is None:  # removed from the store after the index was built: never return it
            continue
        hits.append(Hit(clip_id=cid, score=float(score), rank=len(hits) + 1, path=row["path"],
                        caption=row["caption"], metadata=row["metadata"]))
    return hits
