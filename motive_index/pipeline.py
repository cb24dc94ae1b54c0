"""The build as a pipeline of plain steps, so a local run and a distributed one share every step.

    plan(clips, channels)           which clips need which channel's vector (stored and removed ones skipped)
    ClipEmbedder.read(work)         CPU: decode, standardize, flow mask, motion descriptor   (no model)
    ClipEmbedder.finish(work, r)    the model: VAE, gradient, projection -> a ClipRecord
    StoreWriter.put(record)         apply finished records to the stores, in order, in batches
    run_local(embedder, work, writer)   the local executor: the next clip's read overlaps this clip's model work

Every step returns values: a clip that fails (bad video, NaN gradient) is a :class:`ClipRecord` with
``error`` set, recorded by the writer, never an exception lost in a thread. The channels are a list of
:class:`Channel` records (the influence channel last: its store is the record of what is done, so a clip's
other vectors are written before its influence vector); a third channel is one more entry.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from .errors import MotiveIndexError
from .types import Clip

log = logging.getLogger(__name__)

INFLUENCE, MOTION = "influence", "motion"
COMPACT_EVERY = 64  # store writes between compactions during a build
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Channel:
    """One kind of vector an index keeps: its name, its store, and the kind its hits are labelled with."""

    name: str
    store: Any          # ClipStore
    label: str          # Hit.kind of its results


@dataclass(frozen=True)
class Work:
    """One clip to embed, and the channels whose vector it still lacks."""

    clip: Clip
    channels: frozenset


@dataclass
class Plan:
    work: list[Work]
    skipped: int        # the influence vector is stored already (a resumed or repeated build)
    removed: int        # removed from the index earlier: never stored again


@dataclass
class ClipRecord:
    """A finished clip: its vectors by channel, the facts computed on the way, its stage times; or ``error``."""

    clip: Clip
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    computed: dict[str, Any] = field(default_factory=dict)      # stored under metadata["motive"]
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def row(self, channel: str) -> dict:
        """The store row of this clip in ``channel``. Computed facts live under ``motive`` in the influence
        row, so they never overwrite a manifest column."""
        c = self.clip
        meta = {**c.metadata, "motive": self.computed} if channel == INFLUENCE else c.metadata
        return {"clip_id": c.clip_id, "path": c.path, "caption": c.caption, "metadata": meta,
                "vector": self.vectors[channel]}


def plan(clips: list[Clip], channels: list[Channel]) -> Plan:
    """The work ``clips`` need: each clip not removed, with the channels that do not store it yet."""
    ids = [c.clip_id for c in clips]
    influence = _influence(channels)
    removed = influence.store.removed(ids)
    held = {ch.name: ch.store.has(ids) for ch in channels}
    work, skipped, n_removed = [], 0, 0
    for c in clips:
        if c.clip_id in removed:
            n_removed += 1
            continue
        if c.clip_id in held[INFLUENCE]:
            skipped += 1
        missing = frozenset(ch.name for ch in channels if c.clip_id not in held[ch.name])
        if missing:
            work.append(Work(c, missing))
    # clips lacking their influence vector first, then those lacking only another channel (an index made
    # before its motion channel, or a crash between the two writes): as the build did before
    work.sort(key=lambda w: INFLUENCE not in w.channels)
    return Plan(work=work, skipped=skipped, removed=n_removed)


def _influence(channels: list[Channel]) -> Channel:
    for ch in channels:
        if ch.name == INFLUENCE:
            return ch
    raise ValueError("the channels have no influence channel")


class ReadStep:
    """The CPU half of the per-clip step, without the model: decode, standardize, mask (a
    :class:`~motive_index.gradients.ClipReader`) and the motion descriptor (the featurizer, if the work asks
    for it). Returns ``(ClipRead, descriptor)``, or a failed :class:`ClipRecord`."""

    def __init__(self, reader, featurizer=None):
        self.reader, self.featurizer = reader, featurizer

    def __call__(self, work: Work):
        c = work.clip
        try:
            r = self.reader.read(c.path, c.start_sec, c.end_sec)
            desc = None
            if MOTION in work.channels and self.featurizer is not None:
                t0 = time.perf_counter()
                desc = self.featurizer.describe(r.video.frames, r.mask)
                r.timings["features"] = time.perf_counter() - t0
            if r.video.between is not None:  # the source frames flow ran through: the model's half needs none
                r = r._replace(video=replace(r.video, between=None), mask=replace(r.mask, between=None))
            return r, desc
        except MotiveIndexError as e:
            return ClipRecord(c, error=str(e))


class ClipEmbedder:
    """The per-clip step, from a :class:`~motive_index.gradients.GradientEngine` (and the motion channel's
    featurizer, if any). :meth:`read` is CPU work without the model (safe in another thread or process: a
    :class:`ReadStep`); :meth:`finish` is the model's. Both return failures as values."""

    def __init__(self, engine, featurizer=None):
        self.engine, self.featurizer = engine, featurizer
        self.read = ReadStep(engine.reader, featurizer)

    def finish(self, work: Work, read) -> ClipRecord:
        """The clip's record, from :meth:`read`'s answer (a failed read passes through)."""
        if isinstance(read, ClipRecord):
            return read
        r, desc = read
        c = work.clip
        rec = ClipRecord(c)
        if desc is not None:
            rec.vectors[MOTION] = desc
        if INFLUENCE in work.channels:
            try:
                vec, prep = self.engine.embed(c.path, c.caption, c.start_sec, c.end_sec, name=c.clip_id, read=r)
            except MotiveIndexError as e:
                return ClipRecord(c, error=str(e))
            rec.vectors[INFLUENCE] = vec
            rec.computed, rec.timings = prep.metadata, dict(prep.timings)
        return rec

    def __call__(self, work: Work) -> ClipRecord:
        return self.finish(work, self.read(work))


