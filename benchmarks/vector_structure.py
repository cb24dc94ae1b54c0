"""The structure of real index vectors, and which index kind suits them.

    python benchmarks/vector_structure.py [--clips 2000] [--seed 0] [--index DIR | --keep DIR] [--quick]

Builds an index of ``--clips`` synthetic clips (``synthetic.generate_dataset``: six motion classes, random
appearance) with the tiny seeded Wan (``--model tiny``: influence vectors, Fastfood 512 of the flow-masked
gradient; and the motion channel's descriptors), or reads an index already built (``--index DIR``). Then, for
the influence vectors, the motion descriptors, and two references of the same size and dimension (random unit
vectors; unit vectors around 50 cluster centres), it prints:

- IVF recall@10 of the store's own vectors (as ``VectorIndex.build`` measures it: sampled stored vectors as
  queries, themselves left out, against exact search) at each nprobe tried, at the nlist ``ivf`` uses at this
  size, and the nprobe (share of the lists) that reaches 0.95;
- neighbour contrast: how far the mean top-10 cosine of a query stands above the cosine of random pairs, in
  standard deviations of the random pairs' cosines ((top10 - mean) / sd), and the mean cosine of random pairs;
- effective dimension: the participation ratio of the vectors' covariance spectrum ((sum l)^2 / sum l^2);
- hnsw: the efSearch at which an HNSW graph reaches recall@10 0.95 on held-out queries (left out of the graph),
  and that recall (or the best it reached);
- what ``auto`` builds for them at this size, and at 1 M vectors of the same structure (by the rule it uses:
  ivf when IVF reaches the recall target, else compressed).

Cost: the build took 0.41 s a clip on 2 idle CPU cores (1000 clips: 7 minutes; 1.5 s a clip beside a test run); the
analysis seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from search import unit_clustered, unit_random  # noqa: E402


def structure(name: str, vecs: np.ndarray, seed: int = 0) -> dict:
    from motive_index.index import IVF_MIN_N, VectorIndex, choose_kind, choose_nlist

    n, dim = vecs.shape
    vecs = np.ascontiguousarray(vecs / np.linalg.norm(vecs, axis=1, keepdims=True), np.float32)
    rng = np.random.default_rng(seed)
    q = vecs[rng.choice(n, min(200, n), replace=False)]
    s = q @ vecs.T  # (200, n)
    s_sorted = np.sort(s, axis=1)[:, ::-1]
    top10 = s_sorted[:, 1:11].mean(axis=1)  # the query itself (cos 1) left out
    pairs = s_sorted[:, 11:].ravel()
    contrast = float(np.mean((top10 - pairs.mean()) / pairs.std()))
    lam = np.linalg.eigvalsh(np.cov(vecs.T.astype(np.float64)))
    pr = float(lam.sum() ** 2 / (lam ** 2).sum())
    t = time.perf_counter()
    ivf = VectorIndex.build([f"v{i}" for i in range(n)], vecs, 1, kind="ivf", recall_target=1.0, seed=seed)
    build_s = time.perf_counter() - t
    curve = ivf.record.recall_by_nprobe or {}
    nlist = choose_nlist(n)
    reach = next((int(p) for p, r in curve.items() if r >= 0.95), None)
    auto = VectorIndex.build([f"v{i}" for i in range(n)], vecs, 1, kind="auto", seed=seed)
    graph = VectorIndex.build([f"v{i}" for i in range(n)], vecs, 1, kind="hnsw", seed=seed).record
    tried = n >= IVF_MIN_N
    at_1m = choose_kind(1_000_000, dim)
    if not tried:
        at_1m = f"- (ivf not tried below {IVF_MIN_N} vectors)"
    elif at_1m == "ivf" and reach is None:
        at_1m = "compressed (ivf misses the target)"
    return {"name": name, "n": n, "dim": dim, "nlist": nlist, "curve": curve,
            "reach": (f"{reach} ({reach / nlist:.0%} of lists)" if reach else
                      f"none up to nprobe {max(1, nlist // 4)}" if tried else "-"),
            "contrast": contrast, "pair_mean": float(pairs.mean()), "top10": float(top10.mean()), "pr": pr,
            "auto_here": auto.kind, "auto_1m": at_1m, "build_s": build_s,
            "hnsw": (f"efSearch {graph.ef_search}: {graph.recall_at_10:.2f}" if not graph.fallback else
                     f"none up to efSearch {max(map(int, graph.recall_by_nprobe))}: "
                     f"{max(graph.recall_by_nprobe.values()):.2f}") if graph.recall_by_nprobe else "-"}


def build_index(clips: int, seed: int, workdir: Path) -> Path:
    from motive_index.api import MotiveIndex
    from motive_index.synthetic import generate_dataset

    t = time.perf_counter()
    manifest = generate_dataset(workdir / "clips", clips, seed=seed)
    print(f"{clips} clips written in {time.perf_counter() - t:.0f}s", file=sys.stderr, flush=True)
    t = time.perf_counter()
    index_dir = workdir / "index"
    MotiveIndex.build(manifest, "tiny", index_dir)
    print(f"index built in {time.perf_counter() - t:.0f}s ({(time.perf_counter() - t) / clips:.2f} s/clip)",
          file=sys.stderr, flush=True)
    return index_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index", type=Path, default=None, help="an index already built (skips the build)")
    ap.add_argument("--quick", action="store_true", help="300 clips: a smoke run (IVF is not tried below 256)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build the clips and index in this folder and keep them (rerun with --index DIR/index)")
    args = ap.parse_args()
    clips = 300 if args.quick else args.clips
    from motive_index.api import MotiveIndex

    with tempfile.TemporaryDirectory(prefix="vector-structure-") as tmp:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        index_dir = args.index or build_index(clips, args.seed, args.keep or Path(tmp))
        mi = MotiveIndex.open(index_dir)
        sets = []
        for ch in mi.channels:
            _, ids, vecs = ch.store.snapshot()
            sets.append((f"{ch.name} ({ch.label})", vecs))
        n, dim = sets[0][1].shape
        rng = np.random.default_rng(args.seed)
        sets.append((f"random reference (dim {dim})", unit_random(n, dim, rng)))
        sets.append((f"clustered reference (dim {dim}, 50 centres)",
                     unit_clustered(n, dim, rng, unit_random(50, dim, rng))))
        rows = [structure(name, v.astype(np.float32), args.seed) for name, v in sets]
    print(f"machine: {machine()}")
    print(f"{n} clips (synthetic, 6 motion classes), tiny seeded Wan; recall@10 of stored vectors as queries, "
          f"themselves left out, against exact search")
    print()
    print("| vectors | n | dim | nlist | recall@10 by nprobe | nprobe reaching 0.95 | hnsw (held-out queries) | "
          "contrast (sd) | random-pair cos | top-10 cos | effective dim | auto here | auto at 1 M |")
    print("|---|---:|---:|---:|---|---|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        curve = ", ".join(f"{p}: {v:.2f}" for p, v in r["curve"].items())
        print(f"| {r['name']} | {r['n']} | {r['dim']} | {r['nlist']} | {curve} | {r['reach']} | {r['hnsw']} | "
              f"{r['contrast']:.1f} | {r['pair_mean']:.3f} | {r['top10']:.3f} | {r['pr']:.1f} | {r['auto_here']} | "
              f"{r['auto_1m']} |")


if __name__ == "__main__":
    main()
