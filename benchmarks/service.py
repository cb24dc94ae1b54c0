"""The HTTP service's cost (issue 11): a warm ``motive-index serve`` on loopback against the same queries made
in-process, ``/v1/lookup`` alone on a large store, and where one warm query's time goes, as tables.

    python benchmarks/service.py [--quick] [--requests 40] [--clients 1,4,8] [--lookup-n 100000]
                                 [--lookup-requests 300] [--lookup-clients 1,4] [--train-clips 12]
                                 [--queue 32] [--workers 2] [--json]

Everything is built in the run, under a temporary folder, seeded, nothing downloaded: real mp4 clips from
``synthetic.generate_dataset`` (``--train-clips`` training clips, 96x128, 17-40 frames; 8 held-out query clips
of another seed), the tiny Wan preset (``build_tiny(seed=0)`` + ``save_pretrained``, not fine-tuned: the costs
do not depend on the weights) and an index built on it with ``MotiveIndex.build``'s defaults (flow mask,
512 dims, motion-feature channel).

1. **Queries over HTTP.** The service runs as a separate process (``motive-index serve --json-logs --queue Q
   --workers W``, the CLI a deployment runs) on a free loopback port and is warmed (``/readyz``, then two
   queries). For each client count, that many threads, each with its own ``httpx.Client``, post the query clips'
   real bytes (multipart ``video``, ``prompt`` = the clip's caption, ``k=10``; ``similar`` left at its default,
   ``k``) to ``/v1/query`` until ``--requests`` requests are done (a shared counter: the same total for every
   client count). Latency is the client's (request sent to body read); requests/s is requests over the phase's
   wall time; any status but 200, or a transport error, counts as failed. ``--queue`` (default 32) is above the
   largest client count, so no request should be refused with 503. Stage means come from each response's
   ``timings`` (the ``query --json`` document's) and, for ``upload`` (body received and the multipart parsed,
   before the route runs) and ``server`` (the server's whole handling, from the first byte to the response),
   from the access log's JSON lines. ``other`` = client latency - query total - upload: queueing for a worker,
   writing the upload to disk, JSON encoding and loopback transport.
2. **The same queries in-process**, in the same run right after each HTTP phase: ``MotiveIndex.query`` on the same
   index directory (its own warm ``MotiveIndex``, opened once), serially for 1 client and with 4 / 8 threads
   sharing it; then HTTP / in-process ratios of p50 and of requests/s: the cost of the service layer. Note the
   service does the model's work on ``--workers`` threads (2), in-process threads all call ``query`` at once;
   both serialize the model's own work (encode, forward, backward) on the engine's lock.
3. **``/v1/lookup`` alone** on a store of ``--lookup-n`` random unit vectors (``ClipStore.create`` with the real
   index's fingerprint and dim, ``ClipStore.add`` in batches of 10 k; vectors from ``benchmarks/search.py``'s
   ``unit_random``; ``settings.json`` copied from the real index so the service can load the model and become
   ready). The FAISS index (``auto`` kind) and the calibration null are built once in-process by
   ``MotiveIndex.warm``; then ``MotiveIndex.lookup`` (k=10) serially and with the lookup client counts'
   threads, and a second service on that store answering ``/v1/lookup`` (JSON vector + fingerprint, k=10) with
   the same client counts; held-out random unit query vectors. Random vectors have no cluster structure, so
   ``auto`` falls back to exact (flat) search there (benchmarks/search.py measures IVF on clustered data). Then
   the reads one lookup makes (``store.version``, ``tombstones.ids()``, the FAISS search, ``store.rows`` of the
   hits), each timed apart, at that size and on the query index.
4. **Where the time goes** in one warm in-process query: each stage's mean over the serial in-process run (1
   above), its share of the query's total, and beside it the same for HTTP with 1 client (upload and other
   included). Then the tiny VAE's encode of one standardized query clip (17 x 64 x 64) measured alone: median
   ms at torch's default thread count and at 1 thread, and the profiler's split of its CPU time by operator.

``--quick``: 6 training clips, 3 query clips, clients 1 and 2, 3 requests each, lookup at 2 k vectors, 20 lookups
(a smoke run for the test; its numbers are too few to read anything into). ``--json``: one JSON document on
stdout instead of the tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, matmul_anchor_ms  # noqa: E402
from search import unit_random  # noqa: E402

K = 10
STORE_BATCH = 10_000
# the stages of a query, in pipeline order (others that appear are appended)
STAGE_ORDER = ("upload", "load_model", "decode", "flow", "vae", "text", "fwd_bwd", "projection", "search",
               "features", "similarity_search")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values_ms: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values_ms, dtype=np.float64), p)) if values_ms else float("nan")


# ------------------------------------------------------------------------------------------ the service process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``motive-index serve`` in a subprocess on a free loopback port, its stderr (the JSON access log) in a
    file; :meth:`access` returns the access-log records written since the last call."""

    def __init__(self, index: Path, log_path: Path, queue: int, workers: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._seen = 0
        cmd = [sys.executable, "-c", "import sys; from motive_index.cli import main; sys.exit(main())", "serve",
               "--index", str(index), "--host", "127.0.0.1", "--port", str(self.port), "--queue", str(queue),
               "--workers", str(workers), "--json-logs"]
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout: float = 300) -> float:
        import httpx

        t0 = time.perf_counter()
        deadline = time.time() + timeout
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the service exited ({self.proc.returncode}):\n{self.tail()}")
                try:
                    if c.get("/readyz").status_code == 200:
                        return time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError(f"the service was not ready after {timeout:.0f} s:\n{self.tail()}")
                time.sleep(0.1)

    def tail(self, n: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def access(self, path: str, expect: int = 0, timeout: float = 10.0) -> list[dict]:
        """The access-log records of ``path`` since the last call; waits (up to ``timeout``) for ``expect`` of
        them: the line is written just after the response is sent."""
        deadline = time.time() + timeout
        while True:
            lines = self.log_path.read_text(errors="replace").splitlines()
            recs = []
            for line in lines[self._seen:]:
                _, sep, body = line.partition("motive_index.service.access: ")
                if sep:
                    try:
                        rec = json.loads(body)
                    except ValueError:
                        continue
                    if rec.get("path") == path:
                        recs.append(rec)
            if len(recs) >= expect or time.time() > deadline:
                self._seen = len(lines)
                return recs
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ------------------------------------------------------------------------------------------ load generation


def run_in_process(n_clients: int, n_requests: int, make_worker) -> dict:
    """The summarized in-process row: one client runs serially in this thread, more as :func:`run_clients`."""
    if n_clients == 1:
        do = make_worker()
        t0 = time.perf_counter()
        recs = [do(i) for i in range(n_requests)]
        wall = time.perf_counter() - t0
    else:
        recs, wall = run_clients(n_clients, n_requests, make_worker)
    return summarize("in-process" if n_clients > 1 else "in-process (serial)", n_clients, recs, wall)


def run_clients(n_clients: int, n_requests: int, make_worker) -> tuple[list[dict], float]:
    """``n_clients`` threads share ``n_requests`` jobs (a counter); ``make_worker()`` is called once per thread
    and returns ``do(i) -> dict`` (with ``ms``, ``ok``). Returns the per-request records and the wall time."""
    lock = threading.Lock()
    nxt = [0]
    records: list[dict] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_clients + 1)

    def client():
        try:
            do = make_worker()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            barrier.abort()
            return
        try:
            barrier.wait()
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= n_requests:
                    break
                rec = do(i)
                with lock:
                    records.append(rec)
        except BaseException as e:  # noqa: BLE001 - a worker that dies is reported, not hung on
            errors.append(e)
        finally:
            if hasattr(do, "close"):
                do.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n_clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:  # a client could not start: its error is raised below
        pass
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"a client thread failed: {errors[0]!r}") from errors[0]
    return records, wall


