"""The build on Ray against the local build (issue 14), and the cost of moving the build loop into pipeline.py,
as tables.

    python benchmarks/distributed.py [--quick] [--clips 24] [--pairs 5] [--store-pairs 2] [--timeout 300] [--json]

Everything is made in the run, under a temporary folder, seeded, nothing downloaded: ``--clips`` real mp4 clips
from ``synthetic.generate_dataset`` (seed 3, 17-30 frames, 96x128; the tests' dataset, longer), the tiny Wan
preset (``build_tiny(seed=0)`` + ``save_pretrained``, not fine-tuned: the costs do not depend on the weights),
and every build is ``MotiveIndex.build(manifest, model, <a fresh index>, dim=64)`` otherwise at its defaults
(flow mask, motion-feature channel, ``batch=1``; the old-against-new builds make the mask as the old code does:
the camera fitted to sparse tracks, no camera gate).

1. **Clips per second, local and on Ray.** In this process: the local build (``executor="local"``), then
   ``ray.init(num_cpus=2)`` once (its seconds reported apart, not in any row), the Ray build with 1 model worker
   and with 2 (``executor="ray", workers=N``: Ray uses the runtime this script started), then ``ray.shutdown()``.
   Each build runs in a thread given ``--timeout`` seconds: one that is not done by then is marked ``timed out``
   with the clips it had stored, and the Ray rows after it are not run (the stuck pipeline would hold the CPUs).
   Per row: wall seconds of the ``build`` call (model loading, the index's creation and, on Ray, the workers'
   start and their own model loading included), clips/s, Ray's overhead per clip over the local build
   (``(ray_s - local_s) / clips``), the time until the first clip was stored (``progress``' first call) and the
   steady cost per clip after it ((last - first) / (clips - 1)), and the largest absolute difference of the
   build's vectors against the local build's, influence and motion channels (bound 1e-5; over it, exit 1).
   The Ray Data execution plan of each build (from ``ray.data``'s log) and the torch threads a ``num_cpus=1``
   Ray task gets are printed too: they explain the rows (with Ray 2.60 the plan shows the CPU-task stage fused
   into the model actors' stage, so each actor reads and embeds its clips in turn; Ray sets
   ``OMP_NUM_THREADS`` to a task's CPUs, so an actor's torch runs on 1 thread where the local build's has 2).
2. **Before / after the refactor** (issue 14 part 1: "the per-clip build cost no higher"): the old code is the
   commit before the one whose subject starts with ``pipeline.py: the build loop out of api.py`` (found with
   ``git log``), checked out with ``git worktree add --detach`` in a temporary folder (removed at the end with
   ``git worktree remove --force``); the new code is this checkout's working tree. Each build runs in a fresh
   subprocess (this script with ``--child``, ``PYTHONPATH`` = the code's root; the child refuses to run unless
   ``motive_index.__file__`` is under it), alternating old, new, old, new, ... ``--pairs`` times, on the same
   manifest and model (a tiny model with the legacy Wan 2.1-layout VAE, which the old code reads the same way;
   it predates the trained tiny VAE's layout), each into a fresh index. Per build: the ``build`` call's wall seconds per clip (the
   interpreter's start not included, nor the first import of the libraries a build uses: torch, diffusers,
   transformers, LanceDB, FAISS... are imported before the clock starts, here and in part 1) and the steady
   cost per clip as above, and the process's CPU seconds per clip over the same call (all threads: steadier
   than wall time on a shared machine); then the medians and their ratios new / old, each pair's ratio (new /
   old s/clip: it cancels the machine's drift between pairs) and their median, and the largest difference of
   either's vectors against the first new-code run's (the refactor must not change them). Without git history (not a git
   checkout, or a shallow clone without that commit) ``--quick`` skips this part, saying why; a full run fails
   at once (exit 2).

3. **The store in a local folder or on an S3-compatible server** (issue 14 part 3): moto's S3 server
   (``python -m moto.server -H 127.0.0.1``, a separate process on a free loopback port: it shares this
   machine's cores with the build) with one bucket; this process's environment points LanceDB and obstore at it
   (``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP``, test credentials) and ``MOTIVE_INDEX_CACHE`` at a temporary folder.
   Alternating local, S3, local, S3, ... ``--store-pairs`` times, each a fresh ``MotiveIndex.build`` in this
   process (as part 1's rows). Per build: wall seconds, s/clip, steady s/clip, the ``store`` stage's seconds
   per clip (the LanceDB writes and the lock), then ``MotiveIndex.open`` seconds and the first query (the
   FAISS index and the null distributions are built then) and the median of 5 more queries of the same clip,
   and the largest difference of the vectors against part 1's local build. Then the medians and the ratio
   S3 / local of each. moto keeps objects in its process's memory: the numbers are the protocol's costs
   (requests, conditional writes, listing) on loopback, not a real network's latency.

The defaults (24 clips, 5 pairs, 2 store pairs) take about 6 minutes on a 2-core CPU; a build's wall time varies by 10-25 %
from one run to the next there, so read the before/after ratios against that spread. ``--quick``: 6 clips, the
Ray row with 1 worker only, one old/new pair (a smoke run for the test, about a minute; its numbers are too few
to read anything into). ``--json``: one JSON document on stdout instead of the tables
(everything else, Ray's log included, goes to stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
REFACTOR_SUBJECT = "pipeline.py: the build loop out of api.py"  # the commit that moved the loop (issue 14 part 1)
SEED, FRAMES, DIM = 3, (17, 30), 64
BOUND = 1e-5
PLAN_LOGGER = "ray.data._internal.execution.streaming_executor"  # logs "Execution plan of Dataset ...: <plan>"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ child process


PRELOAD = ("torch", "av", "cv2", "pyarrow", "pandas", "lancedb", "faiss", "transformers", "diffusers")


def preload() -> None:
    """Import the libraries a build imports on its way (the model's, LanceDB, FAISS...), so that no build's time
    includes a first import of them: the same for the old code, the new, and the rows of part 1."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    try:  # diffusers and transformers import their model classes lazily
        from diffusers import AutoencoderKLWan, WanTransformer3DModel  # noqa: F401
        from transformers import UMT5EncoderModel  # noqa: F401
    except ImportError:
        pass


def child(job: dict) -> dict:
    """One local build in a fresh process, with the code at ``job['code']`` (on PYTHONPATH): timings, and the
    vectors saved to ``job['vectors']`` (npz) for the parent to compare."""
    import numpy as np

    import motive_index

    code = Path(job["code"]).resolve()
    used = Path(motive_index.__file__).resolve()
    if code not in used.parents:
        raise SystemExit(f"motive_index was imported from {used}, not from {code}: PYTHONPATH is not in effect")
    from motive_index.api import MotiveIndex
    from motive_index.manifest import read_manifest

    import dataclasses

    from motive_index.config import MaskConfig

    ids = [c.clip_id for c in read_manifest(job["manifest"])]
    # the mask as the old code makes it: code that has camera_fit / camera_gate builds with the camera fitted to
    # sparse tracks and no gate (the defaults changed after the old commit; the comparison is of the pipeline)
    fields = {f.name for f in dataclasses.fields(MaskConfig)}
    mask = MaskConfig(camera_fit="tracks", camera_gate=0.0) if "camera_fit" in fields else MaskConfig()
    preload()
    stamps: list[float] = []
    cpu, t0 = time.process_time(), time.perf_counter()
    idx, report = MotiveIndex.build(job["manifest"], job["model"], job["index"], mask=mask, dim=job["dim"],
                                    progress=lambda i, n, cid: stamps.append(time.perf_counter() - t0))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
    inf, mot = idx.store.get_vectors(ids), idx.features_store.get_vectors(ids)
    np.savez(job["vectors"], influence=np.stack([inf[c] for c in ids]), motion=np.stack([mot[c] for c in ids]))
    return {"file": str(used), "wall_s": wall, "cpu_s": cpu, "report_seconds": report.seconds, "added": report.added,
            "failed": len(report.failed), "stamps": stamps, "stage_seconds": report.stage_seconds}


# ------------------------------------------------------------------------------------------ helpers


def _timing(wall: float, stamps: list[float], clips: int) -> dict:
    first = stamps[0] if stamps else None
    steady = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) >= 2 else None
    return {"wall_s": wall, "clips_per_s": clips / wall if wall > 0 else None, "s_per_clip": wall / clips,
            "first_clip_s": first, "steady_s_per_clip": steady}


