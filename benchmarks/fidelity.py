"""How faithful the gradient engine's two shortcuts are, on real gradients of the tiny Wan fine-tuned in code.

    python benchmarks/fidelity.py [--clips 48] [--queries 12] [--steps 300] [--seeds 0 1 2] [--quick]
                                  [--json fidelity.json]

Setup (seeded by ``--data-seed``): ``--clips`` synthetic training clips and ``--queries`` held-out query clips
(``synthetic.generate_dataset``, as the demo makes them); the tiny Wan fine-tuned ``--steps`` steps on the
training clips (``finetune.finetune``). Every clip is decoded, masked (the default flow mask) and VAE-encoded
once; then each estimator's gradients are taken with ``GradientEngine`` under the identity projection: the
EXACT gradient over all transformer parameters, unit-normalized. A check confirms that projecting an exact
gradient afterwards with ``FastfoodProjector(512, seed 0)`` gives the engine's own streamed vector (so the
projected numbers below are the engine's vectors).

1. Projection fidelity by dimension (the Fastfood shortcut). Exact gradients of the training clips under the
   default estimator (one sample, t = 751). For every pair i < j: the cosine of the exact gradients against the
   cosine of their projections, Fastfood at each dim x ``--seeds`` projection seeds; and a dense Gaussian
   projection (``torch.randn(num_params, d) / sqrt(d)``, seeded; d <= ``--dense-dim``), the gold standard
   Fastfood stands in for. Per row: Spearman and Pearson of projected vs exact pairwise cosines, mean |cosine
   error|, each as mean ± sd over projection seeds, and 1/sqrt(d), the Johnson-Lindenstrauss scale of the error
   (for unit vectors at cosine c a Gaussian projection's error sd is about (1 - c²)/sqrt(d), so below it when
   the cosines are far from 0). How high the Spearman can be also depends on how spread the exact cosines
   are (printed above the table): the same error hides a narrow spread. Reference: the paper (Motive, arXiv
   2601.08828) reports Spearman 0.747 at 512 dims against full-gradient rankings.
2. Single sample vs a multi-timestep reference (the estimator shortcut). Each query is scored against every
   training clip (cosine of unit vectors, as the index does) under two estimators; per query: the overlap of
   the two top-k lists (|top-k A ∩ top-k B| / k) and the Spearman correlation of the two score vectors over
   all training clips; mean ± sd over queries. Headline: the default single-sample estimator against the
   ``--ref-samples``-pair average (timesteps at the centres of equal strata of [0, 1000), shared noise), both
   projected with the default Fastfood 512, and the same on exact gradients. Context rows: one sample at
   t = 500, one sample with another noise draw (against the reference and against the default single
   sample), the reference with another noise draw (the reference's own noise floor), and Fastfood 512 against exact under the same estimator (the projection alone). Chance
   top-k overlap is k / clips. Reference: the paper reports 66% agreement of the single-sample estimator with
   a multi-timestep one.

``--quick``: 12 clips, 3 queries, 10 steps, dims 128/512/2048, 2 projection seeds (the dense baseline on the
first only), a 4-sample reference, k = 4: a smoke run in well under a minute, for tests (its numbers are too
few to read anything into). ``--json PATH`` also writes every number (per seed, per query) to PATH.

Cost: about 3 minutes on 2 CPU cores at the defaults (most of it fine-tuning, preparing the clips and the two
10-sample references); the exact gradients of one estimator are held in memory at a time (clips x 947 k
floats, about 230 MB at the defaults).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, matmul_anchor_ms  # noqa: E402

from motive_index.backbones import build_tiny  # noqa: E402
from motive_index.config import EstimatorConfig, ProjectionConfig  # noqa: E402
from motive_index.finetune import finetune  # noqa: E402
from motive_index.gradients import GradientEngine, PreparedClip  # noqa: E402
from motive_index.manifest import read_manifest  # noqa: E402
from motive_index.projection import FastfoodProjector  # noqa: E402
from motive_index.synthetic import generate_dataset  # noqa: E402

PAPER_SPEARMAN_512 = 0.747  # Motive (arXiv 2601.08828): Fastfood 512 vs full-gradient ranking
PAPER_AGREEMENT = 0.66      # Motive: single-sample vs multi-timestep estimator agreement
DIMS = (128, 256, 512, 1024, 2048, 4096)
QUICK_DIMS = (128, 512, 2048)
DEFAULT_PROJ = ProjectionConfig()  # fastfood, dim 512, seed 0, the engine's block size


# ------------------------------------------------------------------------------------------------ statistics


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of x, ties given their average rank."""
    x = np.asarray(x, np.float64)
    r = np.empty(len(x))
    r[np.argsort(x, kind="mergesort")] = np.arange(len(x))
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inv, weights=r) / counts)[inv]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return pearson(ranks(a), ranks(b))


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """|top-k of a ∩ top-k of b| / k (highest scores)."""
    return len(set(np.argsort(-a)[:k].tolist()) & set(np.argsort(-b)[:k].tolist())) / k