class HttpQueryWorker:
    def __init__(self, url: str, uploads: list[tuple[str, bytes, str]]):
        import httpx

        self.httpx = httpx
        self.client = httpx.Client(base_url=url, timeout=600)
        self.uploads = uploads

    def __call__(self, i: int) -> dict:
        name, data, prompt = self.uploads[i % len(self.uploads)]
        t = time.perf_counter()
        try:
            r = self.client.post("/v1/query", files={"video": (name, data, "video/mp4")},
                                 data={"prompt": prompt, "k": str(K)})
            body = r.content
            ms = (time.perf_counter() - t) * 1000
        except self.httpx.HTTPError as e:
            return {"ms": (time.perf_counter() - t) * 1000, "ok": False, "status": type(e).__name__}
        rec = {"ms": ms, "ok": r.status_code == 200, "status": r.status_code}
        if r.status_code == 200:
            doc = json.loads(body)
            rec["timings"] = doc.get("timings", {})
            rec["hits"] = len(doc.get("hits", []))
        return rec

    def close(self):
        self.client.close()


class HttpLookupWorker:
    def __init__(self, url: str, vectors: np.ndarray, fingerprint: str):
        import httpx

        self.httpx = httpx
        self.client = httpx.Client(base_url=url, timeout=600)
        self.bodies = [{"vector": [float(x) for x in v], "fingerprint": fingerprint, "k": K} for v in vectors]

    def __call__(self, i: int) -> dict:
        t = time.perf_counter()
        try:
            r = self.client.post("/v1/lookup", json=self.bodies[i % len(self.bodies)])
            body = r.content
            ms = (time.perf_counter() - t) * 1000
        except self.httpx.HTTPError as e:
            return {"ms": (time.perf_counter() - t) * 1000, "ok": False, "status": type(e).__name__}
        ok = r.status_code == 200 and len(json.loads(body)["hits"]) == K
        return {"ms": ms, "ok": ok, "status": r.status_code}

    def close(self):
        self.client.close()


