"""Plain records passed between stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Clip:
    """One row of a manifest: a training clip (or a query) and what is known about it.

    ``path`` is absolute once read from a manifest. ``metadata`` holds the manifest's other columns.
    """

    clip_id: str
    path: str
    caption: str = ""
    start_sec: float | None = None
    end_sec: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


HIT_KINDS = ("influence", "similarity", "combined")


@dataclass
class Hit:
    """One result of a query: a stored clip, its score (a cosine in [-1, 1]) and what kind of answer it is.

    ``kind``: ``influence`` (score: gradient cosine, which training clips the model learned this motion from),
    ``similarity`` (score: motion-descriptor cosine, which clips move like this: not influence) or
    ``combined`` (motion-similar candidates ordered by influence: score is the influence, ``similarity`` the
    descriptor cosine). ``percentile``: how unusual ``score`` is among the index's own stored-vs-stored
    scores of that channel (None while the index holds under two clips).
    """

    clip_id: str
    score: float
    rank: int
    path: str = ""
    caption: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: str = "influence"
    similarity: float | None = None
    percentile: float | None = None   # share (0-100) of the channel's null scores below ``score`` (calibration.py)

    def to_dict(self) -> dict[str, Any]:
        d = {"clip_id": self.clip_id, "kind": self.kind, "score": self.score, "rank": self.rank,
             "path": self.path, "caption": self.caption, "metadata": self.metadata,
             "percentile": self.percentile}
        if self.similarity is not None:
            d["similarity"] = self.similarity
        return d
