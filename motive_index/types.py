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


@dataclass
class Hit:
    """One result of a query: a stored clip and its influence score (a cosine in [-1, 1])."""

    clip_id: str
    score: float
    rank: int
    path: str = ""
    caption: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"clip_id": self.clip_id, "score": self.score, "rank": self.rank, "path": self.path,
                "caption": self.caption, "metadata": self.metadata}