def summarize(mode: str, clients: int, records: list[dict], wall: float, access: list[dict] | None = None) -> dict:
    ms = [r["ms"] for r in records]
    failed = [r for r in records if not r["ok"]]
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    row = {"mode": mode, "clients": clients, "requests": len(records), "failed": len(failed),
           "statuses": statuses, "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "mean_ms": float(np.mean(ms)),
           "rps": len(records) / wall if wall > 0 else float("nan"), "wall_s": wall}
    timed = [r["timings"] for r in records if r.get("timings")]
    if timed:
        keys = [k for k in STAGE_ORDER if any(k in t for t in timed)]
        keys += sorted({k for t in timed for k in t} - set(keys) - {"total"})
        stages = {k: 1000 * float(np.mean([t.get(k, 0.0) for t in timed])) for k in keys}
        stages["total"] = 1000 * float(np.mean([t["total"] for t in timed]))
        if access:
            ok = [a for a in access if a.get("status") == 200]
            if ok:
                stages = {"upload": float(np.mean([a["stages_ms"].get("upload", 0.0) for a in ok])), **stages}
                row["server_ms"] = float(np.mean([a["ms"] for a in ok]))
                row["access_log_lines"] = len(access)
        row["stages_ms"] = stages
        row["other_ms"] = row["mean_ms"] - stages["total"] - stages.get("upload", 0.0)
    return row


# ------------------------------------------------------------------------------------------ setup


def build_everything(work: Path, args) -> dict:
    from motive_index.api import MotiveIndex
    from motive_index.backbones import build_tiny
    from motive_index.synthetic import generate_dataset

    setup = {}
    t = time.perf_counter()
    train = generate_dataset(work / "train", args.train_clips, seed=0, prefix="clip")
    queries = generate_dataset(work / "queries", args.query_clips, seed=1000, prefix="query")
    setup["synth_s"] = time.perf_counter() - t
    log(f"[setup] {args.train_clips} training clips, {args.query_clips} query clips ({setup['synth_s']:.1f} s)")
    t = time.perf_counter()
    model = build_tiny(seed=0).save_pretrained(work / "model")
    setup["model_s"] = time.perf_counter() - t
    log(f"[setup] tiny Wan saved to {model} ({setup['model_s']:.1f} s)")
    t = time.perf_counter()
    _, report = MotiveIndex.build(train, model, work / "index")
    setup["build_s"] = time.perf_counter() - t
    if report.added != args.train_clips or report.failed:
        raise RuntimeError(f"the build added {report.added} of {args.train_clips} clips; failed: {report.failed}")
    log(f"[setup] index of {report.size} clips built ({setup['build_s']:.1f} s)")
    setup.update(train_clips=args.train_clips, query_clips=args.query_clips, model=str(model),
                 index=str(work / "index"), manifest=str(queries))
    return setup


