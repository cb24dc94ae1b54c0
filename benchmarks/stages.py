"""Per-stage cost of embedding one clip on the tiny Wan model (CPU), as a table.

    python benchmarks/stages.py [--clips 24] [--dim 512] [--mask flow]

Stages: decode (PyAV + standardize), flow (DIS + mask + latent grid), vae (encode), text (cached after the
first use of a caption), fwd_bwd (transformer forward + backward), projection (feeding the streamed gradient
into the Fastfood fold during backward, plus the final transform), store (LanceDB write, per clip), search
(FAISS, one query). Times are medians over clips; a 512x512 matmul
measured in the same run is the anchor for comparing machines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, matmul_anchor_ms  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--mask", default="flow", choices=["flow", "none"])
    args = ap.parse_args()

    from motive_index.api import MotiveIndex
    from motive_index.backbones import build_tiny
    from motive_index.manifest import read_manifest
    from motive_index.synthetic import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = read_manifest(generate_dataset(tmp / "data", args.clips, seed=0))
        model = build_tiny(0).save_pretrained(tmp / "model")
        t = time.perf_counter()
        idx, _ = MotiveIndex.build([], model, tmp / "index", mask=args.mask, dim=args.dim)  # load the model
        load = time.perf_counter() - t
        report = idx.add(clips)
        wall = report.seconds
        per = {s: v / report.added * 1000 for s, v in report.stage_seconds.items()}
        q = [idx.query(c.path, prompt=c.caption, k=10).timings for c in clips[:8]]
        per_query = {s: statistics.median(t[s] for t in q) * 1000 for s in q[0]}
    anchor = matmul_anchor_ms()
    total = sum(per.values())
    print(f"\nmachine: {machine()}; 512x512 matmul {anchor:.2f} ms")
    print(f"tiny Wan, {args.clips} clips, mask {args.mask}, dim {args.dim}; model load {load:.1f}s; build wall "
          f"{wall:.1f}s = {wall / args.clips * 1000:.0f} ms/clip against {total:.0f} ms/clip of stages in sequence "
          f"(decode and flow of the next clip overlap the model's work on this one)\n")
    print("| stage | build ms/clip (mean) | share | query ms (median of 8) |")
    print("|---|---:|---:|---:|")
    for s in ["decode", "flow", "vae", "text", "fwd_bwd", "projection", "store", "search"]:
        b = per.get(s)
        print(f"| {s} | {b:.1f} | {b / total:.0%} |" if b is not None else f"| {s} | - | - |", end="")
        print(f" {per_query[s]:.1f} |" if s in per_query else " - |")
    print(f"| total | {total:.1f} | 100% | {per_query['total']:.1f} |")


if __name__ == "__main__":
    main()
