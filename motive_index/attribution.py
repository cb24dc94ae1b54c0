"""Attribution: turn a query vector into ranked training clips (most influential, or most opposed)."""

from __future__ import annotations

import numpy as np

from .index import VectorIndex
from .store import ClipStore
from .types import Hit


def rank(index: VectorIndex, store: ClipStore, vector: np.ndarray, k: int = 10,
         negative: bool = False, kind: str = "influence", rows_from: ClipStore | None = None) -> list[Hit]:
    """Top-k stored clips by inner product with ``vector`` (unit vectors: a cosine).

    For the influence channel the score is ĝ_trainᵀ ĝ_query; ``negative=False``: highest scores first (the
    clips that most helped this motion); ``negative=True``: lowest first (the clips that pushed hardest
    against it). ``kind`` labels the hits (``similarity`` for the motion-feature channel).

    Removed clips are never returned: the index's results are filtered against the store's tombstones (read
    now), fetching as many extra candidates as the index still holds removed clips, and a clip must still be
    stored. ``rows_from``: the store whose rows (path, caption, metadata) the hits carry (default ``store``; the
    motion channel's hits take the influence store's, which records what is done and the computed
    ``metadata.motive``); a clip it does not hold is left out.
    """
    if k < 1:
        raise ValueError(f"k={k} is invalid: need at least 1")
    removed = store.tombstones.ids()
    hidden = index.count_held(removed)  # removed clips the index still holds (a removal in flight)
    found = index.search(np.asarray(vector, dtype=np.float32), k + hidden, negative=negative)[0]
    found = [(cid, score) for cid, score in found if cid not in removed][:k]
    rows = (rows_from or store).rows([cid for cid, _ in found])
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


def curate(scores: np.ndarray, clip_ids: list[str], keep: float = 0.1, percentile: float = 90.0
           ) -> list[tuple[str, int, float]]:
    """The paper's curation by majority vote: which training clips to keep for fine-tuning.

    ``scores``: (Q, N) scores of Q query videos against the N training clips ``clip_ids``. Each query votes
    for the clips whose score is above its own ``percentile``-th score; the ``keep`` fraction of clips (at
    least one) with the most votes is kept, ties broken by the mean score over queries. Returns
    ``(clip_id, votes, mean score)``, most votes first.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != len(clip_ids) or s.shape[0] < 1 or s.shape[1] < 1:
        raise ValueError(f"scores of shape {s.shape} do not match {len(clip_ids)} clip ids (want (queries, clips))")
    if not 0 < keep <= 1:
        raise ValueError(f"keep={keep} is invalid: a fraction in (0, 1]")
    if not 0 <= percentile < 100:
        raise ValueError(f"percentile={percentile} is invalid: a number in [0, 100)")
    cut = np.percentile(s, percentile, axis=1, keepdims=True)     # (Q, 1) each query's own cutoff
    votes = (s > cut).sum(axis=0)                                 # (N,)
    mean = s.mean(axis=0)                                         # (N,)
    order = np.lexsort((-mean, -votes))                           # most votes, then highest mean score
    n_keep = max(1, int(round(keep * len(clip_ids))))
    return [(clip_ids[i], int(votes[i]), float(mean[i])) for i in order[:n_keep]]