def _vectors(index_dir: Path, ids: list[str]):
    import numpy as np

    from motive_index.api import MotiveIndex

    idx = MotiveIndex.open(index_dir)
    inf, mot = idx.store.get_vectors(ids), idx.features_store.get_vectors(ids)
    have = [c for c in ids if c in inf and c in mot]
    return {"influence": np.stack([inf[c] for c in have]) if have else None,
            "motion": np.stack([mot[c] for c in have]) if have else None, "stored": len(have)}


def _diff(a: dict, b: dict) -> dict | None:
    """Largest |a - b| per channel and over both; None when either lacks vectors or their shapes differ."""
    import numpy as np

    out = {}
    for ch in ("influence", "motion"):
        x, y = a.get(ch), b.get(ch)
        if x is None or y is None or x.shape != y.shape:
            return None
        out[ch] = float(np.abs(x - y).max())
    out["max"] = max(out.values())
    return out


class _PlanLog(logging.Handler):
    """Keeps ray.data's "Execution plan of Dataset ...: <plan>" lines (which stages were fused)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.plans: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Execution plan of Dataset"):
            self.plans.append(msg.split(": ", 1)[-1])


def _build_in_thread(manifest, model_dir, index_dir, timeout: float, **kw) -> dict:
    """``MotiveIndex.build`` in a daemon thread, given ``timeout`` seconds; the progress stamps either way."""
    from motive_index.api import MotiveIndex

    box: dict = {"stamps": []}

    def go():
        t0 = time.perf_counter()
        box["t0"] = t0
        try:
            _, report = MotiveIndex.build(manifest, model_dir, index_dir, dim=DIM, **kw,
                                          progress=lambda i, n, cid: box["stamps"].append(time.perf_counter() - t0))
            box["report"] = report
        except BaseException as e:  # noqa: BLE001 - reported in the row
            box["error"] = f"{type(e).__name__}: {e}"
        box["wall"] = time.perf_counter() - t0

    th = threading.Thread(target=go, daemon=True, name=f"build-{Path(index_dir).name}")
    t = time.perf_counter()
    th.start()
    th.join(timeout)
    box["alive"] = th.is_alive()
    if box["alive"]:
        box["wall"] = time.perf_counter() - t
    return box


def _git(*args, check=True) -> str:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if check and out.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip() if out.returncode == 0 else ""


def old_commit() -> tuple[str | None, str | None, str]:
    """(old commit, refactor commit, reason): the commit before the refactor's, or None and why not."""
    try:
        if _git("rev-parse", "--is-inside-work-tree", check=False) != "true":
            return None, None, f"{ROOT} is not a git checkout"
    except (OSError, subprocess.SubprocessError) as e:
        return None, None, f"git is not usable here: {e}"
    shallow = _git("rev-parse", "--is-shallow-repository", check=False) == "true"
    found = [line.split(" ", 1)[0] for line in _git("log", "--format=%H %s", "HEAD").splitlines()
             if line.split(" ", 1)[-1].startswith(REFACTOR_SUBJECT)]
    if not found:
        return None, None, (f"no commit whose subject starts with {REFACTOR_SUBJECT!r} in the history"
                            + (" (a shallow clone)" if shallow else ""))
    refactor = found[-1]  # the first such commit
    parent = _git("rev-parse", "--verify", "--quiet", f"{refactor}^", check=False)
    if not parent:
        return None, refactor, f"the parent of {refactor[:10]} is not in the history" + (
            " (a shallow clone)" if shallow else "")
    return parent, refactor, ""


