"""Several indexes searched as one: for an index built in parts (one per worker of a distributed build).

Each part keeps its own labels; the sharded index gives part ``i`` the label range starting at ``offsets[i]``
(global label = the part's label + its offset), so parts built independently, each labelled from 0, never
collide. A search asks every part for its top-k in its own thread (FAISS releases the GIL), each with exact
scores (flat, ivf, or compressed after its re-rank), and keeps the k best of them: for flat parts exactly the
answer one flat index over all the vectors gives. New clips go to the last part; a removal goes to the part
whose range holds the label.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .kinds import Kind, _top_of


class ShardedKind(Kind):
    """Parts of one kind searched as one (see the module)."""

    def __init__(self, parts: list[Kind], offsets: list[int]):
        if not parts or len(parts) != len(offsets):
            raise ValueError(f"{len(parts)} parts and {len(offsets)} offsets")
        if len({p.name for p in parts}) != 1 or len({p.dim for p in parts}) != 1:
            raise ValueError(f"parts of one kind and dim only: {[(p.name, p.dim) for p in parts]}")
        if list(offsets) != sorted(offsets) or offsets[0] != 0:
            raise ValueError(f"offsets {offsets} are invalid: increasing, from 0")
        super().__init__(None)
        self.parts = list(parts)
        self.offsets = np.asarray(offsets, np.int64)
        self.name = parts[0].name
        self._pool = ThreadPoolExecutor(max_workers=len(parts), thread_name_prefix="motive-shard")

    @property
    def ntotal(self) -> int:
        return sum(p.ntotal for p in self.parts)

    @property
    def dim(self) -> int:
        return self.parts[0].dim

    def search(self, q, k):
        def one(i):
            part = self.parts[i]
            if part.ntotal == 0:
                return None
            s, lb = part.search(q, min(k, part.ntotal))
            return s, np.where(lb >= 0, lb + self.offsets[i], -1)

        found = [r for r in self._pool.map(one, range(len(self.parts))) if r is not None]
        if not found:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        scores = np.concatenate([s for s, _ in found], axis=1)  # (B, sum k_i)
        labels = np.concatenate([lb for _, lb in found], axis=1)
        scores = np.where(labels >= 0, scores, -np.inf)
        top_s, cols = _top_of(scores, k)
        return top_s, np.take_along_axis(labels, cols, 1)

    def _part_of(self, labels: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, labels, side="right") - 1

    def add(self, labels, vectors) -> None:
        if len(labels):
            self.parts[-1].add(np.asarray(labels, np.int64) - self.offsets[-1], vectors)

    def remove(self, labels) -> None:
        labels = np.asarray(labels, np.int64)
        which = self._part_of(labels)
        for i in np.unique(which):
            self.parts[i].remove(labels[which == i] - self.offsets[i])

    def contents(self):
        got = [p.contents() for p in self.parts]
        labels = np.concatenate([lb + off for (lb, _), off in zip(got, self.offsets)])
        return labels, np.concatenate([v for _, v in got])

    @property
    def resident_bytes(self) -> int:
        return sum(p.resident_bytes for p in self.parts)
