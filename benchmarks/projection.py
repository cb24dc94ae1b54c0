"""Projection throughput: the streamed, folded Fastfood against memory bandwidth and a dense Gaussian projection.

    python benchmarks/projection.py [--dim 512] [--quick] [--device cpu|cuda]

What it measures, all in one run on one machine (so the ratios hold even when the machine is noisy):

- **bandwidth**: a read of a large float32 buffer (``sum``) and a copy, in GB/s. A projection that reads every
  gradient entry once can go at most ``read GB/s / 4`` parameters per second: the "bound" column.
- **fastfood (streamed)**: what the gradient engine does per clip: feed a gradient of N parameters in pieces the
  size of a transformer's weight matrices into an accumulator (a multiply-add per parameter into one folded
  block), then the one Fastfood transform of the fold. Parameters per second, over the whole thing.
- **final transform**: the fixed cost per clip (the Fastfood of the 2^20 fold), included above.
- **radix-2 FWHT**: one plain butterfly Walsh–Hadamard transform of the vector (log2 N passes over memory):
  what a classic Fastfood pays per block, for reference (the issue: ~120 M/s at 2^22, 55 M/s at 2^24).
- **dense Gaussian**: x @ R with R (L x D') a Gaussian matrix already in memory (so only the matmul is timed,
  the best case for a dense projection; regenerating R per block would be slower still), over the same N.
- **accuracy**: the sd of the cosine error of the folded Fastfood and of a dense Gaussian matrix on the same
  heavy-tailed vector pairs (64 blocks, so the folding is in play), beside the JL reference (1 - c²)/sqrt(D').
- **paper shape**: Wan2.1-1.3B's 1.42 B transformer parameters streamed (a 2^24 buffer fed 85 times at
  successive offsets), seconds per clip, and its share of the paper's 54 s forward+backward per clip (A100).

Times are medians of repeats. The CPU numbers in the README and the issue notes come from this script.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

PAPER_PARAMS = 1_418_996_800  # Wan2.1-T2V-1.3B transformer (diffusers config), all parameters
PAPER_FWD_BWD_S = 54.0        # the paper's gradient time per clip on one A100


def _median_s(fn, reps: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def _radix2_fwht(x):
    """The plain radix-2 butterfly transform (not what the package uses): the reference point."""
    import torch

    n = x.shape[-1]
    y = x.reshape(1, n)
    h = 1
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return y.reshape(n) / math.sqrt(n)


def _bandwidth(n: int, dev, reps: int, sync) -> tuple[float, float]:
    """(read GB/s, copy GB/s) over an n-entry float32 buffer."""
    import torch

    big = torch.randn(n, device=dev)
    read = n * 4 / _median_s(lambda: big.sum(), reps, sync) / 1e9
    copy = 2 * n * 4 / _median_s(lambda: big.clone(), reps, sync) / 1e9
    return read, copy


def _dense(x, dim: int):
    """x @ R, chunk by chunk, with R (one 2^18 chunk's Gaussian matrix, 512 MiB at D'=512) already in memory."""
    import torch

    chunk = min(x.numel(), 2**18)
    R = torch.randn(chunk, dim, device=x.device) / math.sqrt(dim)
    return lambda: [x[o:o + chunk] @ R for o in range(0, x.numel(), chunk)]


def _accuracy(dim: int, pairs: int = 40, n: int = 2**20, block: int = 2**14) -> tuple[float, float, float]:
    """Cosine error (sd over pairs with true cosine 0.6) of the folded Fastfood (with 64 blocks, so the folding
    is exercised) and of a dense Gaussian projection, on the same vectors; and the JL reference (1 - c²)/sqrt(D')."""
    import torch

    from motive_index.projection import FastfoodProjector

    g = torch.Generator().manual_seed(0)
    a = torch.randn(pairs, n, generator=g)
    b = 0.6 * a + 0.8 * torch.randn(pairs, n, generator=g)
    # heavy-tailed, like gradients: a few entries carry much of the norm
    scale = torch.exp(2 * torch.randn(n, generator=g))
    a, b = a * scale, b * scale
    exact = torch.nn.functional.cosine_similarity(a, b, dim=1)
    ff = FastfoodProjector(dim, seed=0, block_size=block)
    pa, pb = torch.stack([ff.project(x) for x in a]), torch.stack([ff.project(x) for x in b])
    err_ff = torch.nn.functional.cosine_similarity(pa, pb, dim=1) - exact
    R = torch.randn(n, dim, generator=g) / math.sqrt(dim)
    err_dense = torch.nn.functional.cosine_similarity(a @ R, b @ R, dim=1) - exact
    return float(err_ff.std()), float(err_dense.std()), float((1 - exact.pow(2).mean()) / math.sqrt(dim))


def _pieces(n: int, piece: int):
    """(offset, length) of weight-matrix-sized pieces covering n entries."""
    return [(o, min(piece, n - o)) for o in range(0, n, piece)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2^20 and 2^22 only, no paper shape (seconds)")
    args = ap.parse_args()

    import torch

    from motive_index.projection import FastfoodProjector, _core

    dev = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    sizes = [2**20, 2**22] if args.quick else [2**20, 2**22, 2**24]
    piece = 1536 * 1536  # a Wan2.1-1.3B attention matrix; pieces are what backward hands over
    proj = FastfoodProjector(args.dim)
    t = time.perf_counter()
    _core(proj.block_size, proj.dim, proj.seed).on(dev)
    setup_s = time.perf_counter() - t

    read_gbs, copy_gbs = _bandwidth(2**28 if not args.quick else 2**26, dev, args.reps, sync)  # 1 GiB: no cache
    bound = read_gbs * 1e9 / 4

    fold_only = torch.zeros(proj.block_size, device=dev)
    final_s = _median_s(lambda: _core(proj.block_size, proj.dim, proj.seed).apply(fold_only), args.reps, sync)

    rows = []
    for n in sizes:
        x = torch.randn(n, device=dev)

        def streamed():
            acc = proj.accumulator(dev)
            for o, ln in _pieces(n, piece):
                acc.feed_at(o, x[o:o + ln])
            return acc.result()

        ff = n / _median_s(streamed, args.reps, sync)
        r2 = n / _median_s(lambda: _radix2_fwht(x), args.reps, sync)
        dense = n / _median_s(_dense(x, args.dim), max(1, args.reps // 2), sync)
        rows.append((n, ff, r2, dense))

    acc_ff, acc_dense, acc_jl = _accuracy(args.dim, pairs=10 if args.quick else 40)

    paper_s = None
    if not args.quick:
        chunk = torch.randn(2**24, device=dev)

        def paper():
            acc = proj.accumulator(dev)
            off = 0
            while off < PAPER_PARAMS:
                ln = min(chunk.numel(), PAPER_PARAMS - off)
                for o, pl in _pieces(ln, piece):
                    acc.feed_at(off + o, chunk[o:o + pl])
                off += ln
            return acc.result()

        paper_s = _median_s(paper, max(1, args.reps // 2), sync)

    print(f"\nmachine: {machine()}; device {dev}")
    print(f"memory: read {read_gbs:.1f} GB/s, copy {copy_gbs:.1f} GB/s -> a one-read bound of "
          f"{bound / 1e6:.0f} M params/s")
    print(f"Fastfood dim {proj.dim}, fold {proj.block_size} (2^{proj.block_size.bit_length() - 1}); "
          f"one-time setup {setup_s * 1e3:.0f} ms; final transform per clip {final_s * 1e3:.1f} ms\n")
    print("| N params | fastfood streamed M/s | / read bound | radix-2 FWHT M/s | dense Gaussian M/s | "
          "fastfood / dense |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, ff, r2, dense in rows:
        print(f"| 2^{n.bit_length() - 1} | {ff / 1e6:,.0f} | {ff / bound:.2f} | {r2 / 1e6:,.0f} | "
              f"{dense / 1e6:,.1f} | {ff / dense:,.0f}x |")
    print(f"\naccuracy at dim {args.dim} (heavy-tailed vectors of 2^20 entries, cosine 0.6, in 64 blocks of 2^14): "
          f"sd of the cosine error: fastfood {acc_ff:.4f}, dense Gaussian {acc_dense:.4f}, JL reference "
          f"{acc_jl:.4f}")
    if paper_s is not None:
        print(f"\npaper shape: {PAPER_PARAMS / 1e9:.2f} B params streamed in {paper_s:.2f} s per clip "
              f"({PAPER_PARAMS / paper_s / 1e6:,.0f} M/s) = {paper_s / PAPER_FWD_BWD_S:.1%} of the paper's "
              f"{PAPER_FWD_BWD_S:.0f} s forward+backward (the issue's bar: under 10%)")


if __name__ == "__main__":
    main()
