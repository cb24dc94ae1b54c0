"""The public entry: :class:`MotiveIndex`. The CLI and the HTTP service only call this.

    idx, report = MotiveIndex.build("train/manifest.csv", model="models/tiny-ft", index="runs/idx")
    result = MotiveIndex.open("runs/idx").query("generated.mp4", prompt="a red square", k=10)
    for hit in result.hits: print(hit.rank, hit.clip_id, hit.score)       # influence
    for hit in result.similar: print(hit.rank, hit.clip_id, hit.score)    # motion similarity (not influence)

An index directory holds two channels, each a LanceDB store with its derived FAISS index: the influence
channel (projected gradients) at its root, and the motion-feature channel (``features.py`` descriptors) in its
``motion/`` folder. Both hold the same clips: a build or add writes a clip's descriptor first and its influence
vector last (the influence store says which clips are done), and a removal removes from both.

A build or add plans which clips each channel lacks and runs the per-clip step (decode, mask, descriptor,
then the model's gradient and projection) here or on Ray, writing finished clips in order (``pipeline.py``,
``ray_executor.py``).

Writes (build, add, remove, purge) hold the index's write lock (``lock.py``) for their whole run: a second
writer waits, naming the holder, or fails at once with ``wait=False``. Each write session starts by repairing
what an interrupted or racing writer may have left (:meth:`ClipStore.repair`). A removal writes one tombstone
per clip, shared by both channels, before anything is deleted; every search filters against the tombstones.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import EstimatorConfig, FeatureConfig, MaskConfig, ProjectionConfig
from .errors import (FingerprintMismatchError, IndexBusyError, IndexNotFoundError, IndexStateError,
                     MotiveIndexError)
from .settings import SETTINGS_FILE, read_settings as _read_settings, save_record as _save_record
from .settings import write_settings as _write_settings
from .types import Hit

log = logging.getLogger(__name__)

FEATURES_DIR = "motion"  # the motion-feature channel's store and FAISS index, inside the index directory
Progress = Callable[[int, int, str], None]
EXECUTORS = ("local", "ray")  # where a build's per-clip work runs (ray_executor.py)


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
    """``hits``: influence (gradient cosines); ``similar``: motion similarity (descriptor cosines, not
    influence; empty when the index has no motion channel or none was asked for); ``combined``: the motion-
    similar candidates ordered by influence (only when asked for)."""

    hits: list[Hit]
    timings: dict[str, float]
    query: dict[str, Any]
    similar: list[Hit] = field(default_factory=list)
    combined: list[Hit] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "hits": [h.to_dict() for h in self.hits],
                "similar": [h.to_dict() for h in self.similar], "combined": [h.to_dict() for h in self.combined],
                "timings": self.timings}


def _model_ref(model: str | Path) -> str:
    return "tiny" if str(model) == "tiny" else str(Path(model).expanduser().resolve())


def compute_mask(video: str | Path, mask: MaskConfig, spec=None, start_sec=None, end_sec=None):
    """The motion mask of a video as the build sees it: (standardized frames (T,H,W,3) uint8, MotionMask)."""
    from .config import VideoSpec
    from .motion import motion_mask
    from .video import load_video

    std = load_video(str(video), spec or VideoSpec(), start_sec=start_sec, end_sec=end_sec,
                     flow_steps=mask.source_steps)
    return std.frames, motion_mask(std.frames, mask, between=std.between)


class MotiveIndex:
    """An attribution index on disk: a LanceDB store (the truth), a FAISS index (derived), and its model."""

    def __init__(self, store, device: str = "cpu", model: str | None = None):
        #: where the index lives (a folder or an ``s3://`` prefix: ``location.py``)
        self.location = store.location
        #: its local folder: the index folder itself, or the local cache of an index on object storage
        self.path = store.path
        self.store = store
        self.device = device
        settings = _read_settings(self.location, model_given=model is not None)
        self.model_ref = model or settings.get("model")
        # the weights record vouches for the model the settings name (not for another one given with --model)
        self._settings_model = settings.get("model")
        self.weights_record = settings.get("weights_record") if self.model_ref == self._settings_model else None
        self.flow_model = settings.get("flow_model", "")
        self.checkpointing = bool(settings.get("checkpointing", False))
        from .store import ClipStore

        fdir = self.location.child(FEATURES_DIR)
        self.features_store = None
        try:  # the motion channel shares the influence store's tombstones and lock
            self.features_store = ClipStore.open(fdir, tombstones=store.tombstones, lock=store.write_lock)
        except IndexNotFoundError:  # an index without one
            pass
        if self.features_store is not None:
            legacy = self.features_store.legacy_tombstones()  # its own, from before they were shared
            if legacy is not None:
                store.tombstones.include(legacy)
        self._engine = None
        self._featurizer = None
        self._indexes: dict[str, Any] = {}
        self._nulls: dict[str, Any] = {}  # channel -> calibration.NullDistribution of its index's store version
        self._index_lock = threading.Lock()  # one catch-up at a time; searches use the index they got
        self._engine_lock = threading.Lock()

    # ----- building ------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, manifest: str | Path | list, model: str | Path, index: str | Path, *,
              mask: str | MaskConfig = "flow", motion: str | None = None,
              dim: int = 512, projection_seed: int = 0, timestep: int = 751, noise_seed: int = 0,
              samples: int = 1, params: tuple[str, ...] = (), precision: str = "fp32", loss: str = "mse",
              features: bool | FeatureConfig = True, checkpointing: bool = False, device: str = "cpu",
              batch: int = 1, progress: Progress | None = None, wait: bool = True, executor: str = "local",
              address: str | None = None, workers: int = 1, gpus_per_worker: float = 0.0,
              storage_options: dict | None = None) -> tuple["MotiveIndex", BuildReport]:
        """Embed every clip of ``manifest`` not yet in the store at ``index`` (creating it if needed).

        ``mask``: ``'flow'``, ``'none'`` or a full :class:`MaskConfig`; ``motion``: ``'object'`` or ``'all'``
        (with a mask kind; defaults to MaskConfig's). ``samples``, ``params``, ``precision``, ``loss``: see
        :class:`EstimatorConfig`; ``checkpointing`` trades time for memory and is kept for later adds and
        queries (it does not change the vectors). ``features``: also keep the motion-feature channel (``True``:
        the default :class:`FeatureConfig`; ``False``: none). Resumable: clips already stored are skipped, finished
        clips are written every ``batch`` clips (default 1: a crash, even kill -9, loses no finished clip), and
        a clip that fails (bad video, NaN gradient) is recorded with its reason while the build goes on.
        Holds the index's write lock throughout (``wait=False``: :class:`IndexBusyError` at once if another
        writer has it; else it waits, logging who holds it). ``executor``, ``address``, ``workers``,
        ``gpus_per_worker``: where the per-clip work runs, as for :meth:`add`. ``index`` may be a folder or a
        prefix on object storage (``s3://bucket/prefix``), reached with ``storage_options`` (LanceDB's keys:
        ``aws_endpoint``, ``aws_region``, ``allow_http``, ...) or, by default, the environment's settings.
        """
        from .location import Location
        from .lock import write_lock
        from .manifest import read_manifest

        if executor not in EXECUTORS:
            raise ValueError(f"executor={executor!r} is invalid: one of {', '.join(EXECUTORS)}")
        t_start = time.perf_counter()
        clips = manifest if isinstance(manifest, list) else read_manifest(manifest)  # bad manifest: fail first
        location = Location.of(index, storage_options)
        with write_lock(location).hold("build", wait=wait):
            return cls._build_locked(clips, model, location, t_start, mask=mask, motion=motion, dim=dim,
                                     projection_seed=projection_seed, timestep=timestep, noise_seed=noise_seed,
                                     samples=samples, params=params, precision=precision, loss=loss,
                                     features=features, checkpointing=checkpointing, device=device, batch=batch,
                                     progress=progress, run={"executor": executor, "address": address,
                                                             "workers": workers, "gpus_per_worker": gpus_per_worker})

    @classmethod
    def _build_locked(cls, clips, model, location, t_start: float, *, mask, motion, dim, projection_seed,
                      timestep, noise_seed, samples, params, precision, loss, features, checkpointing, device,
                      batch, progress, run):
        from .backbones import load_backbone
        from .gradients import GradientEngine
        from .store import ClipStore

        model_ref = _model_ref(model)
        settings = _read_settings(location, model_given=True)   # a resumed build: its record, if the same model
        backbone = load_backbone(model, device=device, record=(settings.get("weights_record")
                                                               if settings.get("model") == model_ref else None))
        if not isinstance(mask, MaskConfig):
            mask = MaskConfig(kind=mask, **({"motion": motion} if motion else {}))
        elif motion and motion != mask.motion:
            raise ValueError(f"motion={motion!r} contradicts the MaskConfig's motion={mask.motion!r}")
        estimator = EstimatorConfig(timestep=timestep, noise_seed=noise_seed, samples=samples,
                                    params=tuple(params), precision=precision, loss=loss)
        engine = GradientEngine(backbone, mask, estimator, ProjectionConfig(dim=dim, seed=projection_seed),
                                checkpointing=checkpointing)
        fp = engine.fingerprint()
        store = ClipStore.create(location, fp, dim)   # refuses another fingerprint
        if features is not False:
            from .features import MotionFeaturizer

            fz = MotionFeaturizer(features if isinstance(features, FeatureConfig) else FeatureConfig(), mask,
                                  backbone.spec, mask_fingerprint=fp["mask"])
            ClipStore.create(location.child(FEATURES_DIR), fz.fingerprint(), fz.dim, tombstones=store.tombstones,
                             lock=store.write_lock)
        _write_settings(location, model_ref, mask, checkpointing, record=backbone.weights_record())
        self = cls(store, device=device)
        self._engine = engine
        if self.features_store is not None:
            self._featurizer = self._make_featurizer()
        report = self.add(clips, batch=batch, progress=progress, **run)  # the lock is ours already: add nests
        report.seconds = time.perf_counter() - t_start  # model loading included
        return self, report

    def _make_featurizer(self):
        """The motion-feature channel's featurizer (no model needed), checked against its store's fingerprint."""
        from .config import VideoSpec
        from .features import MotionFeaturizer
        from .store import check_fingerprint

        fp, ffp = self.store.fingerprint, self.features_store.fingerprint
        fz = MotionFeaturizer(FeatureConfig.from_dict(ffp["features"]), self.mask_config(),
                              VideoSpec.from_dict(fp["video"]), mask_fingerprint=fp["mask"])
        check_fingerprint(ffp, fz.fingerprint())
        return fz

    def mask_config(self) -> MaskConfig:
        """The index's mask settings; a learned flow model, kept in the fingerprint by its hash, by its path."""
        mask = dict(self.store.fingerprint["mask"])
        if mask.get("flow") == "learned":  # the path is in settings.json
            mask["flow_model"] = self.flow_model
        return MaskConfig.from_dict(mask)

    def read_step(self, device: str = "cpu"):
        """The CPU half of the index's per-clip step (``pipeline.ReadStep``: decode, mask, motion descriptor),
        built from its fingerprint and settings alone, with no model: what a CPU worker runs."""
        from .config import VideoSpec
        from .gradients import ClipReader
        from .pipeline import ReadStep

        reader = ClipReader(VideoSpec.from_dict(self.store.fingerprint["video"]), self.mask_config(), device=device)
        return ReadStep(reader, self._make_featurizer() if self.features_store is not None else None)

    def _embed_into_store(self, clips, batch: int, progress: Progress | None, executor: str = "local",
                          **ray_options) -> BuildReport:
        """Embed the clips the channels lack and write them (``pipeline.py``: plan, per-clip step, writer),
        here or on Ray (the same steps; this process writes either way)."""
        from .pipeline import ClipEmbedder, StoreWriter, plan, run_local

        channels = self.channels
        todo = plan(clips, channels)
        writer = StoreWriter(channels, batch=batch, compact=self._compact)
        if executor == "ray":
            from .ray_executor import run_ray

            model = self.model_ref if self.model_ref != self._settings_model else None  # an override, if any
            run_ray(self.location, todo.work, writer, device=self.device, model=model, progress=progress, **ray_options)
        else:
            run_local(ClipEmbedder(self._ensure_engine(), self._featurizer), todo.work, writer, progress)
        w = writer.report
        if w.writes >= 8:
            self._compact()
        return BuildReport(added=w.added, skipped=todo.skipped + w.skipped, removed=todo.removed,
                           failed=dict(w.failed), stage_seconds=dict(w.stage_seconds))

    def _compact(self) -> None:
        for ch in self.channels:
            ch.store.compact()

    @property
    def channels(self) -> list:
        """The index's channels (``pipeline.Channel``: name, store, hit label): influence, then the motion
        channel if the index has one. Both share the tombstones and the write lock."""
        from .pipeline import INFLUENCE, MOTION, Channel

        out = [Channel(INFLUENCE, self.store, "influence")]
        if self.features_store is not None:
            out.append(Channel(MOTION, self.features_store, "similarity"))
        return out

    def _store_of(self, channel: str):
        for ch in self.channels:
            if ch.name == channel:
                return ch.store
        raise IndexStateError(f"index {str(self.location)!r} has no {channel!r} channel")


    # ----- opening and querying -------------------------------------------------------------------------------
    @classmethod
    def open(cls, index: str | Path, device: str = "cpu", model: str | Path | None = None,
             storage_options: dict | None = None) -> "MotiveIndex":
        """Open an index: a folder, or a prefix on object storage (``s3://bucket/prefix``, with
        ``storage_options`` as for :meth:`build`). ``model`` overrides the model recorded at build time (it must
        have the same identity)."""
        from .location import Location
        from .store import ClipStore

        return cls(ClipStore.open(Location.of(index, storage_options)), device=device, model=_model_ref(model) if model is not None else None)

    def _ensure_index(self, channel: str = "influence"):
        """The channel's FAISS index, caught up with its store's newest version (never ahead of it).

        When it still holds removed clips (a removal interrupted before its delete, or an insert that raced
        it: searches filter them out all the same), their rows are deleted now if the write lock is free, and
        the index caught up again; if another writer holds the lock, that writer's own repair deletes them."""
        store = self._store_of(channel)
        index = self._caught_up(channel, store)
        if index.count_held(store.tombstones.ids()):
            try:
                with self.store.write_lock.hold("repair", wait=False):
                    self._repair()
            except IndexBusyError:
                log.info("index %s: removed clips still stored; the writer holding the lock deletes them",
                         self.location)
            except OSError as e:  # a read-only index: searches filter them out all the same
                log.info("index %s: removed clips still stored, and no repair possible here (%s)", self.location, e)
            else:
                index = self._caught_up(channel, store)
        return index

    def _caught_up(self, channel: str, store):
        from .index import open_index

        with self._index_lock:
            current = self._indexes.get(channel)
            if current is None or current.store_version != store.version:
                self._indexes[channel] = open_index(store, store.path, current=current, device=self.device)
                self._nulls[channel] = self._current_null(channel, self._indexes[channel], store)
            return self._indexes[channel]

    def _current_null(self, channel: str, index, store):
        """The channel's null distribution (``calibration.py``) for the index's store version: the saved one if
        it was measured at that version, else measured again now from a sample of stored vectors and saved."""
        from .calibration import load_null, measure_null, save_null

        null = self._nulls.get(channel) or load_null(store.path)
        if null is not None and null.store_version == index.store_version:
            return null
        null = measure_null(index.ids, store.get_vectors, index.store_version)
        if null is not None:
            save_null(store.path, null)
            log.info("index %s: null distribution measured on %d clips (%d pairs) in %.2f s", store.location,
                     null.sample, null.pairs, null.seconds)
        return null

    def _calibrate(self, hits: list[Hit], channel: str = "influence") -> list[Hit]:
        """Each hit's percentile against its channel's null (None with under two clips stored)."""
        null = self._nulls.get(channel)
        if null is not None:
            for h in hits:
                h.percentile = round(null.percentile(h.score), 2)
        return hits

    def _ensure_engine(self):
        if self._engine is not None:
            return self._engine
        with self._engine_lock:  # many threads may ask at once: the model is loaded once
            if self._engine is None:
                self._load_engine()
            return self._engine

    def _load_engine(self):
        from .backbones import load_backbone
        from .gradients import GradientEngine
        from .store import check_fingerprint

        if not self.model_ref:
            raise IndexStateError(f"index {str(self.location)!r} records no model ({SETTINGS_FILE} is missing or names "
                                  f"none); pass model=... (--model MODEL_DIR)")
        fp = self.store.fingerprint
        # with the build's weights record the weights hash is not recomputed while the model's files are unchanged
        backbone = load_backbone(self.model_ref, device=self.device, record=self.weights_record)
        engine = GradientEngine(backbone, self.mask_config(), EstimatorConfig.from_dict(fp["estimator"]),
                                ProjectionConfig.from_dict(fp["projection"]), checkpointing=self.checkpointing)
        check_fingerprint(fp, engine.fingerprint())  # e.g. the model directory changed since the build
        if backbone.record_status != "matched" and self.model_ref == self._settings_model:
            # hashed in full and it is the index's model: keep the fresh record (files touched, a library
            # upgraded, or an index from before records), so the next load does not hash again
            self.weights_record = backbone.weights_record()
            _save_record(self.location, self.model_ref, self.weights_record)
        if self.features_store is not None:
            self._featurizer = self._make_featurizer()
        self._engine = engine
        return engine

    def embedder(self):
        """The index's per-clip step (``pipeline.ClipEmbedder``), its engine rebuilt from the index's fingerprint
        and settings alone: what a worker on another machine runs for this index's build or add."""
        from .pipeline import ClipEmbedder

        return ClipEmbedder(self._ensure_engine(), self._featurizer)

    def warm(self) -> float:
        """Load the model and bring every channel's FAISS index (and its null) up to date now, rather than at the
        first query: what a serving process does at start. Returns the seconds it took."""
        t0 = time.perf_counter()
        self._ensure_engine()
        for ch in self.channels:
            self._ensure_index(ch.name)
        return time.perf_counter() - t0

    def verify_model(self) -> dict[str, Any]:
        """Rehash the model's weights in full (ignoring the weights record) and compare its identity with the
        index's fingerprint: ``{"match": bool, "differs": [identity fields], "seconds": float}``. When it
        matches, the record is refreshed (the files are now vouched for by a full hash)."""
        from .backbones import load_backbone

        if not self.model_ref:
            raise IndexStateError(f"index {str(self.location)!r} records no model ({SETTINGS_FILE} is missing or names "
                                  f"none); pass model=... (--model MODEL_DIR)")
        t0 = time.perf_counter()
        backbone = load_backbone(self.model_ref, device=self.device, verify=True)
        ident, stored = backbone.identity(), self.store.fingerprint["model"]
        differs = sorted(k for k in set(ident) | set(stored) if ident.get(k) != stored.get(k))
        if not differs and self.model_ref == self._settings_model:
            self.weights_record = backbone.weights_record()
            _save_record(self.location, self.model_ref, self.weights_record)
        return {"match": not differs, "differs": differs, "seconds": time.perf_counter() - t0}

    def _model_files(self) -> str:
        """Whether the model's files are as the weights record saw them (stat calls and header reads only)."""
        from .summary import model_files_text

        return model_files_text(self.model_ref, self.weights_record)

    @contextmanager
    def _writing(self, command: str, wait: bool = True):
        """Hold the index's write lock (nested holds in one thread are free), after repairing what an
        interrupted or racing writer left: rows of removed clips, second copies."""
        with self.store.write_lock.hold(command, wait=wait):
            self._repair()
            yield

    def _repair(self) -> None:
        for ch in self.channels:
            fixed = ch.store.repair()
            if any(fixed.values()):
                log.warning("index %s (%s channel): deleted %d row(s) of removed clips and %d duplicate "
                            "row(s) left by an interrupted or racing writer", self.location, ch.name,
                            fixed["removed"], fixed["duplicates"])

    def add(self, manifest: str | Path | list, batch: int = 1, progress: Progress | None = None,
            wait: bool = True, executor: str = "local", address: str | None = None, workers: int = 1,
            gpus_per_worker: float = 0.0) -> BuildReport:
        """Embed the clips of ``manifest`` not yet stored, under this index's own settings and model.

        Idempotent; removed clips are not added back; new clips are searchable when it returns. Holds the
        write lock throughout (``wait``: as for :meth:`build`). The report adds up: ``added + skipped + removed
        + len(failed)`` is the number of manifest rows. ``executor``: ``local`` (this process) or ``ray``
        (``ray_executor.py``: ``workers`` model actors, ``gpus_per_worker`` GPUs each, on the cluster at
        ``address`` or a local one); the vectors are the same."""
        from .manifest import read_manifest

        if executor not in EXECUTORS:
            raise ValueError(f"executor={executor!r} is invalid: one of {', '.join(EXECUTORS)}")
        t0 = time.perf_counter()
        clips = manifest if isinstance(manifest, list) else read_manifest(manifest)
        with self._writing("add", wait):
            if executor == "local":
                self._ensure_engine()
            report = self._embed_into_store(clips, batch, progress, executor=executor, address=address,
                                            workers=workers, gpus_per_worker=gpus_per_worker)
        for ch in self.channels:
            self._ensure_index(ch.name)
        report.seconds = time.perf_counter() - t0
        report.size = len(self.store)
        self._keep_summary()
        return report

    def remove(self, clip_ids, reason: str = "", wait: bool = True) -> int:
        """Remove clips; once this returns they are in no result of this or any other process. Returns how many
        were stored. A later add or build never stores them again; :meth:`purge` erases old versions too.

        One tombstone per clip is written first, shared by both channels: from that moment every search
        (in any process) filters the clips out, even while another writer holds the lock. Then their rows are
        deleted from both channels under the write lock (``wait=False``: :class:`IndexBusyError` if another
        writer holds it; the clips stay hidden, and the next write deletes their rows)."""
        ids = list(dict.fromkeys(clip_ids))
        bad = [c for c in ids if not isinstance(c, str) or not c]
        if bad:
            raise ValueError(f"clip_id={bad[0]!r} is invalid: a non-empty string")
        if not ids:
            return 0
        self.store.tombstones.add(ids, reason)
        try:
            with self.store.write_lock.hold("remove", wait=wait):
                for ch in self.channels[1:]:  # the influence store last: it says what is stored
                    ch.store.delete(ids)
                n = self.store.delete(ids)
                self._repair()  # and whatever an earlier interrupted removal left
        except IndexBusyError as e:
            raise IndexBusyError(e.path, f"{e.reason}. The {len(ids)} clip(s) are already hidden from every "
                                         f"result (tombstones written); their rows are deleted by the next write"
                                 ) from None
        for ch in self.channels:
            self._ensure_index(ch.name)
        self._keep_summary()
        return n

    def purge(self, wait: bool = True) -> dict[str, int]:
        """Delete old table versions (and with them removed clips' data) from disk, in both channels."""
        with self._writing("purge", wait):
            out = self.store.purge()
            for ch in self.channels[1:]:
                out.update({f"{ch.name}/{k}": v for k, v in ch.store.purge().items()})
        self._keep_summary()
        return out

    def embed(self, video: str | Path, prompt: str = "", start_sec=None, end_sec=None):
        """The query vector of a video under this index's fingerprint: (vector, PreparedClip)."""
        return self._ensure_engine().embed(str(video), prompt, start_sec, end_sec, name=str(video))

    @property
    def fingerprint_id(self) -> str:
        """The id of this index's fingerprint: a query vector made under another id is not comparable."""
        from .store import fingerprint_id

        return fingerprint_id(self.store.fingerprint)

    @contextmanager
    def _reading(self):
        """One lookup of each table's newest version for a block of reads (a query's), not one per read: on
        object storage each is a request or two (``ClipStore.reading``)."""
        with ExitStack() as stack:
            stack.enter_context(self.store.tombstones.reading())
            for ch in self.channels:
                stack.enter_context(ch.store.reading())
            yield

    def search(self, vector: np.ndarray, k: int = 10, negative: bool = False) -> list[Hit]:
        from .attribution import rank

        with self._reading():
            return self._calibrate(rank(self._ensure_index(), self.store, vector, k=k, negative=negative))

    def lookup(self, vector, fingerprint: str, k: int = 10, negative: bool = False) -> list[Hit]:
        """:meth:`search` for a vector embedded elsewhere (another process or machine, :meth:`embed`): it must
        carry this index's :attr:`fingerprint_id` and dimension (:class:`FingerprintMismatchError` naming the
        field otherwise); it is unit-normalized here."""
        if fingerprint != self.fingerprint_id:
            raise FingerprintMismatchError("fingerprint", self.fingerprint_id, fingerprint)
        try:
            v = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("vector is invalid: a list of numbers") from None
        if v.ndim != 1:
            raise ValueError(f"vector is invalid: a flat list of numbers, got shape {list(v.shape)}")
        if v.shape[0] != self.store.dim:
            raise FingerprintMismatchError("vector.dim", self.store.dim, int(v.shape[0]))
        norm = float(np.linalg.norm(v))
        if not np.isfinite(v).all() or norm == 0.0:
            raise ValueError("vector is invalid: finite numbers, not all zero")
        return self.search((v / norm).astype(np.float32), k=k, negative=negative)

    def clip(self, clip_id: str) -> dict[str, Any] | None:
        """A stored clip's row (clip_id, path, caption, metadata), or None if it is not stored or was removed."""
        with self._reading():
            if clip_id in self.store.tombstones.ids():
                return None
            return self.store.rows([clip_id]).get(clip_id)

    def query(self, video: str | Path, prompt: str = "", k: int = 10, negative: bool = False,
              start_sec: float | None = None, end_sec: float | None = None, motion: str | None = None,
              similar: int | None = None, combined: bool = False) -> QueryResult:
        """The training clips that most influenced (``negative``: most opposed) the motion of ``video``.

        Beside them, from the motion-feature channel (if the index has one): the ``similar`` clips that move
        most like it (default ``k``; 0 for none), labelled ``similarity`` and never mixed into the influence
        hits; and with ``combined``, the ``3k`` most motion-similar clips re-ranked by influence, top ``k``.
        Queries are made under the index's fingerprint; ``motion``, if given, must be the index's."""
        stored = self.store.fingerprint["mask"].get("motion")
        if motion is not None and motion != stored:
            raise FingerprintMismatchError("mask.motion", stored, motion)
        if k < 1:
            raise ValueError(f"k={k} is invalid: need at least 1")
        n_similar = k if similar is None else int(similar)
        if n_similar < 0:
            raise ValueError(f"similar={similar} is invalid: 0 (none) or more")
        if combined and self.features_store is None:
            raise IndexStateError(f"index {str(self.location)!r} has no motion-feature channel, so no combined "
                                   f"ranking; add one with `motive-index build` on the same manifest and settings")
        t0 = time.perf_counter()
        engine = self._ensure_engine()
        t1 = time.perf_counter()
        read = engine.read(str(video), start_sec, end_sec)
        vec, prep = engine.embed(str(video), prompt, start_sec, end_sec, name=str(video), read=read)
        t2 = time.perf_counter()
        with self._reading():  # one consistent look at the stores for all of the query's searches
            hits = self.search(vec, k=k, negative=negative)
            t3 = time.perf_counter()
            timings = {"load_model": t1 - t0, **prep.timings, "search": t3 - t2}
            static = bool(prep.metadata.get("static", False))
            warnings = list(prep.metadata.get("warnings", []))  # e.g. a partly decodable file
            if static:
                warnings.append("the query shows no motion the mask can see (static): its influence uses a uniform "
                                "mask (the ordinary loss), and motion similarity can only match other still clips")
            similar_hits: list[Hit] = []
            combined_hits: list[Hit] = []
            if self._featurizer is not None and (n_similar or combined):
                from .attribution import rank, rerank_by_influence

                desc = self._featurizer.describe(read.video.frames, read.mask)
                t4 = time.perf_counter()
                findex = self._ensure_index("motion")

                def similar_to(n: int) -> list[Hit]:
                    found = self._calibrate(rank(findex, self.features_store, desc, k=n, kind="similarity",
                                                 rows_from=self.store), "motion")
                    # a still query's descriptor is orthogonal to every moving clip's: score 0 is no match at all
                    return [h for h in found if h.score > 1e-6] if static else found

                if n_similar:
                    similar_hits = similar_to(n_similar)
                if combined:
                    cands = similar_to(3 * k)
                    stored = self.store.get_vectors([h.clip_id for h in cands])
                    infl = {cid: float(v @ vec) for cid, v in stored.items()}
                    by_id = {h.clip_id: h for h in cands}
                    for cid, score, sim in rerank_by_influence([(h.clip_id, h.score) for h in cands], infl, k):
                        h = by_id[cid]
                        combined_hits.append(Hit(clip_id=cid, score=score, rank=len(combined_hits) + 1, path=h.path,
                                                 caption=h.caption, metadata=h.metadata, kind="combined",
                                                 similarity=sim))
                    self._calibrate(combined_hits)  # their score is the influence
                timings.update(features=t4 - t3, similarity_search=time.perf_counter() - t4)
            timings["total"] = time.perf_counter() - t0
            query = {"video": str(video), "prompt": prompt, "k": k, "negative": negative, "static": static,
                     "warnings": warnings}
            return QueryResult(hits=hits, timings=timings, query=query, similar=similar_hits, combined=combined_hits)


    def curate(self, queries: str | Path | list, keep: float = 0.1, percentile: float = 90.0, by: str = "influence",
               progress: Progress | None = None) -> dict[str, Any]:
        """Which stored clips to fine-tune on for the motions of ``queries`` (a manifest or a list of Clips).

        Every query is scored against every stored clip (exactly, not through the approximate index) on the
        ``by`` channel (``influence`` or ``similarity``); each votes for the clips above its own ``percentile``
        and the ``keep`` fraction with the most votes is kept (:func:`attribution.curate`). A query that fails
        (bad video) is reported and left out. Returns ``{"kept": [{clip_id, votes, score, path, caption}],
        "queries": n used, "failed": {query: reason}, ...}``.
        """
        from .attribution import curate
        from .manifest import read_manifest

        if by not in ("influence", "similarity"):
            raise ValueError(f"by={by!r} is invalid: 'influence' or 'similarity'")
        if by == "similarity" and self.features_store is None:
            raise IndexStateError(f"index {str(self.location)!r} has no motion-feature channel to curate by")
        clips = queries if isinstance(queries, list) else read_manifest(queries)
        engine = self._ensure_engine()
        store = self.store if by == "influence" else self.features_store
        ids, stored = store.vectors()
        if not ids:
            raise IndexStateError(f"index {str(self.location)!r} is empty: nothing to curate")
        rows, failed = [], {}
        for i, q in enumerate(clips):
            try:
                read = engine.read(q.path, q.start_sec, q.end_sec)
                if by == "influence":
                    v, _ = engine.embed(q.path, q.caption, q.start_sec, q.end_sec, name=q.clip_id, read=read)
                else:
                    v = self._featurizer.describe(read.video.frames, read.mask)
            except MotiveIndexError as e:
                failed[q.clip_id] = str(e)
            else:
                rows.append(stored @ v)
            if progress:
                progress(i + 1, len(clips), q.clip_id)
        if not rows:
            raise IndexStateError(f"no usable query to curate with: all {len(failed)} failed "
                                   f"({'; '.join(f'{k}: {v}' for k, v in list(failed.items())[:3])})")
        kept = curate(np.stack(rows), ids, keep=keep, percentile=percentile)
        meta = self.store.rows([cid for cid, _, _ in kept])
        out = [{"clip_id": cid, "votes": votes, "score": score, "path": meta.get(cid, {}).get("path", ""),
                "caption": meta.get(cid, {}).get("caption", "")} for cid, votes, score in kept]
        return {"kept": out, "queries": len(rows), "failed": failed, "by": by, "keep": keep,
                "percentile": percentile, "size": len(ids)}

    def _search_stats(self) -> dict[str, Any]:
        """The FAISS index's stats (kind, recall, latency): the one in memory, else the saved one without loading
        it; ``stale`` when the store has moved on since (the next query catches it up)."""
        from .summary import saved_search_stats

        current = self._indexes.get("influence")
        if current is None:
            return saved_search_stats(self.path, self.store.version)
        return {**current.stats, "stale": current.store_version != self.store.version}

    def calibration(self) -> dict[str, Any]:
        """Each channel's null distribution as last measured (``calibration.py``), without measuring it:
        ``{channel: {store_version, size, sample, pairs, quantiles: {p1 … p99.9}, stale} | None}``. ``stale``:
        the store has moved on since (the next search measures it again)."""
        from .calibration import load_null

        out: dict[str, Any] = {}
        for ch in self.channels:
            channel, store = ch.name, ch.store
            null = self._nulls.get(channel) or load_null(store.path)
            out[channel] = None if null is None else {**null.summary(),
                                                      "stale": null.store_version != store.version}
        return out

    def status(self) -> dict[str, Any]:
        """What a serving process reports, cheaply (no table scans, no hashing): size, store version,
        fingerprint id, model, the search index in memory (kind, recall, ``stale``: the store moved on since it
        was caught up, e.g. another process added clips) and the calibration."""
        return {"index": str(self.location), "size": len(self.store), "store_version": self.store.version,
                "fingerprint": self.fingerprint_id, "dim": self.store.dim, "model": self.model_ref,
                "removed": len(self.store.tombstones), "search": self._search_stats(),
                "motion_channel": (None if self.features_store is None else
                                   {"size": len(self.features_store), "dim": self.features_store.dim}),
                "calibration": self.calibration()}

    def info(self, verify: bool = False) -> dict[str, Any]:
        """What the index holds. ``verify``: also rehash the model's weights in full and compare them with the
        fingerprint (:meth:`verify_model`; seconds to minutes for a real model)."""
        from .summary import table_versions, write_summary

        versions = table_versions(self.location)  # before the counts: a write landing meanwhile makes it stale
        fp = self.store.fingerprint
        extra = {"verify": self.verify_model()} if verify else {}
        out = {"index": str(self.location), "size": len(self.store), "store_version": self.store.version,
                "fingerprint_id": self.fingerprint_id,
                "dim": self.store.dim, "model": self.model_ref, "model_files": self._model_files(), **extra,
                "failed": len(self.store.failures()),
                "removed": len(self.store.removed()), "search": self._search_stats(),
                "calibration": self.calibration(),
                "motion_channel": ({"size": len(self.features_store), "dim": self.features_store.dim,
                                    "fingerprint": self.features_store.fingerprint}
                                   if self.features_store is not None else None),
                "fingerprint": fp}
        if self.model_ref == self._settings_model:  # not for a model given to this process only
            write_summary(self.location, versions, out)  # what a later `info` answers without opening the store
        return out

    def _keep_summary(self) -> None:
        """After a write: leave the summary a later cold ``info`` answers from (never fails the write)."""
        try:
            self.info()
        except Exception as e:  # noqa: BLE001 - the summary is an optimization; info recomputes without it
            log.info("index %s: no summary kept (%s)", self.location, e)
