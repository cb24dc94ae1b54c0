"""Search cost, memory and recall per index kind, on random and on clustered unit vectors: a table, or JSON.

    python benchmarks/search.py [--n 1000000] [--dim 512] [--data random,clustered]
                                [--kind flat,ivf,compressed,hnsw,numpy] [--json] [--queries 200] [--batch 1000]
                                [--clusters 1000] [--catchup-n N] [--stream] [--float-copy auto]
                                [--device cuda]

For each data set (random unit vectors; unit vectors around ``--clusters`` Gaussian cluster centres) and each
kind (``flat``: exact FAISS, single queries by one BLAS product; ``ivf``: IVF at the nprobe that
``VectorIndex.build`` tuned to recall@10 >= 0.95 on the stored vectors, or its fallback to flat;
``compressed``: 8-bit IVF codes whose candidates are re-scored exactly against the float copy, tuned the same
way after the re-rank; ``hnsw``: a FAISS HNSW graph (M 32) at the efSearch tuned the same way, removals as
tombstones filtered in the search; ``auto``: what ``auto`` picks at N; ``numpy``: a brute-force NumPy scan, the baseline
measured in the same run), it measures:

- ``build_s``: seconds to build from the vectors (a NumPy array, or with ``--stream`` a float32 memory map the
  data was generated into in chunks: no (N, dim) array in memory; the compressed kind's float copy is then
  written straight to the index folder).
- ``p50_ms`` / ``p99_ms``: single queries (``--queries`` held-out queries from the same distribution); with
  ``--stream``, after the compressed kind's float copy's read-ahead into the page cache was asked for
  (``VectorIndex.warm``, as a load does, when it fits in 3/4 of the available memory; ``warm_s``).
- ``batch_qps``: queries per second for one batch of ``--batch``.
- ``recall_at_10``: of the held-out queries, against exact search (after the re-rank for compressed).
- ``resident_bytes``: memory the search structures hold (FAISS codes, ids and centroids; the array for numpy;
  the compressed kind's float copy is memory-mapped and counted as ``mapped_bytes``, not here; nor are the
  clip id maps, counted in ``rss_anon_bytes``: the process's anonymous memory after the build, less before).
- ``add_10k_s``: seconds to add 10 k new vectors (``VectorIndex.apply``; checked by searching one of them).
- ``catchup_ms``: 100 clips added to and 10 removed from a real LanceDB store of ``--catchup-n`` rows (default
  N, at most 1 M), then ``open_index(..., current=index)``: the store's changes read and applied (and saved
  when due), end to end. 0 skips it.

``--device DEV`` adds a ``torch`` kind (every vector as a float32 tensor on DEV, exact) and, where the
installed faiss is a GPU build that sees DEV, ``flat@gpu``/``ivf@gpu``/``compressed@gpu``.

``--json``: one JSON object per (data, kind) on its own line (one line for one data set and one kind).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, matmul_anchor_ms  # noqa: E402

ADD = 10_000
K = 10
GEN_CHUNK = 100_000


def unit_random(n: int, dim: int, rng) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)  # (n, dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def unit_clustered(n: int, dim: int, rng, centres: np.ndarray, noise: float = 0.6) -> np.ndarray:
    """Unit vectors around ``centres`` (``(C, dim)``, unit): centre + noise * (Gaussian of norm ~1)."""
    out = np.empty((n, dim), np.float32)
    fill_clustered(out, rng, centres, noise)
    return out


def fill_clustered(out: np.ndarray, rng, centres: np.ndarray, noise: float = 0.6) -> None:
    n, dim = out.shape
    for a in range(0, n, GEN_CHUNK):
        b = min(n, a + GEN_CHUNK)
        x = centres[rng.integers(0, len(centres), b - a)]
        x = x + noise * rng.standard_normal((b - a, dim), dtype=np.float32) / np.sqrt(dim)
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)


def fill_random(out: np.ndarray, rng) -> None:
    for a in range(0, len(out), GEN_CHUNK):
        out[a:a + GEN_CHUNK] = unit_random(min(GEN_CHUNK, len(out) - a), out.shape[1], rng)


def numpy_topk(vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """(B, k) row positions of the best inner products, best first: the brute-force baseline."""
    s = q @ vectors.T  # (B, N)
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def exact_truth(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    from motive_index.index.kinds import exact_topk

    return exact_topk(vectors, queries, k)  # (B, k) row positions, over row blocks (a memory map is fine)


def pct(times: list[float], p: float) -> float:
    return float(np.percentile(np.array(times) * 1000, p))


def rss_anon() -> int:
    """This process's anonymous resident memory, bytes (Linux; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def make_data(name: str, n: int, dim: int, nq: int, clusters: int, folder: Path | None):
    """``(data (n + ADD, dim), queries (nq, dim))``: in RAM, or ``data`` as a float32 memory map in ``folder``."""
    rng = np.random.default_rng(0)
    centres = unit_random(clusters, dim, rng) if name == "clustered" else None
    if folder is None:
        data = np.empty((n + ADD, dim), np.float32)
    else:
        data = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n + ADD, dim))
    if centres is None:
        fill_random(data, rng)
        queries = unit_random(nq, dim, rng)
    else:
        fill_clustered(data, rng, centres)
        queries = unit_clustered(nq, dim, rng, centres)
    if folder is not None:
        data.flush()
    return data, queries


