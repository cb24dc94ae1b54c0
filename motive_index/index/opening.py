"""open_index: a VectorIndex current with its store, and the decision that made it (load, catch up, rebuild).

The index is a cache of the store's vectors: it records the store (``clips`` table) version it was built from.
:func:`decide` says what the saved (or in-memory) index needs, and why; :func:`open_index` carries it out:
loads the saved one; when the store has moved on *catches up* (removes the clips that left, adds the new ones)
or, when the change is large, the file is missing/corrupt, or the wanted kind changed, rebuilds from the store;
then saves again. One INFO line says which; the index's :attr:`~.vector_index.VectorIndex.opened` keeps it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING


from .backends import resolve_backend
from .kinds import choose_kind
from .vector_index import VectorIndex, log as _log, positions

if TYPE_CHECKING:  # pragma: no cover
    from ..store import ClipStore

#: a catch-up is done when (changes since the last build) <= this share of the index size at that build
CATCH_UP_MAX_CHANGE = 0.20

#: a catch-up reads the rows added since the index's last sync less this (writers' clocks, and the time between a
#: row's ``added_at`` and its commit, may be behind the reader's clock by up to this)
SYNC_MARGIN_S = 600.0

#: a caught-up index is saved again at once while its vectors are at most this many bytes; a larger one when its
#: saved copy misses more than SAVE_LAG_SHARE of its size, or was saved more than SAVE_LAG_S ago
SAVE_ALWAYS_BYTES = 64 << 20
SAVE_LAG_SHARE = 0.01
SAVE_LAG_S = 600.0

LOAD, CATCH_UP, REBUILD = "load", "catch_up", "rebuild"


@dataclass(frozen=True)
class OpenDecision:
    """What :func:`open_index` did: ``action`` (``load``, ``catch_up``, ``rebuild``) and ``reason`` (why, for a
    rebuild), with the store version and the change applied (``added``, ``removed``)."""

    action: str
    reason: str = ""
    store_version: int | None = None
    added: int = 0
    removed: int = 0


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def kind_mismatch(index: VectorIndex, n: int, kind: str, recall_target: float) -> str | None:
    """Why ``index`` is not what ``kind`` asks for at size ``n`` (None if it is)."""
    rec = index.record
    if kind == "auto" and rec.requested != "auto":
        return None  # built with an explicit kind: auto keeps it
    if kind != "auto":
        if rec.requested != kind and index.kind != kind:
            return f"kind {index.kind!r} was asked to be {kind!r}"
        if kind != "flat" and rec.recall_target < recall_target:
            return f"recall target raised to {recall_target}"
        return None
    want = choose_kind(n, index.dim, "auto")
    # a fallback means auto's pick was tried and missed the target (vectors without cluster structure): trying
    # it again at another size would too
    if want != index.kind and not rec.fallback:
        return f"auto picks {want!r} at {n} vectors (index is {index.kind!r})"
    return None


def open_index(store: "ClipStore", index_dir: str | os.PathLike | None = None,
               log: logging.Logger = _log, *, kind: str = "auto", recall_target: float = 0.95,
               current: VectorIndex | None = None, device: str = "cpu", backend: str = "auto") -> VectorIndex:
    """A :class:`VectorIndex` current with ``store``: loaded, caught up, or rebuilt; saved when it changed.

    ``index_dir`` defaults to the store's folder. ``current`` (an index already in memory, e.g. a service's)
    is caught up in place instead of reading the saved one. Catch-up (remove the ids that left the store, add
    the new ones) is used while the changes since the last build stay within ``CATCH_UP_MAX_CHANGE`` of its
    size; otherwise, or when the saved index is missing/corrupt, or ``kind`` asks for another kind, or
    ``auto``'s choice changed with the size, it is rebuilt. Logs one INFO line saying which, and sets the
    index's ``opened`` (an :class:`OpenDecision`). A failure to save (read-only folder) is logged, not raised.

    ``device`` / ``backend``: where searches run (:meth:`VectorIndex.use_device`; e.g. ``device="cuda"``: FAISS
    on the GPU, or exact torch search on the GPU without a GPU faiss). Checked first: a device that is not
    there raises :class:`~.backends.SearchDeviceError` before anything is loaded or built.
    """
    choose_kind(0, 1, kind)  # validates kind
    resolve_backend(device, backend)  # validates device and backend before any work
    index_dir = Path(index_dir) if index_dir is not None else Path(store.path)
    version, dim = store.version, store.dim
    index = current
    why = None
    if index is None:
        try:
            index = VectorIndex.load(index_dir)
        except FileNotFoundError:
            why = "built (no saved index)"
        except Exception as e:  # garbage or truncated files, a FAISS error, bad JSON, an old format: rebuild
            why = f"rebuilt because corrupt: {_first_line(e)}"
    if index is not None and index.dim != dim:
        why, index = f"rebuilt because stale (index dim {index.dim}, store dim {dim})", None
    if index is not None and index.store_version == version and len(index) == len(store):
        if current is not None:
            return current.use_device(device, backend)  # already current in memory
        if kind_mismatch(index, len(index), kind, recall_target) is None:
            index.use_device(device, backend)
            index.opened = OpenDecision(LOAD, store_version=version)
            log.info("FAISS index at %s: loaded (store version %d, %d vectors, dim %d, %s%s)",
                     index_dir, version, len(index), dim, index.kind, _on(index))
            return index
    snap = None
    if index is not None:
        quick = _changes(index, store)  # only the rows added since the last sync, and the removals
        if quick is None:  # never synced, or the store changed in a way the change read cannot see
            synced = time.time()
            snap = store.snapshot()
            version, ids, vectors = snap
            added, removed = index.diff(ids)
            rows = vectors[positions(ids, added)]
            n_now = len(ids)
        else:
            synced, version, added, rows, removed, n_now = quick
        changes = len(added) + len(removed) + index.changes_since_build
        base = max(index.record.built_n, 1)
        mismatch = kind_mismatch(index, n_now, kind, recall_target)
        if mismatch is not None:
            why = f"rebuilt because {mismatch}"
        elif changes > CATCH_UP_MAX_CHANGE * base:
            why = (f"rebuilt because stale and the change is large (+{len(added)} -{len(removed)}, "
                   f"{changes} changes since the build of {base} vectors > {CATCH_UP_MAX_CHANGE:.0%})")
        else:
            was = index.store_version
            try:
                index.apply(added, rows, removed, version)
            except Exception as e:  # a FAISS error while updating: never fatal, rebuild
                why = f"rebuilt because catch-up failed: {_first_line(e)}"
            else:
                index.synced_at = synced
                _save_if_due(index, index_dir, log)
                index.use_device(device, backend)
                index.opened = OpenDecision(CATCH_UP, reason="read the store's changes" if quick else
                                            "read the store's snapshot", store_version=version,
                                            added=len(added), removed=len(removed))
                log.info("FAISS index at %s: caught up: +%d -%d (store version %d -> %d, %d vectors, %s; %s%s)",
                         index_dir, len(added), len(removed), was, version, len(index), index.kind,
                         "changes read" if quick else "snapshot read", _on(index))
                return index
    if snap is None:
        synced = time.time()  # before the read: a row committed during it is caught by the next catch-up
        snap = store.snapshot()
    version, ids, vectors = snap
    new = VectorIndex.build(ids, vectors, version, kind=kind, recall_target=recall_target)
    new.synced_at = synced
    _save(new, index_dir, log)
    new.use_device(device, backend)
    new.opened = OpenDecision(REBUILD, reason=why or "", store_version=version, added=len(new))
    rec = new.record
    fb = f"; {rec.fallback}" if rec.fallback else ""
    rr = f", re-rank x{rec.rerank}" if rec.rerank else ""
    log.info("FAISS index at %s: %s; now store version %d, %d vectors, %s (nprobe %s%s, recall@10 %s)%s%s",
             index_dir, why, version, len(new), new.kind, rec.nprobe, rr, rec.recall_at_10, fb, _on(new))
    return new


def _changes(index: VectorIndex, store: "ClipStore"):
    """``(synced, version, added, vectors, removed, n)`` read from the store's changes since the index's last
    sync (:meth:`~motive_index.store.ClipStore.changes_since`: rows added since then, less
    :data:`SYNC_MARGIN_S`; removals from the tombstones the index holds), or None when the index was never
    synced or the counts do not add up (a change this read cannot see: the caller reads the snapshot)."""
    if index.synced_at is None:
        return None
    synced = time.time()
    held_gone = [c for c in store.tombstones.ids() if c in index]
    since = _dt.datetime.fromtimestamp(index.synced_at - SYNC_MARGIN_S, tz=_dt.timezone.utc)
    ch = store.changes_since(since, held_gone, held=index)
    removed = [c for c in held_gone if c not in ch.still_stored]
    if len(index) + len(ch.ids) - len(removed) != ch.count:
        return None
    return synced, ch.version, ch.ids, ch.vectors, removed, ch.count


def _on(index: VectorIndex) -> str:
    """``""`` for CPU FAISS search, else where searches run, for the log line."""
    if index.backend == "faiss-cpu":
        return ""
    return f"; search: {index.backend} on {index.device}" + (" (exact)" if index.backend.startswith("torch") else "")


def _save_if_due(index: VectorIndex, index_dir: Path, log: logging.Logger) -> None:
    """Save a caught-up index when it is small, or when its saved copy is more than :data:`SAVE_LAG_SHARE` of
    its size or :data:`SAVE_LAG_S` behind: rewriting a large index for each small change would cost far more
    than the change, and a process that loads the saved copy catches it up from the store's changes anyway."""
    small = len(index) * index.dim * 4 <= SAVE_ALWAYS_BYTES
    lagging = index.unsaved_changes > SAVE_LAG_SHARE * len(index)
    old = index.saved_at is None or time.time() - index.saved_at > SAVE_LAG_S
    if small or lagging or old:
        _save(index, index_dir, log)


def _save(index: VectorIndex, index_dir: Path, log: logging.Logger) -> None:
    try:
        index.save(index_dir)
    except OSError as e:
        log.warning("FAISS index at %s: could not save (%s); using it in memory", index_dir, e)
