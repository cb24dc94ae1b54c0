"""The build on Ray: the same pipeline steps as the local executor (``pipeline.py``), spread over a cluster.

    MotiveIndex.build(manifest, model, index, engine="ray", address=None, workers=1, gpus_per_worker=0)
    motive-index build MANIFEST --model M --index DIR --engine ray [--address ADDR] [--workers N] [--gpus-per-worker G]

The planned work (the manifest's clips the index lacks, as the local build plans it) becomes a Ray Dataset
with two map stages: :func:`_read`, the CPU half of each clip (decode, flow mask, motion descriptor:
``ReadStep``, no model), and :class:`_Embed`, the model's half on a pool of actors (``workers`` of them, each
loading the index's model once from the index's fingerprint and settings, on a GPU each when
``gpus_per_worker`` is set). Measured (``benchmarks/distributed.py``): Ray Data fuses the two stages into the
actors (``ActorPoolMapOperator[Map(_read)->Map(_Embed)]``), so each actor decodes a clip and then runs the
model on it, without the local build's overlap of the two; on 2 cores that also keeps a CPU stage from being
starved by the actors.
the driver, which holds the index's write lock, applies finished records to the LanceDB stores in order and
in batches with the same :class:`~pipeline.StoreWriter` as a local build (descriptor before influence vector,
failures recorded, removed clips refused). A killed actor is restarted by Ray and its clip retried; a killed
driver is resumed by running the build again (stored clips are skipped, none is written twice).

Ray is the ``ray`` extra (``pip install 'motive-index[ray]'``), imported only here and only when asked for.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

from .location import Location
from .pipeline import ClipRecord, Progress, StoreWriter, Work

log = logging.getLogger(__name__)

_STEPS: dict[str, object] = {}  # per worker process: index path -> its ReadStep (made once)


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the Dataset API is part of the extra
    except ImportError as e:
        raise ImportError("the Ray engine needs the ray extra: pip install 'motive-index[ray]'") from e
    return ray


def _read(row: dict, index: str, storage_options: dict | None = None) -> dict:
    """A Ray task: the CPU half of one clip (no model), its answer pickled for the next stage."""
    step = _STEPS.get(index)
    if step is None:
        from .api import MotiveIndex

        step = _STEPS[index] = MotiveIndex.open(index, storage_options=storage_options).read_step()
    work: Work = pickle.loads(row["work"])
    return {"i": row["i"], "work": row["work"], "read": pickle.dumps(step(work))}


class _Embed:
    """A Ray actor: the model's half of each clip, the model loaded once per actor."""

    def __init__(self, index: str, device: str = "cpu", model: str | None = None,
                 storage_options: dict | None = None):
        from .api import MotiveIndex

        self.step = MotiveIndex.open(index, device=device, model=model, storage_options=storage_options).embedder()

    def __call__(self, row: dict) -> dict:
        work: Work = pickle.loads(row["work"])
        rec: ClipRecord = self.step.finish(work, pickle.loads(row["read"]))
        return {"i": row["i"], "record": pickle.dumps(rec)}


def run_ray(index_dir, work: list[Work], writer: StoreWriter, *, address: str | None = None,
            workers: int = 1, gpus_per_worker: float = 0.0, device: str = "cpu", model: str | None = None,
            progress: Progress | None = None) -> None:
    """Embed ``work`` for the index at ``index_dir`` on Ray, applying the records with ``writer`` here, in the
    order of ``work``. ``model``: the model the workers load instead of the one the index records (same
    identity). Connects to ``address`` (a running cluster: ``auto``, ``ray://host:port``), or uses the
    Ray runtime already initialized in this process, or starts a local one for the run. ``index_dir``: a
    folder (every worker must see it at the same path: a shared file system), or a Location or URI on object
    storage (workers reach it with the storage options given here, or their own environment's)."""
    if workers < 1:
        raise ValueError(f"workers={workers} is invalid: at least 1")
    if gpus_per_worker < 0:
        raise ValueError(f"gpus_per_worker={gpus_per_worker} is invalid: 0 or more")
    if not work:
        return
    ray = _ray()
    own = not ray.is_initialized()
    if own:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    location = Location.of(index_dir)
    index = location.uri if location.remote else str(Path(location.uri).resolve())
    options = location.storage_options or None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # records come back in the order of the work
        ctx.enable_progress_bars = False
        items = [{"i": i, "work": pickle.dumps(w)} for i, w in enumerate(work)]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        # Ray Data's own defaults retry: a task whose worker died runs again, an actor that died is restarted
        # (its model loaded again) and its clip retried
        ds = ds.map(_read, fn_kwargs={"index": index, "storage_options": options}, num_cpus=1)
        ds = ds.map(_Embed, fn_constructor_kwargs={"index": index, "device": device, "model": model,
                                                   "storage_options": options}, concurrency=workers,
                    num_cpus=1, num_gpus=gpus_per_worker or None)
        done = 0
        for row in ds.iter_rows():
            rec: ClipRecord = pickle.loads(row["record"])
            writer.put(rec)
            done += 1
            if progress:
                progress(done, len(work), rec.clip.clip_id)
    finally:
        writer.flush()
        if own:
            ray.shutdown()