def run_child(code: Path, job: dict, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps({**job, "code": str(code)})]
    try:
        out = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode:
        return {"error": f"exit {out.returncode}: {out.stderr.strip()[-1500:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ the parts


def part_ray(work: Path, manifest: Path, model_dir: Path, ids: list[str], args) -> tuple[dict, dict]:
    """Part 1: the local build, then the Ray rows. Returns (the part's document, the local build's vectors)."""
    n = len(ids)
    rows: list[dict] = []
    box = _build_in_thread(manifest, model_dir, work / "index-local", args.timeout, executor="local")
    local_vecs = None
    row = {"build": "local", "workers": None}
    rows.append(row)
    if _row_from_box(row, box, n):
        local_vecs = _vectors(work / "index-local", ids)
        row["max_abs_diff"] = {"influence": 0.0, "motion": 0.0, "max": 0.0}
    local_s = row.get("wall_s") if row["status"] == "ok" else None
    log(f"local: {row['status']} in {row['wall_s']:.1f} s")

    # a timed-out build's thread calling Ray after the shutdown must not start a second, orphaned local cluster
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # read when ray is imported
    import ray

    plans = _PlanLog()
    plan_logger = logging.getLogger(PLAN_LOGGER)  # "ray.data" itself does not pass its records on
    plan_logger.addHandler(plans)
    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    init_s = time.perf_counter() - t
    log(f"ray.init(num_cpus=2): {init_s:.1f} s")
    doc = {"ray_init_s": init_s, "ray_num_cpus": 2, "rows": rows}
    stuck = False
    try:
        for workers in args.workers:
            row = {"build": "ray", "workers": workers}
            rows.append(row)
            if stuck:
                row.update(status="not run", note="an earlier Ray build timed out and still holds the CPUs")
                continue
            before = len(plans.plans)
            box = _build_in_thread(manifest, model_dir, work / f"index-ray-{workers}", args.timeout,
                                   executor="ray", workers=workers)
            row["plan"] = plans.plans[before] if len(plans.plans) > before else None
            if _row_from_box(row, box, n):
                if local_s is not None:
                    row["overhead_s_per_clip"] = (row["wall_s"] - local_s) / n
                if local_vecs is not None:
                    row["max_abs_diff"] = _diff(_vectors(work / f"index-ray-{workers}", ids), local_vecs)
            stuck = stuck or box["alive"]
            log(f"ray, {workers} worker(s): {row['status']} in {row['wall_s']:.1f} s")
        if not stuck:  # the torch threads a num_cpus=1 Ray task (a model actor's kind) gets
            try:
                @ray.remote(num_cpus=1)
                def threads():
                    import torch

                    return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")

                n_threads, omp = ray.get(threads.remote(), timeout=120)
                doc["ray_task_torch_threads"], doc["ray_task_omp_num_threads"] = n_threads, omp
            except Exception as e:  # noqa: BLE001 - an aside; the rows stand without it
                doc["ray_task_torch_threads_error"] = str(e)
    finally:
        plan_logger.removeHandler(plans)
        _shutdown_ray(ray, stuck)
    doc["stuck"] = stuck
    import torch

    doc["driver_torch_threads"] = torch.get_num_threads()
    return doc, local_vecs


def _row_from_box(row: dict, box: dict, n: int) -> bool:
    """Fills ``row`` from a build thread's box; True when the build finished with every clip stored."""
    row.update(_timing(box["wall"], box["stamps"], n))
    row["stored"] = len(box["stamps"])
    if box["alive"]:
        row.update(status="timed out", note=f"gave up after {box['wall']:.0f} s with {len(box['stamps'])} of {n} "
                                             f"clips stored")
        row["clips_per_s"] = len(box["stamps"]) / box["wall"]  # what it managed before the timeout
        return False
    if "error" in box:
        row.update(status="error", note=box["error"])
        return False
    rep = box["report"]
    row["added"], row["failed"], row["stage_seconds"] = rep.added, len(rep.failed), rep.stage_seconds
    if rep.added != n or rep.failed:
        row.update(status="error", note=f"{rep.added} of {n} clips added, {len(rep.failed)} failed")
        return False
    row["status"] = "ok"
    return True


def _shutdown_ray(ray, stuck: bool) -> None:
    th = threading.Thread(target=ray.shutdown, daemon=True)
    th.start()
    th.join(60 if stuck else 300)
    if th.is_alive():
        log("warning: ray.shutdown() did not return within its time")


def part_before_after(work: Path, manifest: Path, model_dir: Path, ids: list[str], args) -> dict:
    """Part 2: the old code (a git worktree of the commit before the refactor) against this working tree, both on
    ``model_dir`` (a tiny model with the legacy VAE layout the old code reads); each run's vectors are compared
    with the first new-code run's."""
    import numpy as np

    old, refactor, reason = old_commit()
    if old is None:
        return {"status": "skipped", "reason": reason}
    head = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "motive_index", check=False))
    tree = Path(tempfile.mkdtemp(prefix="motive-old-code-")) / "old"
    doc = {"status": "ok", "old_commit": old, "refactor_commit": refactor, "new_commit": head,
           "new_has_uncommitted_changes": dirty, "worktree": str(tree), "runs": []}
    _git("worktree", "add", "--detach", str(tree), old)
    try:
        n = len(ids)
        for p in range(args.pairs):
            for code_name, code in (("old", tree), ("new", ROOT)):
                k = len(doc["runs"]) + 1
                job = {"manifest": str(manifest), "model": str(model_dir), "dim": DIM,
                       "index": str(work / f"index-{code_name}-{k}"), "vectors": str(work / f"vec-{k}.npz")}
                got = run_child(code, job, args.timeout)
                run = {"run": k, "code": code_name}
                doc["runs"].append(run)
                if "error" in got:
                    run.update(status="error", note=got["error"])
                    log(f"before/after run {k} ({code_name}): {got['error']}")
                    continue
                run.update(_timing(got["wall_s"], got["stamps"], n), cpu_s_per_clip=got["cpu_s"] / n,
                           file=got["file"], added=got["added"],
                           failed=got["failed"], stage_seconds=got["stage_seconds"])
                run["status"] = "ok" if got["added"] == n and not got["failed"] else "error"
                run["vectors"] = job["vectors"]
                log(f"before/after run {k} ({code_name}): {run['s_per_clip']:.3f} s/clip")
    finally:
        out = subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True,
                             text=True)
        if out.returncode:
            log(f"warning: git worktree remove failed: {out.stderr.strip()}")
        try:
            tree.parent.rmdir()
        except OSError:
            pass
    ref = next((r["vectors"] for r in doc["runs"] if r["code"] == "new" and r["status"] == "ok"), None)
    if ref is not None:
        with np.load(ref) as z:
            ref_vecs = {"influence": z["influence"], "motion": z["motion"]}
        for r in doc["runs"]:
            if r.get("status") == "ok":
                with np.load(r["vectors"]) as z:
                    r["max_abs_diff_vs_new"] = _diff({"influence": z["influence"], "motion": z["motion"]}, ref_vecs)
    for code_name in ("old", "new"):
        ok = [r for r in doc["runs"] if r["code"] == code_name and r["status"] == "ok"]
        doc[code_name] = {
            "runs": len(ok),
            "s_per_clip": statistics.median(r["s_per_clip"] for r in ok) if ok else None,
            "steady_s_per_clip": (statistics.median(r["steady_s_per_clip"] for r in ok)
                                  if ok and all(r["steady_s_per_clip"] for r in ok) else None),
            "cpu_s_per_clip": statistics.median(r["cpu_s_per_clip"] for r in ok) if ok else None,
            "files": sorted({r["file"] for r in ok}),
        }
    o, w = doc["old"], doc["new"]
    doc["ratio"] = w["s_per_clip"] / o["s_per_clip"] if o["s_per_clip"] and w["s_per_clip"] else None
    doc["steady_ratio"] = (w["steady_s_per_clip"] / o["steady_s_per_clip"]
                           if o["steady_s_per_clip"] and w["steady_s_per_clip"] else None)
    doc["cpu_ratio"] = (w["cpu_s_per_clip"] / o["cpu_s_per_clip"]
                        if o["cpu_s_per_clip"] and w["cpu_s_per_clip"] else None)
    runs = doc["runs"]  # old, new, old, new...: each pair's ratio cancels the machine's drift between pairs
    doc["pair_ratios"] = [new_r["s_per_clip"] / old_r["s_per_clip"] for old_r, new_r in zip(runs[::2], runs[1::2])
                          if old_r["status"] == new_r["status"] == "ok"]
    doc["median_pair_ratio"] = statistics.median(doc["pair_ratios"]) if doc["pair_ratios"] else None
    diffs = [r["max_abs_diff_vs_new"]["max"] for r in doc["runs"] if r.get("max_abs_diff_vs_new")]
    doc["max_abs_diff_vs_new"] = max(diffs) if diffs else None
    if any(r["status"] != "ok" for r in doc["runs"]) or doc["ratio"] is None:
        doc["status"] = "error"
    return doc


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_s3(work: Path) -> tuple[subprocess.Popen, str]:
    """moto's S3 server in its own process on a free loopback port, with the bucket ``motive-bench``."""
    import urllib.request

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(work / "moto.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"moto's server did not start: {(work / 'moto.log').read_text()[-1500:]}")
            time.sleep(0.2)
    req = urllib.request.Request(f"{url}/motive-bench", method="PUT")  # create the bucket (moto accepts it unsigned)
    urllib.request.urlopen(req, timeout=10).read()
    return proc, url


def _query_times(index, query) -> dict:
    from motive_index.api import MotiveIndex

    t = time.perf_counter()
    idx = MotiveIndex.open(index)
    open_s = time.perf_counter() - t
    t = time.perf_counter()
    idx.query(query.path, prompt=query.caption, k=5)
    first = time.perf_counter() - t
    warm = []
    for _ in range(5):
        t = time.perf_counter()
        idx.query(query.path, prompt=query.caption, k=5)
        warm.append((time.perf_counter() - t) * 1000)
    return {"open_s": open_s, "first_query_s": first, "query_p50_ms": statistics.median(warm)}


STORE_KEYS = ("s_per_clip", "steady_s_per_clip", "store_s_per_clip", "open_s", "first_query_s", "query_p50_ms")


def part_store(work: Path, manifest: Path, model_dir: Path, ids: list[str], local_vecs, args) -> dict:
    """Part 3: the same build into a local folder and into moto's S3 server, alternating."""
    from motive_index.manifest import read_manifest

    try:
        proc, url = _start_s3(work)
    except (OSError, RuntimeError) as e:
        return {"status": "error", "reason": str(e), "runs": []}
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT",
                                            "AWS_ALLOW_HTTP", "MOTIVE_INDEX_CACHE")}
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
                      AWS_ENDPOINT=url, AWS_ALLOW_HTTP="true", MOTIVE_INDEX_CACHE=str(work / "cache"))
    query = read_manifest(manifest)[0]
    n = len(ids)
    doc = {"status": "ok", "server": f"moto {_moto_version()} at {url} (own process)", "runs": []}
    try:
        for p in range(args.store_pairs):
            for where in ("local", "s3"):
                k = len(doc["runs"]) + 1
                index = str(work / f"index-store-{k}") if where == "local" else f"s3://motive-bench/run-{k}/idx"
                box = _build_in_thread(manifest, model_dir, index, args.timeout, executor="local")
                run = {"run": k, "store": where}
                doc["runs"].append(run)
                if _row_from_box(run, box, n):
                    run["store_s_per_clip"] = run["stage_seconds"].get("store", 0.0) / n
                    run.update(_query_times(index, query))
                    if local_vecs is not None:
                        run["max_abs_diff"] = _diff(_vectors(index, ids), local_vecs)
                log(f"store run {k} ({where}): {run['status']} in {run['wall_s']:.1f} s")
                if box["alive"]:
                    doc["status"] = "error"
                    return doc  # a stuck build holds the CPUs: the rows after it would mean nothing
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    for where in ("local", "s3"):
        ok = [r for r in doc["runs"] if r["store"] == where and r["status"] == "ok"]
        doc[where] = {key: (statistics.median(r[key] for r in ok) if ok else None)
                      for key in STORE_KEYS}
        doc[where]["runs"] = len(ok)
    doc["ratio"] = {key: (doc["s3"][key] / doc["local"][key] if doc["s3"][key] and doc["local"][key] else None)
                    for key in STORE_KEYS}
    if any(r["status"] != "ok" for r in doc["runs"]) or not doc["s3"]["runs"] or not doc["local"]["runs"]:
        doc["status"] = "error"
    return doc