def mean_sd(xs) -> tuple[float, float]:
    xs = [float(x) for x in xs]
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def pm(xs) -> str:
    m, s = mean_sd(xs)
    return f"{m:.3f} ± {s:.3f}"


def pair_cosines(v: torch.Tensor) -> np.ndarray:
    """Cosines of all pairs i < j of the rows of v (N, D) -> (N(N-1)/2,)."""
    v = v / v.norm(dim=1, keepdim=True)
    iu = torch.triu_indices(v.shape[0], v.shape[0], 1)
    return (v @ v.T)[iu[0], iu[1]].numpy().astype(np.float64)


# ------------------------------------------------------------------------------------------------ gradients


def setup(tmp: Path, args, log) -> tuple:
    """Synthesize, fine-tune, and prepare every clip once. Returns (backbone, train, queries, info)."""
    t = time.perf_counter()
    train_clips = read_manifest(generate_dataset(tmp / "train", args.clips, args.data_seed, prefix="clip"))
    query_clips = read_manifest(generate_dataset(tmp / "queries", args.queries, args.data_seed + 1000,
                                                 prefix="query"))
    backbone = build_tiny(args.data_seed)
    rep = finetune(backbone, train_clips, steps=args.steps, seed=args.data_seed)
    log(f"[setup] {args.clips} + {args.queries} clips, fine-tuned {args.steps} steps, loss {rep.first_loss:.3f} "
        f"-> {rep.last_loss:.3f} ({time.perf_counter() - t:.1f}s)")
    t = time.perf_counter()
    engine = GradientEngine(backbone)  # prepare() depends on the backbone and the mask only, not the estimator
    prep = lambda clips: [engine.prepare(c.path, c.caption, c.start_sec, c.end_sec, name=c.clip_id)
                          for c in clips]
    train, queries = prep(train_clips), prep(query_clips)
    log(f"[prepare] decode + flow mask + VAE for {len(train) + len(queries)} clips ({time.perf_counter() - t:.1f}s)")
    info = {"num_params": engine.num_params, "finetune_loss": [rep.first_loss, rep.last_loss],
            "engine": engine}
    return backbone, train, queries, info


def exact_vectors(backbone, clips: list[PreparedClip], estimator: EstimatorConfig, num_params: int) -> torch.Tensor:
    """Unit exact gradients (N, num_params) float32 under ``estimator`` (identity projection)."""
    eng = GradientEngine(backbone, estimator=estimator,
                         projection=ProjectionConfig(kind="identity", dim=num_params))
    return torch.from_numpy(np.stack([eng.vector(c) for c in clips]))