@dataclass
class WriteReport:
    added: int = 0                                      # influence vectors stored
    skipped: int = 0                                    # stored meanwhile by another writer
    failed: dict[str, str] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    writes: int = 0


class StoreWriter:
    """Applies finished records to the channels' stores, every ``batch`` clips (1: a crash, even kill -9,
    loses no finished clip): each batch's other channels first, its influence vectors last; failures are
    recorded with their reason in the influence store. ``compact`` is called every ``COMPACT_EVERY`` writes."""

    def __init__(self, channels: list[Channel], batch: int = 1, compact: Callable[[], None] | None = None):
        if batch < 1:
            raise ValueError(f"batch={batch} is invalid: at least 1")
        self.order = sorted(channels, key=lambda ch: ch.name == INFLUENCE)  # influence last
        self.influence = _influence(channels)
        self.batch, self.compact = batch, compact
        self.pending: dict[str, list[dict]] = {ch.name: [] for ch in channels}
        self.report = WriteReport()

    def put(self, rec: ClipRecord) -> None:
        if rec.error is not None:
            self.report.failed[rec.clip.clip_id] = rec.error
            self.influence.store.record_failure(rec.clip.clip_id, rec.clip.path, rec.error)
            log.info("clip %s failed: %s", rec.clip.clip_id, rec.error)
            return
        for name in rec.vectors:
            self.pending[name].append(rec.row(name))
        if INFLUENCE in rec.vectors:
            for stage, s in rec.timings.items():
                self.report.stage_seconds[stage] = self.report.stage_seconds.get(stage, 0.0) + s
        if max(len(rows) for rows in self.pending.values()) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not any(self.pending.values()):
            return
        t0 = time.perf_counter()
        for ch in self.order:
            rows = self.pending[ch.name]
            if not rows:
                continue
            added = ch.store.add(rows)
            if ch.name == INFLUENCE:  # a clip not added was stored meanwhile (not under the write lock)
                self.report.added += added
                self.report.skipped += len(rows) - added
            rows.clear()
        self.report.writes += 1
        if self.compact is not None and self.report.writes % COMPACT_EVERY == 0:
            self.compact()  # small writes leave small fragments: merge them now and then
        self.report.stage_seconds["store"] = self.report.stage_seconds.get("store", 0.0) + time.perf_counter() - t0


def run_local(embedder: ClipEmbedder, work: list[Work], writer: StoreWriter, progress: Progress | None = None
              ) -> None:
    """Embed ``work`` in this process, writing as it goes: the next clip's read (decoding, flow and the motion
    descriptor: CPU work that releases the GIL) overlaps the model's work on this one. Interrupted (Ctrl-C,
    out of memory...), what is finished is stored all the same."""
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="motive-read")
    ahead = reader.submit(embedder.read, work[0]) if work else None
    try:
        for i, w in enumerate(work):
            this, ahead = ahead, (reader.submit(embedder.read, work[i + 1]) if i + 1 < len(work) else None)
            writer.put(embedder.finish(w, this.result()))
            if progress:
                progress(i + 1, len(work), w.clip.clip_id)
    finally:
        reader.shutdown(wait=False, cancel_futures=True)
        writer.flush()