def _moto_version() -> str:
    try:
        from importlib.metadata import version

        return version("moto")
    except Exception:  # noqa: BLE001 - only for the table's header
        return "?"


# ------------------------------------------------------------------------------------------ output


def _f(x, fmt: str = ".2f", none: str = "-") -> str:
    return none if x is None else format(x, fmt)


def tables(doc: dict) -> str:
    cfg, ray_doc, ba = doc["config"], doc["ray"], doc["before_after"]
    n = cfg["clips"]
    out = [f"\nmachine: {doc['machine']}", f"matmul anchor (512x512 fp32): {doc['matmul_anchor_ms']:.2f} ms",
           f"manifest: {n} synthetic clips (generate_dataset seed {SEED}, {FRAMES[0]}-{FRAMES[1]} frames, 96x128), "
           f"tiny Wan (build_tiny(seed=0), saved), dim {DIM}, flow mask + motion channel; every build into a fresh "
           f"index; made in {doc['setup_s']:.1f} s",
           "",
           "## 1. Clips per second: local build and Ray",
           "",
           f"ray.init(num_cpus=2): {ray_doc['ray_init_s']:.2f} s (started once, in none of the rows); torch threads: "
           f"driver {ray_doc['driver_torch_threads']}, a num_cpus=1 Ray task "
           + (f"{ray_doc['ray_task_torch_threads']} (OMP_NUM_THREADS={ray_doc['ray_task_omp_num_threads']})"
              if "ray_task_torch_threads" in ray_doc else "not measured"),
           "",
           "| build | workers | status | wall s | clips/s | Ray overhead s/clip | first clip s | steady s/clip | "
           "max abs diff vs local (influence / motion) |",
           "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in ray_doc["rows"]:
        d = r.get("max_abs_diff")
        diff = ("0 (reference)" if r["build"] == "local" and d else
                f"{d['influence']:.2e} / {d['motion']:.2e}" if d else "-")
        status = r["status"] + (f" ({r['note']})" if r.get("note") else "")
        out.append(f"| {r['build']} | {r['workers'] or '-'} | {status} | {_f(r.get('wall_s'))} | "
                   f"{_f(r.get('clips_per_s'))} | {_f(r.get('overhead_s_per_clip'), '+.3f')} | "
                   f"{_f(r.get('first_clip_s'))} | {_f(r.get('steady_s_per_clip'), '.3f')} | {diff} |")
    diffs = [r["max_abs_diff"]["max"] for r in ray_doc["rows"] if r["build"] == "ray" and r.get("max_abs_diff")]
    out += ["", f"max |diff| of the Ray builds' vectors against the local build's: "
                f"{_f(max(diffs) if diffs else None, '.2e')} (bound {BOUND:g}: "
                f"{'ok' if diffs and max(diffs) <= BOUND else 'NOT MET' if diffs else 'nothing to compare'})"]
    plans = [(r["workers"], r["plan"]) for r in ray_doc["rows"] if r.get("plan")]
    for w, p in plans:
        out.append(f"- Ray Data plan, {w} worker(s): `{p}`")
    local = ray_doc["rows"][0]
    for r in ray_doc["rows"][1:]:  # where the steady rates would make up for Ray's start
        if r["status"] == "ok" and local["status"] == "ok" and r["steady_s_per_clip"] and local["steady_s_per_clip"]:
            gain = local["steady_s_per_clip"] - r["steady_s_per_clip"]
            head = r["first_clip_s"] - local["first_clip_s"]
            catch = (f"it would catch the local build after ~{1 + head / gain:.0f} clips" if gain > 0
                     else "it never catches the local build")
            out.append(f"- Ray, {r['workers']} worker(s): first clip {head:.1f} s after the local build's, then "
                       f"{abs(gain):.3f} s/clip {'faster' if gain > 0 else 'slower'}: {catch}")
    out += ["", "## 2. Before / after moving the build loop into pipeline.py (local build, fresh process each)", ""]
    if ba["status"] == "skipped":
        out.append(f"skipped: {ba['reason']}")
        return "\n".join(out)
    out += [f"old: {ba['old_commit'][:10]} (the parent of {ba['refactor_commit'][:10]} \"{REFACTOR_SUBJECT}\"), a "
            f"git worktree; motive_index from {', '.join(ba['old']['files']) or '?'}",
            f"new: this working tree at {ba['new_commit'][:10]}"
            f"{' (with uncommitted changes in motive_index/)' if ba['new_has_uncommitted_changes'] else ''}; "
            f"motive_index from {', '.join(ba['new']['files']) or '?'}",
            "",
            "| run | code | status | build wall s | s/clip | first clip s | steady s/clip | CPU s/clip | "
            "max abs diff vs the first new run |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in ba["runs"]:
        d = r.get("max_abs_diff_vs_new")
        status = r["status"] + (f" ({r['note'][:200]})" if r.get("note") else "")
        out.append(f"| {r['run']} | {r['code']} | {status} | {_f(r.get('wall_s'))} | {_f(r.get('s_per_clip'), '.3f')} "
                   f"| {_f(r.get('first_clip_s'))} | {_f(r.get('steady_s_per_clip'), '.3f')} | "
                   f"{_f(r.get('cpu_s_per_clip'), '.3f')} | {_f(d['max'] if d else None, '.2e')} |")
    for code in ("old", "new"):
        m = ba[code]
        out.append(f"| median | {code} | {m['runs']} runs | | {_f(m['s_per_clip'], '.3f')} | | "
                   f"{_f(m['steady_s_per_clip'], '.3f')} | {_f(m['cpu_s_per_clip'], '.3f')} | |")
    out += ["", f"new / old (medians): s/clip {_f(ba['ratio'], '.3f')}, steady s/clip {_f(ba['steady_ratio'], '.3f')}, "
                f"CPU s/clip {_f(ba['cpu_ratio'], '.3f')}; "
                f"s/clip of each pair: {', '.join(format(x, '.3f') for x in ba['pair_ratios']) or '-'} "
                f"(median {_f(ba['median_pair_ratio'], '.3f')})"]
    out += _store_table(doc.get("store"))
    return "\n".join(out)


def _store_table(st: dict | None) -> list[str]:
    out = ["", "## 3. The store in a local folder or on an S3-compatible server (local build, this process)", ""]
    if not st:
        return out + ["not run"]
    if not st["runs"]:
        return out + [f"{st['status']}: {st.get('reason', '')}"]
    out += [f"server: {st['server']}", "",
            "| run | store | status | build wall s | s/clip | steady s/clip | store stage s/clip | open s | "
            "first query s | query p50 ms | max abs diff vs part 1 |",
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in st["runs"]:
        d = r.get("max_abs_diff")
        status = r["status"] + (f" ({r['note'][:200]})" if r.get("note") else "")
        out.append(f"| {r['run']} | {r['store']} | {status} | {_f(r.get('wall_s'))} | {_f(r.get('s_per_clip'), '.3f')} "
                   f"| {_f(r.get('steady_s_per_clip'), '.3f')} | {_f(r.get('store_s_per_clip'), '.3f')} | "
                   f"{_f(r.get('open_s'))} | {_f(r.get('first_query_s'))} | {_f(r.get('query_p50_ms'), '.0f')} | "
                   f"{_f(d['max'] if d else None, '.2e')} |")
    for where in ("local", "s3"):
        m = st.get(where) or {}
        out.append(f"| median | {where} | {m.get('runs', 0)} runs | | {_f(m.get('s_per_clip'), '.3f')} | "
                   f"{_f(m.get('steady_s_per_clip'), '.3f')} | {_f(m.get('store_s_per_clip'), '.3f')} | "
                   f"{_f(m.get('open_s'))} | {_f(m.get('first_query_s'))} | {_f(m.get('query_p50_ms'), '.0f')} | |")
    r = st.get("ratio") or {}
    out += ["", "S3 / local (medians): " + ", ".join(f"{k.replace('_', ' ')} {_f(v, '.2f')}" for k, v in r.items())]
    return out


# ------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="6 clips, Ray with 1 worker, one old/new pair (~1 min)")
    ap.add_argument("--clips", type=int, default=None, help="clips in the manifest (default 24; --quick 6)")
    ap.add_argument("--pairs", type=int, default=None, help="old/new build pairs (default 5; --quick 1)")
    ap.add_argument("--store-pairs", type=int, default=None,
                    help="local/S3 store build pairs of part 3 (default 2; --quick 1)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds each build is given (default 300; --quick 150)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # PYTHONPATH decides which motive_index this imports: nothing is put on sys.path here
        print(json.dumps(child(json.loads(args.child))))
        return 0
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    q = args.quick
    args.clips = args.clips or (6 if q else 24)
    args.pairs = args.pairs or (1 if q else 5)
    args.store_pairs = args.store_pairs or (1 if q else 2)
    args.timeout = args.timeout or (150.0 if q else 300.0)
    args.workers = [1] if q else [1, 2]
    if args.clips < 2:
        ap.error("--clips must be at least 2")
    if not q and old_commit()[0] is None:  # a full run needs both halves: fail before building anything
        log(f"error: the before/after part cannot run: {old_commit()[2]}")
        return 2

    stdout = None
    if args.json:  # keep stdout for the document alone: anything printed meanwhile goes to stderr
        sys.stdout.flush()
        stdout = os.dup(1)
        os.dup2(2, 1)

    from _machine import machine, matmul_anchor_ms

    t_all = time.perf_counter()
    doc = {"machine": machine(), "matmul_anchor_ms": matmul_anchor_ms(),
           "config": {"clips": args.clips, "frames": list(FRAMES), "seed": SEED, "dim": DIM, "pairs": args.pairs,
                      "store_pairs": args.store_pairs,
                      "ray_workers": args.workers, "timeout_s": args.timeout, "quick": q}}
    rc = 0
    with tempfile.TemporaryDirectory(prefix="motive-distributed-bench-") as tmp:
        work = Path(tmp)
        from motive_index.backbones import build_tiny
        from motive_index.manifest import read_manifest
        from motive_index.synthetic import generate_dataset

        t = time.perf_counter()
        manifest = generate_dataset(work / "data", args.clips, seed=SEED, frames_range=FRAMES)
        model_dir = build_tiny(seed=0).save_pretrained(work / "model")
        # the old code predates the trained tiny VAE's layout (it cannot read patch_size): compare old and new
        # code on a tiny model with the VAE layout both read the same way
        from motive_index.backbones.tiny_vae import legacy_tiny_vae

        legacy_dir = build_tiny(seed=0, vae=legacy_tiny_vae()).save_pretrained(work / "model-legacy")
        ids = [c.clip_id for c in read_manifest(manifest)]
        preload()
        doc["setup_s"] = time.perf_counter() - t
        doc["ray"], local_vecs = part_ray(work, manifest, model_dir, ids, args)
        if doc["ray"]["stuck"]:
            log("a Ray build is still running (timed out): the before/after part runs beside it")
        doc["before_after"] = part_before_after(work, manifest, legacy_dir, ids, args)
        doc["store"] = part_store(work, manifest, model_dir, ids, local_vecs, args)
    ba = doc["before_after"]
    if ba["status"] == "skipped" and not q:
        log(f"error: the before/after part cannot run: {ba['reason']}")
        rc = 2
    diffs = [r["max_abs_diff"]["max"] for r in doc["ray"]["rows"] if r.get("max_abs_diff")]
    diffs += [r["max_abs_diff_vs_new"]["max"] for r in ba.get("runs", []) if r.get("max_abs_diff_vs_new")]
    diffs += [r["max_abs_diff"]["max"] for r in doc["store"]["runs"] if r.get("max_abs_diff")]
    doc["max_abs_diff"] = max(diffs) if diffs else None
    if doc["ray"]["rows"][0]["status"] != "ok" or ba["status"] == "error" or doc["store"]["status"] != "ok" \
            or (diffs and max(diffs) > BOUND):
        rc = rc or 1
    doc["seconds"] = time.perf_counter() - t_all
    doc["exit_code"] = rc
    if stdout is not None:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
        print(json.dumps(doc, indent=2))
    else:
        print(tables(doc))
        print(f"\n(whole run: {doc['seconds']:.0f} s)")
    sys.stdout.flush()
    sys.stderr.flush()
    if doc["ray"]["stuck"]:
        os._exit(rc)  # a timed-out build's thread would keep the interpreter from exiting
    return rc


if __name__ == "__main__":
    sys.exit(main())