def build_lookup_store(src_index: Path, dest: Path, n: int) -> dict:
    """A store of ``n`` random unit vectors with ``src_index``'s fingerprint and dim, and its settings.json."""
    from motive_index.api import SETTINGS_FILE
    from motive_index.store import ClipStore

    src = ClipStore.open(src_index)
    t = time.perf_counter()
    store = ClipStore.create(dest, src.fingerprint, src.dim)
    rng = np.random.default_rng(7)
    for a in range(0, n, STORE_BATCH):
        b = min(n, a + STORE_BATCH)
        vecs = unit_random(b - a, src.dim, rng)  # (b - a, dim)
        store.add([{"clip_id": f"r{i:07d}", "path": "", "caption": "", "metadata": {}, "vector": vecs[i - a]}
                   for i in range(a, b)])
    fill = time.perf_counter() - t
    shutil.copyfile(src_index / SETTINGS_FILE, dest / SETTINGS_FILE)  # the model: the service loads it to be ready
    assert len(store) == n
    return {"n": n, "dim": src.dim, "fill_s": fill}


# ------------------------------------------------------------------------------------------ phases


def query_phases(setup: dict, args) -> tuple[list[dict], list[dict]]:
    from motive_index.api import MotiveIndex
    from motive_index.manifest import read_manifest

    clips = read_manifest(setup["manifest"])
    uploads = [(Path(c.path).name, Path(c.path).read_bytes(), c.caption) for c in clips]
    idx = MotiveIndex.open(setup["index"])
    idx.warm()
    for c in clips[:2]:
        idx.query(c.path, prompt=c.caption, k=K)  # warm-up (not measured)
    vec, _ = idx.embed(clips[0].path, clips[0].caption)
    setup["split_ms"] = search_split(idx, vec[None, :], args.split_reps)

    svc = ServiceProcess(Path(setup["index"]), Path(setup["work"]) / "serve-query.log", args.queue, args.workers)
    rows, ratios = [], []
    try:
        ready = svc.wait_ready()
        log(f"[http] service on {svc.url} ready in {ready:.1f} s (queue {args.queue}, workers {args.workers})")
        warm = HttpQueryWorker(svc.url, uploads)
        for i in range(2):
            r = warm(i)
            if not r["ok"]:
                raise RuntimeError(f"warm-up query failed ({r['status']}):\n{svc.tail()}")
        warm.close()
        svc.access("/v1/query", expect=2)
        for n in args.clients:
            recs, wall = run_clients(n, args.requests, lambda: HttpQueryWorker(svc.url, uploads))
            http = summarize("http", n, recs, wall, svc.access("/v1/query", expect=len(recs)))
            rows.append(http)
            log(f"[http] {n} clients: p50 {http['p50_ms']:.0f} ms, {http['rps']:.2f} req/s, "
                f"{http['failed']} failed")

            def local_worker():
                def do(i):
                    c = clips[i % len(clips)]
                    t = time.perf_counter()
                    try:
                        res = idx.query(c.path, prompt=c.caption, k=K)
                    except Exception as e:  # noqa: BLE001 - counted as failed
                        return {"ms": (time.perf_counter() - t) * 1000, "ok": False, "status": type(e).__name__}
                    return {"ms": (time.perf_counter() - t) * 1000, "ok": len(res.hits) == min(K, setup["train_clips"]),
                            "status": "ok", "timings": res.timings}
                return do

            local = run_in_process(n, args.requests, local_worker)
            rows.append(local)
            ratios.append({"clients": n, "p50_ratio": http["p50_ms"] / local["p50_ms"],
                           "rps_ratio": http["rps"] / local["rps"],
                           "p50_extra_ms": http["p50_ms"] - local["p50_ms"]})
            log(f"[in-process] {n} clients: p50 {local['p50_ms']:.0f} ms, {local['rps']:.2f} req/s")
    finally:
        svc.stop()
    return rows, ratios