def row_md(r: dict) -> str:
    mb = r["resident_bytes"] / 1e6
    mapped = f" (+{r['mapped_bytes'] / 1e6:.0f} mapped)" if r.get("mapped_bytes") else ""
    cu = f"{r['catchup_ms']:.0f}" if r.get("catchup_ms") is not None else "-"
    return (f"| {r['data']} | {r['kind']} | {r['built']} | {r['build_s']:.1f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['batch_qps']:.0f} | {r['recall_at_10']:.3f} | {mb:.0f}{mapped} | "
            f"{r['rss_anon_bytes'] / 1e6:.0f} | {r['add_10k_s']:.2f}{'' if r['add_ok'] else ' (NOT FOUND)'} | "
            f"{cu} | {r['note']} |")


def time_queries(search, single, batch):
    search(single[:1])  # warm up
    times = []
    for q in single:
        t = time.perf_counter()
        search(q[None, :])
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    found = search(batch)
    return times, time.perf_counter() - t, found


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found.tolist(), truth.tolist())]))


def bench_numpy(name, data, n, single, batch, truth, stream: bool) -> dict:
    """The brute-force baseline: the array in RAM, or with ``--stream`` the memory map scanned in row blocks
    (a 10 M x 512 array does not fit in RAM here)."""
    rss0 = rss_anon()
    t = time.perf_counter()
    mat = data[:n] if stream else np.array(data[:n])  # the "index" is the array itself
    build = time.perf_counter() - t
    scan = (lambda q: exact_truth(mat, q, K)) if stream else \
        (lambda q: np.concatenate([numpy_topk(mat, q[a:a + 100], K) for a in range(0, len(q), 100)]))
    times, bt, found = time_queries(scan, single, batch)
    t = time.perf_counter()
    if stream:  # appending to a memory map is writing the rows: they are in the file already
        add_s, ok = 0.0, True
    else:
        mat = np.concatenate([mat, data[n:]])  # "adding" to a NumPy scan is appending rows
        add_s = time.perf_counter() - t
        ok = numpy_topk(mat, np.asarray(data[n + 7])[None, :], 1)[0, 0] == n + 7
    return {"data": name, "n": n, "dim": data.shape[1], "kind": "numpy",
            "built": "numpy scan" + (" (memory map)" if stream else ""), "build_s": build,
            "p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "batch_qps": len(batch) / bt,
            "recall_at_10": recall(found, truth), "resident_bytes": 0 if stream else n * data.shape[1] * 4,
            "mapped_bytes": n * data.shape[1] * 4 if stream else 0, "rss_anon_bytes": rss_anon() - rss0,
            "add_10k_s": add_s, "add_ok": bool(ok), "catchup_ms": None, "note": ""}


