"""Train the tiny Wan preset's VAE and write it where the package loads it from (seeded; the defaults: the shipped run).

    python tools/train_tiny_vae.py [--out motive_index/backbones/tiny_vae] [--steps 6000] [--pool 2400] [--seed 0]
    python tools/train_tiny_vae.py --init motive_index/backbones/tiny_vae --out DIR --steps 3000 --lr 5e-4

Data: a pool of seeded 9-frame 64x64 clips (``tiny_vae.vae_clip``): synthetic shapes (45%), camera pans over the
training photo textures (45%) and frozen clips (10%), with random horizontal flips. The AutoencoderKLWan of
``tiny_vae.TINY_VAE_CONFIG`` is trained on L1 + MSE of its reconstruction (from a posterior sample) plus a
small KL term, AdamW with a cosine schedule (``--init DIR``: start from the weights a run wrote there instead of a
fresh seeded VAE, to train further; ``train.json`` then records the run it continued). Then the latents'
per-channel mean and std are measured on 17-frame training clips and written into its config (as real Wan ships
measured ones), and it is scored on held-out clips (17 frames, other seeds; pans over ``HELD_OUT_TEXTURES``,
never trained on): PSNR, the optical flow's correlation with the input's, and latent motion of real against frozen
clips. ``train.json`` beside the weights records the arguments, the training curve (loss and train PSNR every 50
steps), the scores and the weights' sha256.

Reproducible on one machine and torch version (seeded data, initialisation and batches); other thread counts or
CPUs can round differently, so the shipped file's sha256 is what identifies the weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from motive_index.backbones import tiny_vae as tv  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=tv.TINY_VAE_DIR)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=6)
    ap.add_argument("--frames", type=int, default=9, help="training clip length (1 + 4k)")
    ap.add_argument("--pool", type=int, default=2400, help="training clips generated up front")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--kl", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", type=Path, default=None, help="continue from the VAE a run wrote to this folder")
    args = ap.parse_args()

    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    data = tv.training_pool(args.pool, args.frames, args.seed)                     # (N, T, H, W, 3) uint8
    sets = tv.held_out_sets()
    print(f"data: {len(data)} training clips of {args.frames} frames in {time.perf_counter() - t0:.0f}s", flush=True)

    init = None
    if args.init is not None:
        vae = tv.load_tiny_vae(args.init)
        prev = tv.training_record(args.init)
        init = {"folder": str(args.init), "weights_sha256": prev.get("weights_sha256"),
                "record": {k: v for k, v in prev.items() if k != "curve"}}
        print(f"continuing from {args.init} ({prev.get('args', {}).get('steps', '?')} steps recorded)", flush=True)
    else:
        vae = tv.new_tiny_vae(args.seed)
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=1e-4)
    warm = max(1, args.steps // 30)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    gen = np.random.default_rng(args.seed)
    t1 = time.perf_counter()
    curve = []
    for step in range(args.steps):
        idx = gen.integers(0, len(data), args.batch)
        batch = data[idx]
        flip = gen.random(args.batch) < 0.5
        batch[flip] = batch[flip][:, :, :, ::-1]
        loss, db = tv.train_step(vae, opt, batch, args.kl, args.seed * 10**6 + step)
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            curve.append({"step": step, "loss": round(loss, 5), "train_psnr_db": round(db, 2),
                          "seconds": round(time.perf_counter() - t1, 1)})
            print(f"step {step:4d} loss {loss:.4f} train psnr {db:.1f} dB "
                  f"({time.perf_counter() - t1:.0f}s)", flush=True)
    train_s = time.perf_counter() - t1
    vae.eval()

    # the latents' scaling, measured on 17-frame training clips (as Wan ships measured latents_mean/std)
    calib = np.stack([tv.vae_clip(k, args.seed * 10**5 + 50_000 + i) for i, k in enumerate(["shapes", "pan"] * 12)])
    _, z = tv.reconstruct(vae, calib)
    mean = z.mean(dim=(0, 2, 3, 4))
    std = z.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    vae.register_to_config(latents_mean=[float(v) for v in mean], latents_std=[float(v) for v in std])

    scores = tv.score(vae, sets)
    args.out.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(args.out)
    weights = args.out / "diffusion_pytorch_model.safetensors"
    record = {"script": "tools/train_tiny_vae.py", "args": {k: (str(v) if isinstance(v, Path) else v)
                                                          for k, v in vars(args).items() if k != "out"},
              "torch": torch.__version__, "train_seconds": round(train_s, 1), "init": init,
              "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
              "params": sum(p.numel() for p in vae.parameters()), "held_out": scores, "curve": curve}
    (args.out / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"\ntrained {args.steps} steps in {train_s:.0f}s; wrote {args.out}")
    print("| held-out set | PSNR dB (mean) | PSNR dB (min) | flow corr | latent motion (mean) |")
    print("|---|---:|---:|---:|---:|")
    for name, s in scores.items():
        fc = "-" if s["flow_corr"] is None else f"{s['flow_corr']:.3f}"
        print(f"| {name} | {s['psnr_db']:.2f} | {s['psnr_min_db']:.2f} | {fc} | {np.mean(s['latent_motion']):.3f} |")


if __name__ == "__main__":
    main()