def lookup_phases(setup: dict, args) -> dict:
    from motive_index.api import MotiveIndex

    dest = Path(setup["work"]) / "lookup-index"
    log(f"[lookup] filling a store of {args.lookup_n} random unit vectors ...")
    info = build_lookup_store(Path(setup["index"]), dest, args.lookup_n)
    log(f"[lookup] store filled in {info['fill_s']:.1f} s")
    idx = MotiveIndex.open(dest)
    info["index_s"] = idx.warm()  # the FAISS index and its null, saved (the service loads them); the model
    search = idx.status()["search"]
    info["search"] = {k: search.get(k) for k in ("kind", "nlist", "nprobe", "recall_at_10", "recall", "fallback",
                                                 "p50_ms") if k in search}
    log(f"[lookup] FAISS index + null in {info['index_s']:.1f} s: {info['search']}")
    fp = idx.fingerprint_id
    queries = unit_random(max(args.lookup_requests, 50), info["dim"], np.random.default_rng(8))
    for v in queries[:5]:
        idx.lookup(v, fp, k=K)  # warm-up
    info["split_ms"] = search_split(idx, queries, args.split_reps)
    rows = []

    def local_worker():
        def do(i):
            t = time.perf_counter()
            hits = idx.lookup(queries[i % len(queries)], fp, k=K)
            return {"ms": (time.perf_counter() - t) * 1000, "ok": len(hits) == K, "status": "ok"}
        return do

    local_rows = {}
    for n in args.lookup_clients:
        local_rows[n] = run_in_process(n, args.lookup_requests, local_worker)
    svc = ServiceProcess(dest, Path(setup["work"]) / "serve-lookup.log", args.queue, args.workers)
    ratios = []
    try:
        info["ready_s"] = svc.wait_ready()
        log(f"[lookup] service ready in {info['ready_s']:.1f} s")
        w = HttpLookupWorker(svc.url, queries[:5], fp)
        for i in range(5):
            if not w(i)["ok"]:
                raise RuntimeError(f"warm-up lookup failed:\n{svc.tail()}")
        w.close()
        svc.access("/v1/lookup", expect=5)
        for n in args.lookup_clients:
            recs, wall = run_clients(n, args.lookup_requests, lambda: HttpLookupWorker(svc.url, queries, fp))
            acc = svc.access("/v1/lookup", expect=len(recs))
            http = summarize("http", n, recs, wall)
            ok = [a for a in acc if a.get("status") == 200]
            if ok:
                http["server_ms"] = float(np.mean([a["ms"] for a in ok]))
                http["stages_ms"] = {"search": float(np.mean([a["stages_ms"].get("search", 0.0) for a in ok]))}
            rows += [http, local_rows[n]]
            ratios.append({"clients": n, "p50_ratio": http["p50_ms"] / local_rows[n]["p50_ms"],
                           "rps_ratio": http["rps"] / local_rows[n]["rps"],
                           "p50_extra_ms": http["p50_ms"] - local_rows[n]["p50_ms"]})
            log(f"[lookup] {n} clients: http p50 {http['p50_ms']:.2f} ms, in-process {local_rows[n]['p50_ms']:.2f} ms")
    finally:
        svc.stop()
    info.update(rows=rows, ratios=ratios)
    return info


def search_split(idx, queries: np.ndarray, reps: int) -> dict:
    """Where one ``MotiveIndex.lookup`` (k=10) spends its time, in-process: the median ms of each of the reads a
    search makes (``rank`` in attribution.py, ``_caught_up`` in api.py), timed apart on the same store, and of
    the whole call."""
    from motive_index.index import open_index

    store, fp = idx.store, idx.fingerprint_id
    faiss_index = open_index(store, store.path)  # the saved FAISS index, loaded (the one lookup searches)
    ids = [cid for cid, _ in faiss_index.search(queries[0], K)[0]]

    def med(fn) -> float:
        fn()
        ts = []
        for i in range(reps):
            t = time.perf_counter()
            fn(i)
            ts.append((time.perf_counter() - t) * 1000)
        return statistics.median(ts)

    parts = {
        "store.version (LanceDB checkout_latest: is the FAISS index current?)": lambda i=0: store.version,
        "store.tombstones.ids() (LanceDB checkout_latest of the removed table)": lambda i=0: store.tombstones.ids(),
        "FAISS search, k=10": lambda i=0: faiss_index.search(queries[i % len(queries)], K),
        "store.rows(10 hit ids) (LanceDB scan, clip_id IN (...))": lambda i=0: store.rows(ids),
    }
    out = {name: med(fn) for name, fn in parts.items()}
    out["MotiveIndex.lookup, whole"] = med(lambda i=0: idx.lookup(queries[i % len(queries)], fp, k=K))
    return out


