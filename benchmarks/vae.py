"""The tiny Wan preset's trained VAE: reconstruction on held-out clips, motion kept, and its share of a build.

    python benchmarks/vae.py [--vae DIR] [--clips 4] [--build-clips 12]

Held-out clips (``tiny_vae.held_out_sets``: seeds never trained on, 17 frames of 64x64; pans over a photo never
trained on): PSNR of the reconstruction (latent mode, decoded), the Pearson correlation of its DIS optical flow
with the input's, and latent motion (``tiny_vae.latent_motion``) of the moving clips against frozen ones (the
AUC: the share of (moving, frozen) pairs in which the moving clip's latents change more). Targets: PSNR >= 28 dB,
flow correlation >= 0.8, moving told apart from frozen.

Cost: encode and decode of one 17x64x64 clip (median of 5), against the untrained Wan 2.1-layout VAE the
preset had before (``--baseline``, measured in the same run), and the VAE's share of a build's per-clip stage
time (``MotiveIndex.add`` over ``--build-clips`` synthetic clips, as ``benchmarks/stages.py``). Target: <= 20%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, matmul_anchor_ms  # noqa: E402


def _median_ms(f, n: int = 5) -> float:
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a positive scores above a negative), ties counting half."""
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def costs(vae) -> tuple[float, float]:
    import torch

    x = torch.rand(1, 3, 17, 64, 64) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        return (_median_ms(lambda: vae.encode(x).latent_dist.mode()), _median_ms(lambda: vae.decode(z).sample))


def build_share(n_clips: int) -> dict[str, float]:
    from motive_index.api import MotiveIndex
    from motive_index.manifest import read_manifest
    from motive_index.synthetic import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = read_manifest(generate_dataset(tmp / "data", n_clips, seed=0))
        idx, _ = MotiveIndex.build([], "tiny", tmp / "index")
        report = idx.add(clips)
        return {s: v / report.added * 1000 for s, v in report.stage_seconds.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vae", type=Path, default=None, help="a trained VAE folder (default: the shipped one)")
    ap.add_argument("--clips", type=int, default=4, help="held-out clips per kind")
    ap.add_argument("--build-clips", type=int, default=12)
    args = ap.parse_args()

    from motive_index.backbones import tiny_vae as tv

    vae = tv.load_tiny_vae(args.vae or tv.TINY_VAE_DIR).eval()
    sets = tv.held_out_sets(args.clips)
    scores = tv.score(vae, sets)
    _, z = tv.reconstruct(vae, sets["shapes"][:1])
    moving = [m for name, s in scores.items() if name != "frozen" for m in s["latent_motion"]]
    frozen = scores["frozen"]["latent_motion"]
    baseline = tv.legacy_tiny_vae().eval()
    enc, dec = costs(vae)
    b_enc, b_dec = costs(baseline)
    stages = build_share(args.build_clips) if args.build_clips else {}
    anchor = matmul_anchor_ms()

    rec = tv.training_record(args.vae or tv.TINY_VAE_DIR)
    print(f"\nmachine: {machine()}; 512x512 matmul {anchor:.2f} ms")
    print(f"VAE: {args.vae or tv.TINY_VAE_DIR} ({sum(p.numel() for p in vae.parameters()):,} parameters; "
          f"trained {rec.get('args', {}).get('steps', '?')} steps in {rec.get('train_seconds', '?')} s)\n")
    print("| held-out set | clips | PSNR dB (mean) | PSNR dB (min) | flow corr (mean) | latent motion (mean) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, s in scores.items():
        fc = "-" if s["flow_corr"] is None else f"{s['flow_corr']:.3f}"
        print(f"| {name} | {len(s['latent_motion'])} | {s['psnr_db']:.2f} | {s['psnr_min_db']:.2f} | {fc} | "
              f"{np.mean(s['latent_motion']):.3f} |")
    print(f"\nmoving vs frozen by latent motion: AUC {auc(moving, frozen):.3f} (moving min {min(moving):.3f}, "
          f"frozen max {max(frozen):.3f})\n")
    print("| VAE | encode ms | decode ms |")
    print("|---|---:|---:|")
    print(f"| trained tiny ({vae.config.z_dim} x {tuple(z.shape[2:])} latents) | {enc:.1f} | {dec:.1f} |")
    print(f"| before: untrained Wan 2.1 layout (baseline) | {b_enc:.1f} | {b_dec:.1f} |")
    print(f"| ratio | {enc / b_enc:.2f} | {dec / b_dec:.2f} |")
    if stages:
        total = sum(stages.values())
        print(f"\nbuild, {args.build_clips} clips: stages {total:.0f} ms/clip, of which VAE {stages['vae']:.0f} ms "
              f"({stages['vae'] / total:.0%}; target <= 20%)")
        print("| stage | ms/clip | share |")
        print("|---|---:|---:|")
        for s, v in stages.items():
            print(f"| {s} | {v:.1f} | {v / total:.0%} |")


if __name__ == "__main__":
    main()
