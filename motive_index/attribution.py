"""Attribution: turn a query vector into ranked training clips (most influential, or most opposed)."""

from __future__ import annotations

import numpy as np

from .index import VectorIndex
from .store import ClipStore
from .types import Hit


def rank(index: VectorIndex, store: ClipStore, vector: np.ndarray, k: int = 10,
         negative: bool = False, kind: str = "influence") -> list[Hit]:
    """Top-k stored clips by inner product with ``vector`` (unit vectors: a cosine).

    For the influence channel the score is ĝ_trainᵀ ĝ_query; ``negative=False``: highest scores first (the
    clips that most helped this motion); ``negative=True``: lowest first (the clips that pushed hardest
    against it). ``kind`` labels the hits (``similarity`` for the motion-feature channel).
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
                        caption=row["caption"], metadata=row["metadata"], kind=kind))
    return hits


def rerank_by_influence(similar: list[tuple[str, float]], influence: dict[str, float], k: int
                        ) -> list[tuple[str, float, float]]:
    """The combined ranking: motion-similar candidates re-ordered by their influence score.

    ``similar``: (clip_id, motion similarity) candidates from the motion-feature channel; ``influence``:
    clip_id -> influence score (a candidate without one, e.g. removed meanwhile, is dropped). Returns the top
    ``k`` as (clip_id, influence, similarity), highest influence first (ties: higher similarity first). The
    influence ranking itself is never changed by this; it is a third list beside it.
    """
    if k < 1:
        raise ValueError(f"k={k} is invalid: need at least 1")
    scored = [(cid, float(influence[cid]), float(sim)) for cid, sim in similar if cid in influence]
    scored.sort(key=lambda r: (-r[1], -r[2]))
    return scored[:k]