def fastfood(x: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Each row of x (N, P) through the engine's Fastfood at (dim, seed), unit-normalized: (N, dim)."""
    proj = FastfoodProjector(dim, seed, DEFAULT_PROJ.block_size)
    y = torch.stack([proj.project(row) for row in x])
    return y / y.norm(dim=1, keepdim=True)


def dense_gaussian(x: torch.Tensor, dim: int, seed: int, chunk: int = 2**16) -> torch.Tensor:
    """x (N, P) @ G / sqrt(dim), G (P, dim) iid N(0, 1) drawn from a generator seeded with ``seed``, in row
    chunks so G is never held whole. Its first d columns are a d-dim Gaussian projection too."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = torch.zeros(x.shape[0], dim, dtype=torch.float64)
    for start in range(0, x.shape[1], chunk):
        g = torch.randn(min(chunk, x.shape[1] - start), dim, generator=gen)  # (chunk, dim)
        out += (x[:, start:start + chunk] @ g).double()
    return (out / math.sqrt(dim)).float()


# ------------------------------------------------------------------------------------------------ part 1


def projection_fidelity(x: torch.Tensor, dims, seeds, dense_dim: int, dense_seeds, log) -> tuple[dict, list[dict]]:
    """Pairwise cosines of the rows of x (exact, unit) against their projections, per dim and kind."""
    exact = pair_cosines(x)

    def scores(cos: np.ndarray) -> dict:
        return {"spearman": spearman(exact, cos), "pearson": pearson(exact, cos),
                "mean_abs_err": float(np.mean(np.abs(cos - exact)))}

    rows = []
    t = time.perf_counter()
    for d in dims:
        per = [scores(pair_cosines(fastfood(x, d, s))) for s in seeds]
        rows.append({"dim": d, "kind": "fastfood", "seeds": list(seeds), "per_seed": per})
    log(f"[part 1] fastfood at {len(dims)} dims x {len(seeds)} seeds ({time.perf_counter() - t:.1f}s)")
    t = time.perf_counter()
    dense_dims = [d for d in dims if d <= dense_dim]
    if dense_dim not in dense_dims:
        dense_dims.append(dense_dim)
    dense = {s: dense_gaussian(x, dense_dim, s) for s in dense_seeds}
    for d in dense_dims:
        per = [scores(pair_cosines(dense[s][:, :d])) for s in dense_seeds]
        rows.append({"dim": d, "kind": "dense gaussian", "seeds": list(dense_seeds), "per_seed": per})
    log(f"[part 1] dense Gaussian {dense_dim} x {len(dense_seeds)} seeds ({time.perf_counter() - t:.1f}s)")
    rows.sort(key=lambda r: (r["dim"], r["kind"] != "fastfood"))
    for r in rows:
        for m in ("spearman", "pearson", "mean_abs_err"):
            r[m] = mean_sd(p[m] for p in r["per_seed"])
        r["jl"] = 1 / math.sqrt(r["dim"])
    m, s = mean_sd(exact)
    return {"pairs": len(exact), "mean": m, "sd": s, "min": float(exact.min()), "max": float(exact.max())}, rows


# ------------------------------------------------------------------------------------------------ part 2


def describe(e: EstimatorConfig) -> str:
    if e.samples == 1:
        return f"1 sample (t={e.timestep}, ε seed {e.noise_seed})"
    ts = e.timesteps()
    return f"{e.samples} samples (t={ts[0]}..{ts[-1]}, ε seed {e.noise_seed})"


def estimator_fidelity(backbone, train, queries, num_params: int, ref_samples: int, k: int, log):
    """Per-query top-k overlap and Spearman of scores between estimators. Returns (rows, single's exact
    training gradients for part 1)."""
    estimators = {"single": EstimatorConfig(), "t500": EstimatorConfig(timestep=500),
                  "seed1": EstimatorConfig(noise_seed=1), "ref": EstimatorConfig(samples=ref_samples),
                  "ref_seed1": EstimatorConfig(samples=ref_samples, noise_seed=1)}
    scores: dict[tuple[str, str], np.ndarray] = {}  # (estimator, "exact"|"fastfood 512") -> (Q, N) cosines
    single_train = None
    for key, est in estimators.items():
        t = time.perf_counter()
        xt = exact_vectors(backbone, train, est, num_params)
        xq = exact_vectors(backbone, queries, est, num_params)
        scores[(key, "exact")] = (xq @ xt.T).numpy()
        pt, pq = fastfood(xt, DEFAULT_PROJ.dim, DEFAULT_PROJ.seed), fastfood(xq, DEFAULT_PROJ.dim, DEFAULT_PROJ.seed)
        scores[(key, "fastfood 512")] = (pq @ pt.T).numpy()
        if key == "single":
            single_train = xt
        log(f"[part 2] {describe(est)}: {len(train) + len(queries)} exact gradients ({time.perf_counter() - t:.1f}s)")

    ff, ex = "fastfood 512", "exact"
    comparisons = [  # (A, B): each (estimator, vectors)
        (("single", ff), ("ref", ff)),
        (("single", ex), ("ref", ex)),
        (("t500", ff), ("ref", ff)),
        (("seed1", ff), ("ref", ff)),
        (("seed1", ff), ("single", ff)),
        (("ref_seed1", ff), ("ref", ff)),
        (("single", ff), ("single", ex)),
    ]
    rows = []
    for a, b in comparisons:
        sa, sb = scores[a], scores[b]
        overlap = [topk_overlap(sa[i], sb[i], k) for i in range(len(sa))]
        rho = [spearman(sa[i], sb[i]) for i in range(len(sa))]
        rows.append({"a": f"{describe(estimators[a[0]])}, {a[1]}", "b": f"{describe(estimators[b[0]])}, {b[1]}",
                     "overlap_per_query": overlap, "spearman_per_query": rho,
                     "overlap": mean_sd(overlap), "spearman": mean_sd(rho)})
    return rows, single_train


# ------------------------------------------------------------------------------------------------ main


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=None, help="training clips (default 48; --quick 12)")
    ap.add_argument("--queries", type=int, default=None, help="held-out query clips (default 12; --quick 3)")
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default 300; --quick 10)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="projection seeds for part 1 (default 0 1 2; --quick 0 1)")
    ap.add_argument("--dims", type=int, nargs="+", default=None,
                    help=f"Fastfood dims for part 1 (default {' '.join(map(str, DIMS))}; --quick "
                         f"{' '.join(map(str, QUICK_DIMS))})")
    ap.add_argument("--dense-dim", type=int, default=512,
                    help="dense Gaussian baseline at every dim up to this one (default 512)")
    ap.add_argument("--ref-samples", type=int, default=None,
                    help="(t, ε) pairs of the part 2 reference (default 10; --quick 4)")
    ap.add_argument("-k", type=int, default=None, help="top-k for part 2 (default 10; --quick 4)")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the clips, the tiny model and fine-tuning")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in well under a minute")
    ap.add_argument("--json", type=Path, default=None, help="also write every number to this JSON file")
    args = ap.parse_args(argv)
    q = args.quick
    args.clips = args.clips or (12 if q else 48)
    args.queries = args.queries or (3 if q else 12)
    args.steps = args.steps or (10 if q else 300)
    args.seeds = args.seeds or ([0, 1] if q else [0, 1, 2])
    args.dims = sorted(set(args.dims or (QUICK_DIMS if q else DIMS)))
    args.k = args.k or (4 if q else 10)
    args.ref_samples = args.ref_samples or (4 if q else 10)
    if args.clips < 3 or args.queries < 1 or not 1 <= args.k <= args.clips:
        ap.error(f"need --clips >= 3, --queries >= 1 and 1 <= -k <= --clips (got {args.clips}, {args.queries}, "
                 f"{args.k})")
    dense_seeds = args.seeds[:1] if q else args.seeds
    log = lambda s: print(s, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        backbone, train, queries, info = setup(Path(tmp), args, log)
    num_params = info["num_params"]
    # The engine's own streamed Fastfood 512 vector of one clip vs projecting its exact gradient afterwards.
    engine_vec = torch.from_numpy(info.pop("engine").vector(train[0]))
    exact0 = exact_vectors(backbone, train[:1], EstimatorConfig(), num_params)
    check = float((fastfood(exact0, DEFAULT_PROJ.dim, DEFAULT_PROJ.seed)[0] - engine_vec).abs().max())
    if check > 1e-4:
        raise RuntimeError(f"projecting the exact gradient differs from the engine's vector by {check:.2e}")

    part2, single_train = estimator_fidelity(backbone, train, queries, num_params, args.ref_samples, args.k, log)
    spread, part1 = projection_fidelity(single_train, args.dims, args.seeds, args.dense_dim, dense_seeds, log)
    wall = time.perf_counter() - t0

    anchor = matmul_anchor_ms()
    print(f"\nmachine: {machine()}; 512x512 matmul {anchor:.2f} ms")
    print(f"benchmarks/fidelity.py{' --quick' if q else ''}: wall {wall:.0f} s; tiny Wan ({num_params:,} params) "
          f"fine-tuned {args.steps} steps on {args.clips} synthetic clips (loss {info['finetune_loss'][0]:.3f} -> "
          f"{info['finetune_loss'][1]:.3f}), data seed {args.data_seed}; default flow mask")
    print(f"check: engine's streamed Fastfood 512 vector vs Fastfood 512 of the exact gradient, max |diff| "
          f"{check:.1e}\n")

    print(f"### 1. Projection fidelity: pairwise cosines of {args.clips} training clips' exact gradients "
          f"(1 sample, t=751) vs projected, mean ± sd over projection seeds\n")
    print(f"{spread['pairs']} pairs; exact cosines {spread['mean']:.3f} ± {spread['sd']:.3f} "
          f"(min {spread['min']:.3f}, max {spread['max']:.3f}); Fastfood seeds {args.seeds}, dense seeds "
          f"{dense_seeds}\n")
    print("| dim | projection | Spearman | Pearson | mean abs cos error | 1/sqrt(dim) |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in part1:
        print(f"| {r['dim']} | {r['kind']} | {pm(p['spearman'] for p in r['per_seed'])} | "
              f"{pm(p['pearson'] for p in r['per_seed'])} | {pm(p['mean_abs_err'] for p in r['per_seed'])} | "
              f"{r['jl']:.3f} |")
    print(f"\nreference: the paper reports Spearman {PAPER_SPEARMAN_512} at 512 (Fastfood vs full gradient)")

    print(f"\n### 2. Estimator fidelity: {args.queries} held-out queries scored against {args.clips} training "
          f"clips, A vs B, mean ± sd over queries\n")
    print(f"top-{args.k} overlap = |top-{args.k} A ∩ top-{args.k} B| / {args.k} (chance {args.k / args.clips:.3f}); "
          f"Spearman of the {args.clips} scores per query\n")
    print(f"| A | B | top-{args.k} overlap | Spearman of scores |")
    print("|---|---|---:|---:|")
    for r in part2:
        print(f"| {r['a']} | {r['b']} | {pm(r['overlap_per_query'])} | {pm(r['spearman_per_query'])} |")
    print(f"\nreference: the paper reports {PAPER_AGREEMENT:.0%} agreement of the single-sample estimator with a "
          f"multi-timestep one")
    print(f"\ntotal wall time {wall:.1f} s")

    result = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "dense_seeds": dense_seeds, "machine": machine(), "matmul_anchor_ms": anchor, "wall_s": wall,
              "num_params": num_params, "finetune_loss": info["finetune_loss"], "engine_check_max_abs": check,
              "paper": {"spearman_512": PAPER_SPEARMAN_512, "agreement": PAPER_AGREEMENT},
              "projection": {"exact_cosines": spread, "rows": part1}, "estimator": {"k": args.k, "rows": part2}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