def bench_kind(name, kind, data, n, single, batch, truth, args, store_dir: Path | None, index_dir: Path) -> dict:
    from motive_index.index import VectorIndex

    base_kind = "flat" if kind == "torch" else kind.split("@")[0]
    ids = [f"c{i}" for i in range(n)]
    rss0 = rss_anon()
    t = time.perf_counter()
    index = VectorIndex.build(ids, data[:n], store_version=1, kind=base_kind, recall_target=args.recall_target,
                              folder=index_dir if args.stream else None, float_copy=args.float_copy)
    if kind == "torch":
        index.use_device(args.device, backend="torch")
    elif kind.endswith("@gpu"):
        index.use_device(args.device, backend="faiss")
    build = time.perf_counter() - t
    t = time.perf_counter()
    warm_s = time.perf_counter() - t if index.warm(wait=True) else None  # the float copy into the page cache
    rss = rss_anon() - rss0
    rec = index.record

    def search(q):
        res = index.search(q, K)
        return np.array([[int(c[1:]) if c[0] == "c" else -1 for c, _ in row] + [-1] * (K - len(row))
                         for row in res])

    times, bt, found = time_queries(search, single, batch)
    resident = index._copy.nbytes if kind == "torch" else index.resident_bytes
    mapped = index.mapped_bytes
    catchup = time_catchup(index, data, n, kind, index_dir) if store_dir is not None else None
    t = time.perf_counter()
    index.apply([f"new{i}" for i in range(ADD)], np.asarray(data[n:n + ADD]), [], store_version=10 ** 9)
    add_s = time.perf_counter() - t
    ok = index.search(np.asarray(data[n + 7]), 1)[0][0][0] == "new7"
    note = ""
    if rec.kind in ("ivf", "compressed"):
        note = f"nlist {rec.nlist}, nprobe {rec.nprobe}" + (
            f", re-rank x{rec.rerank} from {rec.rerank_dtype}" if rec.rerank else "") \
            + f", tuned recall@10 {rec.recall_at_10}"
    elif rec.kind == "hnsw":
        note = f"efSearch {rec.ef_search}, tuned recall@10 {rec.recall_at_10}"
    if rec.fallback and rec.kind == "flat":
        best = max(rec.recall_by_nprobe.items(), key=lambda kv: kv[1]) if rec.recall_by_nprobe else ("-", "-")
        at = "efSearch" if base_kind == "hnsw" else "nprobe"
        note = f"fell back to flat: best {base_kind} recall@10 {best[1]} at {at} {best[0]}"
    elif rec.fallback:  # auto's ivf missed the target: compressed instead
        note = f"{rec.fallback.split(':')[0]}; {rec.kind} instead: " + note
    if warm_s is not None:
        note += f"; float copy's read-ahead asked for ({warm_s:.1f}s) before the timing"
    out = {"data": name, "n": n, "dim": data.shape[1], "kind": kind, "built": index.kind + (
        f" ({index.backend} on {index.device})" if index.backend != "faiss-cpu" else ""), "build_s": build,
        "p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "batch_qps": len(batch) / bt,
        "recall_at_10": recall(found, truth), "resident_bytes": int(resident), "mapped_bytes": int(mapped),
        "rss_anon_bytes": int(rss), "add_10k_s": add_s, "add_ok": bool(ok), "catchup_ms": catchup,
        "warm_s": warm_s, "note": note}
    return out


def fill_store(store_dir: Path, data: np.ndarray, n: int):
    """A LanceDB store holding rows ``c0 .. c{n-1}`` of ``data``, stamped an hour ago (a store filled before
    the index was last synced, not within the catch-up's clock margin); returns (store, seconds)."""
    import datetime as dt

    from motive_index import store as store_mod

    dim = data.shape[1]
    store = store_mod.ClipStore.create(store_dir, {"projection": {"kind": "identity", "dim": dim, "seed": 0}}, dim)
    real_now = store_mod._now
    store_mod._now = lambda: real_now() - dt.timedelta(hours=1)
    try:
        t = time.perf_counter()
        for a in range(0, n, 20_000):
            store.add([{"clip_id": f"c{i}", "path": "", "caption": "", "metadata": {}, "vector": data[i]}
                       for i in range(a, min(n, a + 20_000))])
    finally:
        store_mod._now = real_now
    return store, time.perf_counter() - t


#: the benchmark's store and what it holds beyond rows c0..c{n-1}: {"store", "extra": [(id, data row)],
#: "gone": [ids removed]}
_STORE: dict = {}


