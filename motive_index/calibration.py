"""Calibrated scores: a hit's percentile against the null distribution of the index's own scores.

A cosine of 0.31 means nothing to a reviewer; "above 99.7% of the scores between stored clips" does. The null
of a channel is the distribution of ``vᵢᵀvⱼ`` over pairs of distinct stored vectors: a sample of at most
``SAMPLE`` stored clips (seeded, so the same store gives the same null), all pairs of it, self pairs excluded.
It is kept as ``GRID`` quantiles, so a percentile is one interpolation, and measured again whenever the store
has moved on (an add or a removal), so it stays current with what the index holds.

A hit's ``percentile`` is the share of null pair scores below its score, in percent: a near-duplicate of a
stored clip scores near 100, a clip unrelated to the query near 50, an opposed one near 0. The null is made of
stored-vs-stored pairs, while a query is a generated video: percentiles say how unusual a score is among the
index's own clips, not a probability that the clip was used.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ._io import atomic_write

log = logging.getLogger(__name__)

NULL_FILE = "null.json"
SAMPLE = 1000     # stored clips sampled: SAMPLE·(SAMPLE−1)/2 ≈ 500 k pairs
GRID = 1001       # quantiles kept, at 0, 0.1, …, 100 %
SUMMARY_AT = (1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 99.9)


@dataclass(frozen=True)
class NullDistribution:
    """Quantiles of stored-vs-stored scores of one channel, measured at ``store_version``."""

    store_version: int
    size: int            # clips stored when it was measured
    sample: int          # clips sampled
    pairs: int           # pair scores the quantiles come from
    quantiles: tuple     # GRID values, the 0 … 100 % quantiles (non-decreasing)
    seconds: float = 0.0

    def percentile(self, score: float) -> float:
        """The share (0–100) of null pair scores below ``score``, interpolated between quantiles."""
        q = np.asarray(self.quantiles, dtype=np.float64)
        s = float(score)
        if s < q[0]:
            return 0.0
        if s > q[-1]:
            return 100.0
        grid = np.linspace(0.0, 100.0, len(q))
        # flat stretches (ties) answer their middle, so a score equal to a common value is not called extreme
        lo, hi = np.searchsorted(q, s, side="left"), np.searchsorted(q, s, side="right")
        if hi > lo:
            return float((grid[lo] + grid[hi - 1]) / 2)
        return float(np.interp(s, q, grid))

    def summary(self) -> dict:
        """What ``info`` and the service's status show: where the null's percentiles lie, and its basis."""
        q = np.asarray(self.quantiles, dtype=np.float64)
        grid = np.linspace(0.0, 100.0, len(q))
        at = {f"p{p:g}": round(float(np.interp(p, grid, q)), 4) for p in SUMMARY_AT}
        return {"store_version": self.store_version, "size": self.size, "sample": self.sample,
                "pairs": self.pairs, "quantiles": at}

    def to_json(self) -> str:
        return json.dumps({"store_version": self.store_version, "size": self.size, "sample": self.sample,
                           "pairs": self.pairs, "seconds": self.seconds,
                           "quantiles": [round(float(v), 7) for v in self.quantiles]})

    @classmethod
    def from_json(cls, text: str) -> "NullDistribution":
        d = json.loads(text)
        q = tuple(float(v) for v in d["quantiles"])
        if len(q) < 2 or any(b < a for a, b in zip(q, q[1:])):
            raise ValueError("quantiles must be at least two non-decreasing numbers")
        return cls(store_version=int(d["store_version"]), size=int(d["size"]), sample=int(d["sample"]),
                   pairs=int(d["pairs"]), quantiles=q, seconds=float(d.get("seconds", 0.0)))


def measure_null(ids: Sequence[str], get_vectors: Callable[[list[str]], dict], store_version: int,
                 sample: int = SAMPLE, seed: int = 0) -> NullDistribution | None:
    """The null of a store holding ``ids`` (``get_vectors``: ids -> {id: vector}); None under two clips.

    The sample is ``seed``-ed over ``ids`` in the order given (the index's order), so the same index gives
    the same null.
    """
    t0 = time.perf_counter()
    ids = list(ids)
    if len(ids) < 2:
        return None
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(ids), size=min(sample, len(ids)), replace=False).tolist())
    chosen = [ids[i] for i in pick]
    got = get_vectors(chosen)
    vecs = [got[c] for c in chosen if c in got]  # one removed meanwhile is left out
    if len(vecs) < 2:
        return None
    m = np.stack(vecs).astype(np.float32)               # (S, dim), unit rows
    gram = m @ m.T                                       # (S, S)
    scores = gram[np.triu_indices(len(vecs), k=1)]      # (S·(S−1)/2,) self pairs excluded
    quantiles = np.quantile(scores.astype(np.float64), np.linspace(0.0, 1.0, GRID))
    return NullDistribution(store_version=int(store_version), size=len(ids), sample=len(vecs),
                            pairs=int(scores.size), quantiles=tuple(float(v) for v in quantiles),
                            seconds=time.perf_counter() - t0)


def load_null(folder: str | Path) -> NullDistribution | None:
    """The null saved in ``folder`` (None when absent or unreadable: it is measured again)."""
    path = Path(folder) / NULL_FILE
    try:
        return NullDistribution.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s is unreadable (%s); measuring the null again", path, e)
        return None


def save_null(folder: str | Path, null: NullDistribution) -> None:
    """Keep ``null`` beside the channel's FAISS index (a read-only folder: kept in memory only)."""
    try:
        atomic_write(Path(folder) / NULL_FILE, null.to_json())
    except OSError as e:
        log.info("could not save the null distribution in %s: %s", folder, e)
