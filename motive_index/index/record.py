"""What an index build made and measured: a frozen record, saved with the index and never changed after."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class BuildRecord:
    """The kind built (``kind``) for the one asked for (``requested``), its tuned search settings (``nprobe``,
    ``rerank``: candidates re-scored per wanted neighbour; ``ef_search`` for a graph), the recall@10 measured
    at them on the store's own vectors, the single-query p50 of the CPU index, and why a kind fell back to
    exact search (``fallback``)."""

    kind: str
    requested: str
    recall_target: float
    built_n: int
    recall_at_10: float = 1.0
    nlist: int | None = None
    nprobe: int | None = None
    rerank: int | None = None
    ef_search: int | None = None    # hnsw: the graph search's candidate list length
    rerank_dtype: str | None = None  # compressed: the float copy's dtype (float32, or float16)
    train_n: int | None = None
    train_seconds: float | None = None
    recall_by_nprobe: dict | None = None
    fallback: str | None = None
    p50_ms: float | None = None
    build_seconds: float | None = None
    shards: int | None = None       # parts searched as one (:meth:`VectorIndex.from_parts`); None: one index

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BuildRecord":
        """The record saved in ``d`` (keys it does not know, e.g. a display dict's, are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def search_params(self) -> dict:
        """The settings a loaded index searches with."""
        return {k: v for k, v in (("nprobe", self.nprobe), ("rerank", self.rerank),
                                                 ("ef_search", self.ef_search)) if v is not None}