def time_catchup(index, data, n, kind: str, index_dir: Path) -> float:
    """ms of ``open_index(store, current=index)`` after 100 adds and 10 removes in the store. The index (built
    from ``data[:n]`` as c0..c{n-1}) is first brought to what the store holds (earlier kinds' changes, untimed)
    and marked synced with it now."""
    from motive_index.index import open_index

    store, extra, gone = _STORE["store"], _STORE["extra"], _STORE["gone"]
    dim = data.shape[1]
    index.apply([c for c, _ in extra], np.asarray(data[[r for _, r in extra]]).reshape(-1, dim), gone,
                store.version)
    index.synced_at = time.time()
    index.save(index_dir)  # as open_index saves what it builds (untimed: part of the build)
    new = [(f"late-{kind}-{i}", n + ADD - 1 - len(extra) - i) for i in range(100)]
    store.add([{"clip_id": c, "path": "", "caption": "", "metadata": {}, "vector": data[r]} for c, r in new])
    first = len(gone)
    removed = [f"c{(first + i) * 997}" for i in range(10)]
    store.remove(removed)
    t = time.perf_counter()
    caught = open_index(store, index_dir, current=index, kind=index.record.requested)
    ms = (time.perf_counter() - t) * 1000
    how = index.opened.reason if index.opened else "?"
    assert caught is index and new[0][0] in index and removed[0] not in index, "the catch-up missed the change"
    assert len(index) == len(store), (len(index), len(store))
    extra += new
    gone += removed
    print(f"    catch-up: {ms:.0f} ms ({how})", file=sys.stderr, flush=True)
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--quick", action="store_true", help="n = 100 000")
    ap.add_argument("--queries", type=int, default=200, help="single queries timed")
    ap.add_argument("--batch", type=int, default=1000, help="queries in the throughput batch")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--recall-target", type=float, default=0.95)
    ap.add_argument("--data", default="random,clustered")
    ap.add_argument("--kind", default="flat,ivf,compressed,numpy",
                    help="comma-separated: auto, flat, ivf, compressed, hnsw, numpy "
                         "(and torch / KIND@gpu with --device)")
    ap.add_argument("--catchup-n", type=int, default=None,
                    help="rows in the LanceDB store the catch-up is timed on (default: N up to 1 M; 0 skips)")
    ap.add_argument("--stream", action="store_true",
                    help="generate the data into a float32 memory map (no (N, dim) array in memory) and build "
                         "from it; the compressed kind writes its float copy straight to disk")
    ap.add_argument("--numpy-queries", type=int, default=None,
                    help="single (and batch) queries for the numpy scan (default: as the others; a scan of a "
                         "10 M memory map takes seconds a query)")
    ap.add_argument("--float-copy", default="auto", choices=("auto", "float32", "float16"),
                    help="the compressed kind's float copy (auto: float16 above 8 GB of float32)")
    ap.add_argument("--json", action="store_true", help="one JSON object per (data, kind), one per line")
    ap.add_argument("--store-sample", type=int, default=None, help=argparse.SUPPRESS)  # older runs' flag
    ap.add_argument("--device", default=None,
                    help="also time search on this device (cpu, cuda, cuda:N): exact torch, and FAISS GPU if present")
    args = ap.parse_args()
    n = 100_000 if args.quick else args.n
    dim = args.dim
    nq = max(args.queries, args.batch)
    catchup_n = min(n, 1_000_000) if args.catchup_n is None else args.catchup_n
    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    if args.device:
        from motive_index.index import resolve_backend

        kinds.append("torch")
        if resolve_backend(args.device)[0] == "faiss-gpu":
            kinds += [f"{k}@gpu" for k in ("flat", "ivf", "compressed")]

    rows = []
    with tempfile.TemporaryDirectory(prefix="search-bench-") as tmp:
        tmp = Path(tmp)
        for name in args.data.split(","):
            t = time.perf_counter()
            data, queries = make_data(name, n, dim, nq, args.clusters, tmp if args.stream else None)
            print(f"{name}: {n + ADD} x {dim} generated in {time.perf_counter() - t:.1f}s"
                  + (" (memory map)" if args.stream else ""), file=sys.stderr, flush=True)
            t = time.perf_counter()
            truth = exact_truth(data[:n], queries, K)  # (nq, K) exact row positions
            print(f"  exact answers in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
            single, batch = queries[:args.queries], queries[:args.batch]
            store_dir = None
            if catchup_n and catchup_n == n:
                store_dir = tmp / f"store-{name}"
                store, fill_s = fill_store(store_dir, data, n)
                _STORE.update(store=store, extra=[], gone=[])
                print(f"  LanceDB store of {n} rows filled in {fill_s:.0f}s", file=sys.stderr, flush=True)
            for kind in kinds:
                gc.collect()
                index_dir = tmp / f"index-{name}-{kind}"
                index_dir.mkdir(exist_ok=True)
                if kind == "numpy":
                    nn = args.numpy_queries or args.queries
                    r = bench_numpy(name, data, n, single[:nn], batch[:max(nn, 1)] if args.numpy_queries else batch,
                                    truth[:nn] if args.numpy_queries else truth[:args.batch], args.stream)
                else:
                    r = bench_kind(name, kind, data, n, single, batch, truth[:args.batch], args, store_dir,
                                   index_dir)
                rows.append(r)
                print("  " + row_md(r), file=sys.stderr, flush=True)
                if args.json:
                    print(json.dumps(r), flush=True)
            _STORE.clear()
            del data, queries
            gc.collect()
    if args.json:
        return
    anchor = matmul_anchor_ms()
    print(f"\nmachine: {machine()}; 512x512 matmul {anchor:.2f} ms")
    print(f"N = {n} x dim {dim}, k = {K}; {args.queries} single queries, batch of {args.batch}; recall@10 of "
          f"held-out queries against exact search; indexes built from "
          + ("a float32 memory map (--stream)" if args.stream else "NumPy arrays")
          + (f"; catch-up: 100 adds + 10 removes in a LanceDB store of {n} rows, open_index(current=...)"
             if catchup_n == n and catchup_n else "; catch-up not timed"))
    print()
    print("| data | kind | built | build s | p50 ms | p99 ms | batch q/s | recall@10 | resident MB | anon RSS MB | "
          "add 10k s | catch-up ms | note |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(row_md(r))


if __name__ == "__main__":
    main()
