"""Which change to the tiny VAE buys reconstruction fastest: variants trained for the same wall time, scored alike.

    python benchmarks/vae_sweep.py [--seconds 150] [--variants shipped continue base z16 dec32 enc16 s4] [--clips 3]

Each variant trains ``--seconds`` on these CPUs from a fresh seeded AutoencoderKLWan of ``tiny_vae.TINY_VAE_CONFIG``
with one change (``base``: none; ``z16``: 16 latent channels, the layout shipped before the 48-channel one;
``dec32``: a decoder twice as wide; ``enc16``: an encoder twice as wide; ``s4``: no 2x2 patchify, so 4x spatial
compression, a 16x16 latent grid at 64 px), or from the shipped weights (``continue``, at a quarter of the
learning rate), on the training script's loss and data (a ``--pool`` of 9-frame training clips, batch 6, AdamW, a
short warm-up, no decay); ``shipped`` is the shipped VAE as it is, not trained further. Then every variant is
scored on the same held-out clips (``tiny_vae.held_out_sets(--clips)``): PSNR of the reconstruction per set, and
encode time of a 17x64x64 clip (what a build pays; the decoder only runs to generate). Equal wall time, not equal
steps: a variant that costs more per step must learn more per step to win. Early training only: a ranking after
minutes, not where each variant would end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

VARIANTS = {"shipped": None, "continue": None, "base": {}, "z16": {"z_dim": 16}, "dec32": {"decoder_base_dim": 32},
            "enc16": {"base_dim": 16}, "s4": {"patch_size": 1, "in_channels": 3, "out_channels": 3}}


def _vae(name: str, seed: int):
    import torch
    from diffusers import AutoencoderKLWan

    from motive_index.backbones import tiny_vae as tv

    if name in ("shipped", "continue"):
        return tv.load_tiny_vae()
    cfg = {**tv.TINY_VAE_CONFIG, **VARIANTS[name]}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return AutoencoderKLWan(**cfg, latents_mean=[0.0] * cfg["z_dim"], latents_std=[1.0] * cfg["z_dim"])


def train(vae, data: np.ndarray, seconds: float, lr: float, seed: int) -> int:
    """Train in place for ``seconds`` (the training script's loss); returns the steps taken."""
    import torch

    from motive_index.backbones import tiny_vae as tv

    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=1e-4)
    gen = np.random.default_rng(seed)
    t0, step = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 20)
        tv.train_step(vae, opt, data[gen.integers(0, len(data), 6)], 1e-6, seed * 10**6 + step)
        step += 1
    vae.eval()
    return step


def encode_ms(vae) -> float:
    import torch

    x = torch.zeros(1, 3, 17, 64, 64)
    with torch.no_grad():
        vae.encode(x)
        t = time.perf_counter()
        for _ in range(3):
            vae.encode(x)
    return (time.perf_counter() - t) / 3 * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=150.0, help="training wall time per variant")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--clips", type=int, default=3, help="held-out clips per set")
    ap.add_argument("--pool", type=int, default=400, help="training clips generated up front")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()

    import torch

    from motive_index.backbones import tiny_vae as tv

    torch.set_num_threads(2)
    data = tv.training_pool(args.pool, 9, args.seed)
    sets = tv.held_out_sets(args.clips)
    rows = []
    for name in args.variants:
        vae = _vae(name, args.seed)
        steps = 0 if name == "shipped" else train(vae, data, args.seconds,
                                                  args.lr / 4 if name == "continue" else args.lr, args.seed)
        row = {"variant": name, "steps": steps, "params": sum(p.numel() for p in vae.parameters()),
               "encode_ms": encode_ms(vae)}
        for k, clips in sets.items():
            recon, _ = tv.reconstruct(vae, clips)
            row[k] = float(np.mean([tv.psnr(a, b) for a, b in zip(clips, recon)]))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    print(f"machine: {machine()}")
    print(f"{args.seconds:.0f} s of training per variant, {args.clips} held-out clips per set; PSNR dB\n")
    names = list(sets)
    print("| variant | steps | s/step | params | encode ms | " + " | ".join(names) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(names))
    for r in rows:
        per = f"{args.seconds / r['steps']:.2f}" if r["steps"] else "-"
        print(f"| {r['variant']} | {r['steps']} | {per} | {r['params']:,} | {r['encode_ms']:.0f} | "
              + " | ".join(f"{r[k]:.2f}" for k in names) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
