"""The public entry: :class:`MotiveIndex`. The CLI and the HTTP service only call this.

    idx, report = MotiveIndex.build("train/manifest.csv", model="models/tiny-ft", index="runs/idx")
    result = MotiveIndex.open("runs/idx").query("generated.mp4", prompt="a red square", k=10)
    for hit in result.hits: print(hit.rank, hit.clip_id, hit.score)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._io import atomic_write
from .config import EstimatorConfig, MaskConfig, ProjectionConfig
from .errors import FingerprintMismatchError, IndexNotFoundError, MotiveIndexError
from .types import Hit

log = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
COMPACT_EVERY = 64  # store writes between compactions during a build
Progress = Callable[[int, int, str], None]


@dataclass
class BuildReport:
    added: int = 0
    skipped: int = 0                                   # already in the store (a resumed or repeated build)
    removed: int = 0                                   # removed from the index earlier: never stored again
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class QueryResult:
    hits: list[Hit]
    timings: dict[str, float]
    query: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "hits": [h.to_dict() for h in self.hits], "timings": self.timings}


def _write_settings(index_dir: Path, model: str, mask: MaskConfig, checkpointing: bool = False) -> None:
    """Where the model (and a learned flow model) live and how to run it: needed to query, but not part of the
    fingerprint."""
    path = index_dir / SETTINGS_FILE
    if not path.is_file():
        settings = {"model": model, "checkpointing": bool(checkpointing)}
        if mask.flow_model:
            settings["flow_model"] = str(Path(mask.flow_model).resolve())
        atomic_write(path, json.dumps(settings, indent=2))


def _model_ref(model: str | Path) -> str:
    return "tiny" if str(model) == "tiny" else str(Path(model).expanduser().resolve())


def compute_mask(video: str | Path, mask: MaskConfig, spec=None, start_sec=None, end_sec=None):
    """The motion mask of a video as the build sees it: (standardized frames (T,H,W,3) uint8, MotionMask)."""
    from .config import VideoSpec
    from .motion import motion_mask
    from .video import load_video

    std = load_video(str(video), spec or VideoSpec(), start_sec=start_sec, end_sec=end_sec)
    return std.frames, motion_mask(std.frames, mask)


class MotiveIndex:
    """An attribution index on disk: a LanceDB store (the truth), a FAISS index (derived), and its model."""

    def __init__(self, path: Path, store, device: str = "cpu", model: str | None = None):
        self.path = Path(path)
        self.store = store
        self.device = device
        settings_path = self.path / SETTINGS_FILE
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        self.model_ref = model or settings.get("model")
        self.flow_model = settings.get("flow_model", "")
        self.checkpointing = bool(settings.get("checkpointing", False))
        self._engine = None
        self._index = None
        self._index_lock = threading.Lock()  # one catch-up at a time; searches use the index they got

    # ----- building ------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, manifest: str | Path | list, model: str | Path, index: str | Path, *,
              mask: str | MaskConfig = "flow", motion: str | None = None,
              dim: int = 512, projection_seed: int = 0, timestep: int = 751, noise_seed: int = 0,
              samples: int = 1, params: tuple[str, ...] = (), precision: str = "fp32", loss: str = "mse",
              checkpointing: bool = False, device: str = "cpu", batch: int = 1, progress: Progress | None = None
              ) -> tuple["MotiveIndex", BuildReport]:
        """Embed every clip of ``manifest`` not yet in the store at ``index`` (creating it if needed).

        ``mask``: ``'flow'``, ``'none'`` or a full :class:`MaskConfig`; ``motion``: ``'object'`` or ``'all'``
        (with a mask kind; defaults to MaskConfig's). ``samples``, ``params``, ``precision``, ``loss``: see
        :class:`EstimatorConfig`; ``checkpointing`` trades time for memory and is kept for later adds and
        queries (it does not change the vectors). Resumable: clips already stored are skipped, finished
        clips are written every ``batch`` clips (default 1: a crash, even kill -9, loses no finished clip), and
        a clip that fails (bad video, NaN gradient) is recorded with its reason while the build goes on.
        """
        from .backbones import load_backbone
        from .gradients import GradientEngine
        from .manifest import read_manifest
        from .store import ClipStore

        t_start = time.perf_counter()
        clips = manifest if isinstance(manifest, list) else read_manifest(manifest)  # bad manifest: fail first
        backbone = load_backbone(model, device=device)
        if not isinstance(mask, MaskConfig):
            mask = MaskConfig(kind=mask, **({"motion": motion} if motion else {}))
        elif motion and motion != mask.motion:
            raise ValueError(f"motion={motion!r} contradicts the MaskConfig's motion={mask.motion!r}")
        estimator = EstimatorConfig(timestep=timestep, noise_seed=noise_seed, samples=samples,
                                    params=tuple(params), precision=precision, loss=loss)
        engine = GradientEngine(backbone, mask, estimator, ProjectionConfig(dim=dim, seed=projection_seed),
                                checkpointing=checkpointing)
        index_dir = Path(index)
        store = ClipStore.create(index_dir, engine.fingerprint(), dim)   # refuses another fingerprint
        _write_settings(index_dir, _model_ref(model), mask, checkpointing)
        self = cls(index_dir, store, device=device)
        self._engine = engine
        report = self.add(clips, batch=batch, progress=progress)
        report.seconds = time.perf_counter() - t_start  # model loading included
        return self, report

    def _embed_into_store(self, clips, batch: int, progress: Progress | None) -> BuildReport:
        report = BuildReport()
        ids = [c.clip_id for c in clips]
        stored, removed = self.store.has(ids), self.store.removed(ids)
        todo = [c for c in clips if c.clip_id not in stored and c.clip_id not in removed]
        report.removed = len([c for c in ids if c in removed])
        report.skipped = len(clips) - len(todo) - report.removed
        pending: list[dict] = []

        flushes = 0

        def flush():
            nonlocal flushes
            if pending:
                t0 = time.perf_counter()
                report.added += self.store.add(pending)
                pending.clear()
                flushes += 1
                if flushes % COMPACT_EVERY == 0:  # small writes leave small fragments: merge them now and then
                    self.store.compact()
                report.stage_seconds["store"] = report.stage_seconds.get("store", 0.0) + time.perf_counter() - t0

        engine = self._engine
        # Decoding and flow of the next clip (CPU work that releases the GIL) overlap the model's work on this one.
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="motive-read")

        def read(c):
            return reader.submit(engine.read, c.path, c.start_sec, c.end_sec)

        ahead = read(todo[0]) if todo else None
        try:
            for i, clip in enumerate(todo):
                this, ahead = ahead, (read(todo[i + 1]) if i + 1 < len(todo) else None)
                try:
                    vec, prep = engine.embed(clip.path, clip.caption, clip.start_sec, clip.end_sec,
                                             name=clip.clip_id, read=this.result())
                except MotiveIndexError as e:  # bad video, NaN gradient...: recorded, and the build goes on
                    report.failed[clip.clip_id] = str(e)
                    self.store.record_failure(clip.clip_id, clip.path, str(e))
                    log.info("clip %s failed: %s", clip.clip_id, e)
                else:
                    # computed facts live under "motive", so they never overwrite a manifest column
                    meta = {**clip.metadata, "motive": prep.metadata}
                    pending.append({"clip_id": clip.clip_id, "path": clip.path, "caption": clip.caption,
                                    "metadata": meta, "vector": vec})
                    for stage, s in prep.timings.items():
                        report.stage_seconds[stage] = report.stage_seconds.get(stage, 0.0) + s
                    if len(pending) >= batch:
                        flush()
                if progress:
                    progress(i + 1, len(todo), clip.clip_id)
        finally:  # interrupted (Ctrl-C, out of memory...): what is finished is stored all the same
            reader.shutdown(wait=False, cancel_futures=True)
            flush()
        if flushes >= 8:
            self.store.compact()
        return report

    # ----- opening and querying -------------------------------------------------------------------------------
    @classmethod
    def open(cls, index: str | Path, device: str = "cpu", model: str | Path | None = None) -> "MotiveIndex":
        """Open an index. ``model`` overrides the model recorded at build time (it must have the same identity)."""
        from .store import ClipStore

        index_dir = Path(index)
        if not ClipStore.exists(index_dir):
            raise IndexNotFoundError(str(index_dir))
        return cls(index_dir, ClipStore.open(index_dir), device=device,
                   model=_model_ref(model) if model is not None else None)

    def _ensure_index(self):
        """The FAISS index, caught up with the store's newest version (never ahead of it)."""
        from .index import open_index

        with self._index_lock:
            if self._index is None or self._index.store_version != self.store.version:
                self._index = open_index(self.store, self.path, current=self._index, device=self.device)
            return self._index

    def _ensure_engine(self):
        if self._engine is not None:
            return self._engine
        from .backbones import load_backbone
        from .gradients import GradientEngine
        from .store import check_fingerprint

        if not self.model_ref:
            raise MotiveIndexError(f"index {str(self.path)!r} records no model; pass model=... (--model)")
        fp = self.store.fingerprint
        backbone = load_backbone(self.model_ref, device=self.device)
        mask = dict(fp["mask"])
        if mask.get("flow") == "learned":  # stored as the model file's hash; the path is in settings.json
            mask["flow_model"] = self.flow_model
        engine = GradientEngine(backbone, MaskConfig.from_dict(mask), EstimatorConfig.from_dict(fp["estimator"]),
                                ProjectionConfig.from_dict(fp["projection"]), checkpointing=self.checkpointing)
        check_fingerprint(fp, engine.fingerprint())  # e.g. the model directory changed since the build
        self._engine = engine
        return engine

    def add(self, manifest: str | Path | list, batch: int = 1, progress: Progress | None = None) -> BuildReport:
        """Embed the clips of ``manifest`` not yet stored, under this index's own settings and model.

        Idempotent; removed clips are not added back; new clips are searchable when it returns."""
        from .manifest import read_manifest

        t0 = time.perf_counter()
        clips = manifest if isinstance(manifest, list) else read_manifest(manifest)
        self._ensure_engine()
        report = self._embed_into_store(clips, batch, progress)
        self._ensure_index()
        report.seconds = time.perf_counter() - t0
        report.size = len(self.store)
        return report

    def remove(self, clip_ids, reason: str = "") -> int:
        """Remove clips; once this returns they are in no result of this or any other process. Returns how many
        were stored. A later add or build never stores them again; :meth:`purge` erases old versions too."""
        n = self.store.remove(list(clip_ids), reason=reason)
        self._ensure_index()
        return n

    def purge(self) -> dict[str, int]:
        """Delete old table versions (and with them removed clips' data) from disk."""
        return self.store.purge()

    def embed(self, video: str | Path, prompt: str = "", start_sec=None, end_sec=None):
        """The query vector of a video under this index's fingerprint: (vector, PreparedClip)."""
        return self._ensure_engine().embed(str(video), prompt, start_sec, end_sec, name=str(video))

    def search(self, vector: np.ndarray, k: int = 10, negative: bool = False) -> list[Hit]:
        from .attribution import rank

        return rank(self._ensure_index(), self.store, vector, k=k, negative=negative)

    def query(self, video: str | Path, prompt: str = "", k: int = 10, negative: bool = False,
              start_sec: float | None = None, end_sec: float | None = None, motion: str | None = None
              ) -> QueryResult:
        """The training clips that most influenced (``negative``: most opposed) the motion of ``video``.

        Queries are made under the index's fingerprint; ``motion``, if given, must be the index's."""
        stored = self.store.fingerprint["mask"].get("motion")
        if motion is not None and motion != stored:
            raise FingerprintMismatchError("mask.motion", stored, motion)
        t0 = time.perf_counter()
        self._ensure_engine()
        t1 = time.perf_counter()
        vec, prep = self.embed(video, prompt, start_sec, end_sec)
        t2 = time.perf_counter()
        hits = self.search(vec, k=k, negative=negative)
        t3 = time.perf_counter()
        timings = {"load_model": t1 - t0, **prep.timings, "search": t3 - t2, "total": t3 - t0}
        query = {"video": str(video), "prompt": prompt, "k": k, "negative": negative,
                 "static": prep.metadata.get("static", False)}
        return QueryResult(hits=hits, timings=timings, query=query)

    def _search_stats(self) -> dict[str, Any]:
        """The saved FAISS index's stats (kind, recall, latency) without loading it; ``stale`` when the store
        has moved on since (the next query catches it up)."""
        from .index import META_FILE

        if self._index is not None:
            stats, version = dict(self._index.stats), self._index.store_version
        else:
            try:
                meta = json.loads((self.path / META_FILE).read_text())
                stats, version = dict(meta.get("stats", {})), meta.get("store_version")
            except (OSError, ValueError):
                return {"kind": "none", "stale": True}
        stats["stale"] = version != self.store.version
        return stats

    def info(self) -> dict[str, Any]:
        fp = self.store.fingerprint
        return {"index": str(self.path), "size": len(self.store), "store_version": self.store.version,
                "dim": self.store.dim, "model": self.model_ref, "failed": len(self.store.failures()),
                "removed": len(self.store.removed()), "search": self._search_stats(),
                "fingerprint": fp}
