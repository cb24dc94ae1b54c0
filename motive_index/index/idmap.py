"""clip id <-> int64 label, compact enough for ten million clips.

Two Python dicts (id -> label, label -> id) cost about 400 bytes a clip with their str and int objects: 4 GB at
10 M, as much as the compressed codes themselves. Here:

- ids by label: Arrow string arrays, one per contiguous label range (a build's, then each catch-up's), about
  12 bytes a clip; removed labels are marked in a bool ``alive`` mask (1 byte a label) and dropped when the
  index is rebuilt;
- lookups by id: each id's Python ``hash`` (per process: never saved) sorted, with the label beside it (16
  bytes a clip), binary-searched and confirmed against the id at that label (a hash collision costs one more
  comparison, never a wrong answer); ids added since the arrays were last merged wait in a small dict.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

#: recent additions are merged into the sorted hash arrays once they pass this many (or this share of the map)
MERGE_MIN = 50_000
MERGE_SHARE = 0.05
#: id chunks (one per catch-up that adds) joined into one past this many
MAX_CHUNKS = 64


def _hashes(ids: Sequence[str]) -> np.ndarray:
    return np.fromiter((hash(c) for c in ids), dtype=np.int64, count=len(ids))


class IdMap:
    """clip id <-> label (see the module). Not thread-safe: the index's readers-writer lock guards it."""

    def __init__(self, labels: Sequence[int], ids: Sequence[str] | pa.Array):
        labels = np.asarray(labels, np.int64).reshape(-1)
        ids = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(ids), pa.string())
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        if len(labels) != len(ids):
            raise ValueError(f"{len(labels)} labels but {len(ids)} ids")
        if len(labels) and labels.min() < 0:
            raise ValueError("labels must be >= 0")
        self._starts = np.zeros(0, np.int64)
        self._chunks: list[pa.Array] = []
        self._alive = np.zeros(0, bool)
        self._recent: dict[str, int] = {}
        self._n = len(labels)
        if len(labels):
            order = np.argsort(labels, kind="stable")
            sorted_labels = labels[order]
            if np.any(sorted_labels[1:] == sorted_labels[:-1]):
                raise ValueError("duplicate ids or labels")
            span = int(sorted_labels[-1]) + 1
            where = np.full(span, -1, np.int64)  # label -> row of ids, -1 for a label not held
            where[sorted_labels] = order
            take = pa.array(where, mask=where < 0)  # null rows for the holes
            self._starts, self._chunks = np.zeros(1, np.int64), [ids.take(take)]
            self._alive = where >= 0
        py_ids = ids.to_pylist()
        if len(set(py_ids)) != len(py_ids):
            raise ValueError("duplicate ids or labels")
        h = _hashes(py_ids)
        order = np.argsort(h, kind="stable")
        self._hash, self._hash_label = h[order], labels[order]

    # ---- reads ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._n

    @property
    def span(self) -> int:
        """One past the highest label ever held."""
        return len(self._alive)

    def id_of(self, label: int) -> str:
        """The id at ``label`` (which must be held)."""
        c = int(np.searchsorted(self._starts, label, side="right")) - 1
        return self._chunks[c][label - int(self._starts[c])].as_py()

    def ids_of(self, labels: Iterable[int]) -> list[str]:
        return [self.id_of(lb) for lb in labels]

    def label(self, clip_id: str) -> int | None:
        """The label of ``clip_id``, or None when it is not held."""
        lb = self._recent.get(clip_id)
        if lb is not None:
            return lb if self._alive[lb] else None
        h = hash(clip_id)
        lo = int(np.searchsorted(self._hash, h, side="left"))
        while lo < len(self._hash) and self._hash[lo] == h:
            lb = int(self._hash_label[lo])
            if self._alive[lb] and self.id_of(lb) == clip_id:
                return lb
            lo += 1
        return None

    def __contains__(self, clip_id: str) -> bool:
        return self.label(clip_id) is not None

    def labels(self) -> np.ndarray:
        """Every held label, ascending."""
        return np.flatnonzero(self._alive).astype(np.int64)

    def arrow(self) -> tuple[np.ndarray, pa.Array]:
        """``(labels (N,) int64, ids)`` of every held clip, in label order, without Python objects."""
        labels, ids = [], []
        for start, chunk in zip(self._starts.tolist(), self._chunks):
            alive = self._alive[start:start + len(chunk)]
            labels.append(np.flatnonzero(alive) + start)
            ids.append(chunk.filter(pa.array(alive)))
        if not ids:
            return np.zeros(0, np.int64), pa.array([], pa.string())
        return np.concatenate(labels).astype(np.int64), pa.concat_arrays(ids)

    def items(self) -> list[tuple[int, str]]:
        """``(label, id)`` of every held clip, in label order."""
        labels, ids = self.arrow()
        return list(zip(labels.tolist(), ids.to_pylist()))

    def ids(self) -> list[str]:
        """Every held id, in label order."""
        return self.arrow()[1].to_pylist()

    # ---- writes -----------------------------------------------------------------------------------------

    def add(self, ids: Sequence[str], start: int) -> None:
        """Hold ``ids`` at labels ``start, start + 1, ...`` (from :attr:`span` on; none of them held)."""
        if not len(ids):
            return
        if start < self.span:
            raise ValueError(f"labels from {start} overlap those held (up to {self.span - 1})")
        self._starts = np.append(self._starts, np.int64(start))
        self._chunks.append(pa.array(list(ids), pa.string()))
        if len(self._chunks) > MAX_CHUNKS:
            self._coalesce()
        grown = np.zeros(start + len(ids), bool)
        grown[:len(self._alive)] = self._alive
        grown[start:] = True
        self._alive = grown
        for i, c in enumerate(ids):
            self._recent[c] = start + i
        self._n += len(ids)
        if len(self._recent) > max(MERGE_MIN, MERGE_SHARE * self._n):
            self._merge()

    def _coalesce(self) -> None:
        """Join every chunk after the first into one (nulls for the label gaps between them)."""
        start = int(self._starts[1])
        parts = []
        end = start
        for st, chunk in zip(self._starts[1:].tolist(), self._chunks[1:]):
            if st > end:
                parts.append(pa.nulls(st - end, pa.string()))
            parts.append(chunk)
            end = st + len(chunk)
        self._starts = np.array([self._starts[0], start], np.int64)
        self._chunks = [self._chunks[0], pa.concat_arrays(parts)]

    def remove(self, labels: Sequence[int]) -> None:
        labels = np.asarray(labels, np.int64)
        if len(labels):
            self._n -= int(self._alive[labels].sum())
            self._alive[labels] = False

    def _merge(self) -> None:
        """Move the recent additions into the sorted hash arrays (and drop removed labels from them)."""
        ids, labels = list(self._recent), np.fromiter(self._recent.values(), np.int64, len(self._recent))
        h = np.concatenate([self._hash, _hashes(ids)])
        lb = np.concatenate([self._hash_label, labels])
        keep = self._alive[lb]
        h, lb = h[keep], lb[keep]
        order = np.argsort(h, kind="stable")
        self._hash, self._hash_label = h[order], lb[order]
        self._recent = {}

    @property
    def nbytes(self) -> int:
        """Bytes held (Arrow ids, mask, hash arrays; the recent dict estimated at 100 bytes an entry)."""
        return (sum(c.nbytes for c in self._chunks) + self._alive.nbytes + self._hash.nbytes
                + self._hash_label.nbytes + 100 * len(self._recent))