def vae_probe(setup: dict, reps: int) -> dict:
    """The tiny VAE's encode of one standardized query clip, alone: median ms at the default thread count and
    at 1 thread, and the profiler's split of its CPU time by operator group."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from motive_index.backbones import load_backbone
    from motive_index.manifest import read_manifest
    from motive_index.video import frames_to_tensor, load_video

    bb = load_backbone(setup["model"])
    clip = read_manifest(setup["manifest"])[0]
    frames = frames_to_tensor(load_video(clip.path, bb.spec).frames)  # (T, 3, H, W)

    def median_ms() -> float:
        bb.encode_video(frames)
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            bb.encode_video(frames)
            ts.append((time.perf_counter() - t) * 1000)
        return statistics.median(ts)

    threads = torch.get_num_threads()
    out = {"shape": list(frames.shape), "threads": threads, "default_ms": median_ms()}
    torch.set_num_threads(1)
    try:
        out["one_thread_ms"] = median_ms()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            bb.encode_video(frames)
    finally:
        torch.set_num_threads(threads)
    groups = {"conv3d, native slow path (aten::slow_conv3d_forward)": ("aten::slow_conv3d_forward",),
              "conv3d, oneDNN (aten::mkldnn_convolution)": ("aten::mkldnn_convolution",),
              "RMS norm (aten::linalg_vector_norm)": ("aten::linalg_vector_norm",),
              "causal-cache copies (copy_, cat, pad, slice, clone)": ("aten::copy_", "aten::cat",
                                                                       "aten::constant_pad_nd", "aten::slice",
                                                                       "aten::clone", "aten::as_strided",
                                                                       "aten::empty", "aten::fill_",
                                                                       "aten::zeros", "aten::narrow")}
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    calls = {e.key: e.count for e in prof.key_averages()}
    total = sum(self_us.values()) or 1.0
    split = {}
    for name, ops in groups.items():
        split[name] = {"share": sum(self_us.get(o, 0.0) for o in ops) / total,
                       "calls": int(sum(calls.get(o, 0) for o in ops))}
    split["everything else"] = {"share": 1.0 - sum(v["share"] for v in split.values()),
                                "calls": int(sum(calls.values()) - sum(v["calls"] for v in split.values()))}
    out["profile_ms"] = total / 1000
    out["split"] = split
    out["conv_calls"] = int(calls.get("aten::_convolution", 0) or calls.get("aten::convolution", 0))
    return out


# ------------------------------------------------------------------------------------------ tables


def fmt(x, nd=0) -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def tables(doc: dict) -> str:
    out = [f"\nmachine: {doc['machine']}; 512x512 matmul {doc['matmul_anchor_ms']:.2f} ms", ""]
    s, cfg = doc["setup"], doc["config"]
    out.append(f"setup: {s['train_clips']} training clips (96x128, 17-40 frames), {s['query_clips']} query clips, "
               f"tiny Wan (not fine-tuned), index dim {doc['dim']} with the motion channel; synth {s['synth_s']:.1f} s, "
               f"model {s['model_s']:.1f} s, build {s['build_s']:.1f} s. Service: `motive-index serve --queue "
               f"{cfg['queue']} --workers {cfg['workers']} --json-logs` in its own process on loopback (queue above "
               f"the largest client count, so no 503). {cfg['requests']} requests per client count, k={K} (p99 of that many is "
               f"close to their max).")
    out += ["", "### /v1/query over HTTP vs MotiveIndex.query in-process", "",
            "| mode | clients | requests | failed | p50 ms | p99 ms | req/s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in doc["query"]["rows"]:
        out.append(f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['failed']} | {fmt(r['p50_ms'])} | "
                   f"{fmt(r['p99_ms'])} | {fmt(r['rps'], 2)} |")
    keys = []
    for r in doc["query"]["rows"]:
        keys += [k for k in r.get("stages_ms", {}) if k not in keys and k != "total"]
    keys = [k for k in keys if max(r.get("stages_ms", {}).get(k, 0.0) for r in doc["query"]["rows"]) >= 0.5]
    out += ["", "Per-stage means (ms; `upload` and `server` from the access log, the rest from each response's "
                "`timings`; `other` = latency - total - upload: queueing, writing the upload, JSON, transport):", "",
            "| mode | clients | " + " | ".join(keys) + " | total | server | other | latency |",
            "|---|---:|" + "---:|" * (len(keys) + 4)]
    for r in doc["query"]["rows"]:
        st = r.get("stages_ms", {})
        out.append(f"| {r['mode']} | {r['clients']} | " + " | ".join(fmt(st.get(k)) for k in keys)
                   + f" | {fmt(st.get('total'))} | {fmt(r.get('server_ms'))} | {fmt(r.get('other_ms'))} | "
                   f"{fmt(r['mean_ms'])} |")
    out += ["", "HTTP / in-process (the cost of the service layer):", "",
            "| clients | p50 ratio | p50 extra ms | req/s ratio |", "|---:|---:|---:|---:|"]
    for r in doc["query"]["ratios"]:
        out.append(f"| {r['clients']} | {r['p50_ratio']:.2f}x | {r['p50_extra_ms']:+.0f} | {r['rps_ratio']:.2f}x |")

    lk = doc["lookup"]
    srch = lk["search"]
    kind = srch.get("kind", "?") + (f", nlist {srch['nlist']}, nprobe {srch['nprobe']}" if srch.get("nprobe") else "")
    if srch.get("fallback"):
        kind += f" ({srch['fallback']})"
    out += ["", f"### /v1/lookup alone at {lk['n']:,} stored vectors (dim {lk['dim']}, k={K})", "",
            f"Store filled in {lk['fill_s']:.1f} s ({lk['n'] / max(lk['fill_s'], 1e-9):,.0f} rows/s); FAISS index "
            f"({kind}), its null and the model loaded in {lk['index_s']:.1f} s (`MotiveIndex.warm`); the service loaded model + saved index in "
            f"{lk['ready_s']:.1f} s. {doc['config']['lookup_requests']} lookups per client count.", "",
            "| mode | clients | requests | failed | p50 ms | p99 ms | req/s | server ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in lk["rows"]:
        out.append(f"| {r['mode']} | {r['clients']} | {r['requests']} | {r['failed']} | {fmt(r['p50_ms'], 2)} | "
                   f"{fmt(r['p99_ms'], 2)} | {fmt(r['rps'], 0)} | {fmt(r.get('server_ms'), 2)} |")
    out += ["", "| clients | p50 ratio | p50 extra ms | req/s ratio |", "|---:|---:|---:|---:|"]
    for r in lk["ratios"]:
        out.append(f"| {r['clients']} | {r['p50_ratio']:.1f}x | {r['p50_extra_ms']:+.2f} | {r['rps_ratio']:.2f}x |")
    qs = doc["query"]["split_ms"]
    out += ["", f"Inside one in-process lookup (k=10): the reads a search makes, each timed apart (median of "
                f"{doc['config']['split_reps']}), at {lk['n']:,} vectors and on the query index "
                f"({doc['setup']['train_clips']} clips):", "",
            f"| part | ms at {lk['n']:,} | ms at {doc['setup']['train_clips']} |", "|---|---:|---:|"]
    for name, ms in lk["split_ms"].items():
        out.append(f"| {name} | {ms:.2f} | {qs.get(name, float('nan')):.2f} |")

    b = doc["breakdown"]
    out += ["", f"### Where the time goes: one warm query (means over {b['queries']} serial queries)", "",
            "| stage | in-process ms | share | HTTP, 1 client, ms | share |", "|---|---:|---:|---:|---:|"]
    for r in b["rows"]:
        out.append(f"| {r['stage']} | {fmt(r.get('local_ms'))} | {fmt_share(r.get('local_share'))} | "
                   f"{fmt(r.get('http_ms'))} | {fmt_share(r.get('http_share'))} |")
    v = doc["vae"]
    out += ["", f"The tiny VAE's encode alone (one standardized query clip, frames x C x H x W = "
                f"{' x '.join(map(str, v['shape']))}; median of {doc['config']['vae_reps']}): {v['default_ms']:.0f} ms "
                f"at torch's {v['threads']} threads, {v['one_thread_ms']:.0f} ms at 1 thread; under the profiler "
                f"(1 thread) {v['profile_ms']:.0f} ms of operator time over {v['conv_calls']} convolutions:", "",
            "| operators | share of CPU time | calls |", "|---|---:|---:|"]
    for name, r in v["split"].items():
        out.append(f"| {name} | {r['share'] * 100:.0f}% | {r['calls']} |")
    out.append("")
    return "\n".join(out)


def fmt_share(x) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def breakdown(rows: list[dict]) -> dict:
    local = next(r for r in rows if r["mode"].startswith("in-process") and r["clients"] == 1)
    http = next(r for r in rows if r["mode"] == "http" and r["clients"] == 1)
    ls, hs = local["stages_ms"], http["stages_ms"]
    lt, ht = local["mean_ms"], http["mean_ms"]
    stages = [k for k in hs if k != "total"] + [k for k in ls if k not in hs and k != "total"]
    out = []
    for k in stages:
        out.append({"stage": k, "local_ms": ls.get(k), "local_share": ls[k] / lt if k in ls else None,
                    "http_ms": hs.get(k), "http_share": hs[k] / ht if k in hs else None})
    l_rest = lt - sum(v for k, v in ls.items() if k != "total")
    h_rest = ht - sum(v for k, v in hs.items() if k != "total")
    out.append({"stage": "untimed: between stages in query(); over HTTP also the queue wait, writing the upload, JSON, transport",
                "local_ms": l_rest, "local_share": l_rest / lt, "http_ms": h_rest, "http_share": h_rest / ht})
    out.append({"stage": "**total (latency)**", "local_ms": lt, "local_share": 1.0, "http_ms": ht, "http_share": 1.0})
    return {"queries": local["requests"], "rows": out}


# ------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run (well under 2 minutes)")
    ap.add_argument("--requests", type=int, default=None, help="requests per client count (default 40; quick 3)")
    ap.add_argument("--clients", default=None, help="client counts for /v1/query (default 1,4,8; quick 1,2)")
    ap.add_argument("--lookup-n", type=int, default=None, help="vectors in the lookup store (default 100000; quick 2000)")
    ap.add_argument("--lookup-requests", type=int, default=None, help="lookups per client count (default 300; quick 20)")
    ap.add_argument("--lookup-clients", default="1,4", help="client counts for /v1/lookup")
    ap.add_argument("--train-clips", type=int, default=None, help="clips in the index (default 12; quick 6)")
    ap.add_argument("--query-clips", type=int, default=None, help="distinct query clips (default 8; quick 3)")
    ap.add_argument("--queue", type=int, default=32, help="the service's --queue")
    ap.add_argument("--workers", type=int, default=2, help="the service's --workers")
    ap.add_argument("--vae-reps", type=int, default=None, help="repetitions of the VAE probe (default 7; quick 2)")
    ap.add_argument("--split-reps", type=int, default=None, help="repetitions of each timed read of a search "
                                                                 "(default 50; quick 5)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    ap.add_argument("--keep", type=Path, default=None, help="build in this folder and keep it (default: a temp one)")
    args = ap.parse_args(argv)
    q = args.quick
    args.requests = args.requests or (3 if q else 40)
    args.clients = [int(x) for x in (args.clients or ("1,2" if q else "1,4,8")).split(",")]
    args.lookup_clients = [int(x) for x in args.lookup_clients.split(",")]
    args.lookup_n = args.lookup_n or (2000 if q else 100_000)
    args.lookup_requests = args.lookup_requests or (20 if q else 300)
    args.train_clips = args.train_clips or (6 if q else 12)
    args.query_clips = args.query_clips or (3 if q else 8)
    args.vae_reps = args.vae_reps or (2 if q else 7)
    args.split_reps = args.split_reps or (5 if q else 50)
    if 1 not in args.clients or 1 not in args.lookup_clients:
        ap.error("--clients and --lookup-clients must include 1 (the serial baseline)")
    if max(args.clients) > args.queue:
        log(f"warning: --queue {args.queue} is below {max(args.clients)} clients: expect 503s")

    t_all = time.perf_counter()
    doc = {"machine": machine(), "matmul_anchor_ms": matmul_anchor_ms(),
           "config": {k: v for k, v in vars(args).items() if k not in ("json", "keep")}}
    tmp = None
    if args.keep:
        work = args.keep.resolve()
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="motive-service-bench-")
        work = Path(tmp.name)
    try:
        setup = build_everything(work, args)
        setup["work"] = str(work)
        from motive_index.store import ClipStore

        doc["dim"] = ClipStore.open(setup["index"]).dim
        rows, ratios = query_phases(setup, args)
        doc["query"] = {"rows": rows, "ratios": ratios}
        doc["lookup"] = lookup_phases(setup, args)
        doc["breakdown"] = breakdown(rows)
        doc["vae"] = vae_probe(setup, args.vae_reps)
        doc["setup"] = {k: v for k, v in setup.items() if k.endswith("_s") or k.endswith("_clips")}
        doc["query"]["split_ms"] = setup["split_ms"]
    finally:
        if tmp is not None:
            tmp.cleanup()
    doc["seconds"] = time.perf_counter() - t_all
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(tables(doc))
        print(f"(whole run: {doc['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
