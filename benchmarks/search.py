"""Search cost and recall per index kind, on random and on clustered unit vectors, as tables.

    python benchmarks/search.py [--n 1000000] [--dim 512] [--quick] [--queries 200] [--batch 1000]
                                [--store-sample 20000] [--device cuda]

For each data set (random unit vectors; unit vectors around 1000 Gaussian cluster centres) and each kind
(``flat``: exact FAISS; ``ivf``: IVF at the nprobe that ``VectorIndex.build`` tuned to recall@10 >= 0.95 on the
stored vectors, or its fallback to flat; ``numpy``: a brute-force NumPy scan in the same run): build seconds,
single-query p50/p99 ms (``--queries`` held-out queries from the same distribution), batch throughput
(queries/s for one batch of ``--batch``), recall@10 against exact search on the held-out queries, memory (bytes
of the serialized index; the array for numpy), and seconds to add 10 k new vectors to the built index
(``VectorIndex.catch_up``, searchable when it returns; checked by searching one of them).

``--device DEV`` adds a ``torch exact`` row (the flat index's vectors as a float32 tensor on DEV, exact
``q @ V.T`` + ``topk``: the GPU backend without a GPU faiss; memory is the tensor's) and, where the installed
faiss is a GPU build that sees DEV, ``flat``/``ivf`` rows searched on the GPU (``faiss-gpu``; their add time
includes copying the caught-up index to the GPU again).

The indexes are built straight from NumPy arrays, not from a LanceDB store: filling LanceDB with N x dim
vectors is timed separately on ``--store-sample`` rows (``ClipStore.add`` in batches of 10 k) and extrapolated.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, matmul_anchor_ms  # noqa: E402

ADD = 10_000
K = 10


def unit_random(n: int, dim: int, rng) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)  # (n, dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def unit_clustered(n: int, dim: int, rng, centres: np.ndarray, noise: float = 0.6) -> np.ndarray:
    """Unit vectors around ``centres`` (``(C, dim)``, unit): centre + noise * (Gaussian of norm ~1)."""
    out = np.empty((n, dim), np.float32)
    for a in range(0, n, 100_000):
        b = min(n, a + 100_000)
        x = centres[rng.integers(0, len(centres), b - a)]
        x = x + noise * rng.standard_normal((b - a, dim), dtype=np.float32) / np.sqrt(dim)
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def numpy_topk(vectors: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """(B, k) row positions of the best inner products, best first: the brute-force baseline."""
    s = q @ vectors.T  # (B, N)
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
    return np.take_along_axis(part, order, 1)


def pct(times: list[float], p: float) -> float:
    return float(np.percentile(np.array(times) * 1000, p))


def time_store_fill(n_rows: int, dim: int) -> float:
    """Seconds per 1 M rows for ``ClipStore.add`` of random vectors, measured on ``n_rows``."""
    from motive_index.store import ClipStore

    with tempfile.TemporaryDirectory() as tmp:
        store = ClipStore.create(Path(tmp) / "s", {"projection": {"kind": "identity", "dim": dim, "seed": 0}},
                                 dim)
        vecs = unit_random(n_rows, dim, np.random.default_rng(1))
        t = time.perf_counter()
        for a in range(0, n_rows, 10_000):
            store.add([{"clip_id": f"c{i}", "path": "", "caption": "", "metadata": {}, "vector": vecs[i]}
                       for i in range(a, min(n_rows, a + 10_000))])
        sec = time.perf_counter() - t
        t = time.perf_counter()
        store.snapshot()
        snap = time.perf_counter() - t
    return sec / n_rows * 1e6, snap / n_rows * 1e6


def row_md(r: dict) -> str:
    return (f"| {r['data']} | {r['kind']} | {r['build_s']:.1f} | {r['p50']:.2f} | {r['p99']:.2f} | "
            f"{r['qps']:.0f} | {r['recall']:.3f} | {r['bytes'] / 1e6:.0f} | {r['add_s']:.2f}"
            f"{'' if r['add_ok'] else ' (NOT FOUND)'} | {r['note']} |")


def bench_dataset(name: str, data: np.ndarray, queries: np.ndarray, n: int, args) -> list[dict]:
    """``data`` is ``(n + ADD, dim)``: the index gets the first ``n`` rows, then the last ``ADD`` are added."""
    from motive_index.index import VectorIndex, _faiss, resolve_backend

    base = data[:n]
    ids = [f"c{i}" for i in range(n)]
    all_ids = ids + [f"new{i}" for i in range(ADD)]
    nq = args.queries
    single, batch = queries[:nq], queries[: args.batch]

    # exact answers for the held-out queries (FAISS flat = exact)
    rows = []
    truth = None
    kinds = ["flat", "ivf", "numpy"]
    if args.device:
        kinds.append("torch")
        if resolve_backend(args.device)[0] == "faiss-gpu":
            kinds += ["flat@gpu", "ivf@gpu"]
    for kind in kinds:
        gc.collect()
        if kind == "numpy":
            t = time.perf_counter()
            mat = np.ascontiguousarray(base)  # the "index" is the array itself
            build = time.perf_counter() - t
            numpy_topk(mat, single[:1], K)  # warm up
            times = []
            for q in single:
                t = time.perf_counter()
                numpy_topk(mat, q[None, :], K)
                times.append(time.perf_counter() - t)
            t = time.perf_counter()
            found = np.concatenate([numpy_topk(mat, batch[a:a + 100], K) for a in range(0, len(batch), 100)])
            bt = time.perf_counter() - t
            t = time.perf_counter()
            mat = np.concatenate([mat, data[n:]])  # "adding" to a NumPy scan is appending rows
            add_s = time.perf_counter() - t
            ok = numpy_topk(mat, data[n + 7][None, :], 1)[0, 0] == n + 7
            rec = float(np.mean([len(set(f) & set(tr)) / K for f, tr in zip(found.tolist(), truth.tolist())]))
            rows.append({"data": name, "kind": "numpy scan", "build_s": build, "p50": pct(times, 50),
                         "p99": pct(times, 99), "qps": len(batch) / bt, "recall": rec, "bytes": base.nbytes,
                         "add_s": add_s, "add_ok": ok, "note": ""})
            print("  " + row_md(rows[-1]), file=sys.stderr, flush=True)
            del mat
            continue
        t = time.perf_counter()
        index = VectorIndex.build(ids, base, store_version=1, kind="flat" if kind == "torch" else kind.split("@")[0],
                                  recall_target=args.recall_target)
        if kind == "torch":
            index.use_device(args.device, backend="torch")
        elif kind.endswith("@gpu"):
            index.use_device(args.device, backend="faiss")
        build = time.perf_counter() - t
        index.search(single[0], K)
        times = []
        for q in single:
            t = time.perf_counter()
            index.search(q, K)
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        res = index.search(batch, K)
        bt = time.perf_counter() - t
        pos = np.array([[int(c[1:]) for c, _ in row] + [-1] * (K - len(row)) for row in res])  # (B, K)
        if kind == "flat":
            truth = pos
        rec = float(np.mean([len(set(f) & set(tr)) / K for f, tr in zip(pos.tolist(), truth.tolist())]))
        nbytes = (index._mat.numel() * index._mat.element_size() if kind == "torch"
                  else int(_faiss().serialize_index(index._index).size))
        st = index.stats
        t = time.perf_counter()
        index.catch_up(all_ids, data, store_version=2)
        add_s = time.perf_counter() - t
        ok = index.search(data[n + 7], 1)[0][0][0] == "new7"
        note = (f"nlist {st['nlist']}, nprobe {st['nprobe']}, tuned recall@10 {st['recall_at_10']}"
                if st["kind"] == "ivf" else "")
        if st.get("fallback"):
            best = max(st["recall_by_nprobe"].items(), key=lambda kv: kv[1])
            note = f"fell back to flat: best ivf recall@10 {best[1]} at nprobe {best[0]}"
        kind_label = {"ivf": "ivf", "flat": "flat (FAISS)", "torch": f"torch exact ({index.device})",
                      "flat@gpu": f"flat (FAISS GPU, {index.device})",
                      "ivf@gpu": f"ivf (FAISS GPU, {index.device})"}[kind]
        rows.append({"data": name, "kind": kind_label, "build_s": build, "p50": pct(times, 50),
                     "p99": pct(times, 99), "qps": len(batch) / bt, "recall": rec, "bytes": nbytes,
                     "add_s": add_s, "add_ok": ok, "note": note})
        print("  " + row_md(rows[-1]), file=sys.stderr, flush=True)
        del index, res
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--quick", action="store_true", help="n = 100 000")
    ap.add_argument("--queries", type=int, default=200, help="single queries timed")
    ap.add_argument("--batch", type=int, default=1000, help="queries in the throughput batch")
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--recall-target", type=float, default=0.95)
    ap.add_argument("--store-sample", type=int, default=20_000, help="rows written to LanceDB to time a fill")
    ap.add_argument("--data", default="random,clustered")
    ap.add_argument("--device", default=None,
                    help="also time search on this device (cpu, cuda, cuda:N): exact torch, and FAISS GPU if present")
    args = ap.parse_args()
    n = 100_000 if args.quick else args.n
    dim = args.dim
    nq = max(args.queries, args.batch)

    rows = []
    for name in args.data.split(","):
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        if name == "random":
            data = unit_random(n + ADD, dim, rng)
            queries = unit_random(nq, dim, rng)
        else:
            centres = unit_random(args.clusters, dim, rng)
            data = unit_clustered(n + ADD, dim, rng, centres)
            queries = unit_clustered(nq, dim, rng, centres)
        print(f"{name}: {n + ADD} x {dim} generated in {time.perf_counter() - t:.1f}s", file=sys.stderr,
              flush=True)
        rows += bench_dataset(name, data, queries, n, args)
        del data, queries
        gc.collect()

    fill = time_store_fill(args.store_sample, dim) if args.store_sample > 0 else None
    anchor = matmul_anchor_ms()
    print(f"\nmachine: {machine()}; 512x512 matmul {anchor:.2f} ms")
    print(f"N = {n} x dim {dim}, k = {K}; {args.queries} single queries, batch of {args.batch}; recall@10 of "
          f"held-out queries against exact FAISS flat; indexes built from NumPy arrays (not read from LanceDB)")
    if fill:
        print(f"LanceDB: ClipStore.add {fill[0]:.1f} s per 1 M rows (measured on {args.store_sample} rows of "
              f"dim {dim}, batches of 10 k) -> ~{fill[0] * n / 1e6:.0f} s for N; snapshot() "
              f"{fill[1]:.1f} s per 1 M rows")
    print()
    print("| data | kind | build s | p50 ms | p99 ms | batch q/s | recall@10 | memory MB | add 10k s | note |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(row_md(r))


if __name__ == "__main__":
    main()
