"""Gradient time and memory at real scale: the Wan2.1-T2V-1.3B transformer (random weights) at 81x480x832.

    python benchmarks/wan_scale.py --device cuda                       # the paper's shape, on a GPU
    python benchmarks/wan_scale.py --device cuda --vae                 # ... and the Wan VAE's encode time
    python benchmarks/wan_scale.py --preset tiny --device cpu          # the same code path in seconds (CI)
    python benchmarks/wan_scale.py --layers 1 --frames 5 --height 64 --width 64   # the 1.3B config, cut down

The paper computes these gradients over all 1.42 B transformer parameters at 81 frames of 480x832 in about 54 s
per clip on one A100 (plus about 2 s per projection). This builds exactly that transformer from the diffusers
config of Wan2.1-T2V-1.3B (30 layers, width 1536, 12 heads, FFN 8960, text width 4096) with seeded random
weights (no download: timing does not depend on the weights), wraps it in the package's own
:class:`~motive_index.gradients.GradientEngine` (post-accumulate-grad hooks streaming every parameter's gradient
into the folded Fastfood, dim 512), and times ``vector()`` on a clip of the paper's latent shape
(16 x 21 x 60 x 104) with a motion weight and a 512-token caption embedding, for each precision and with and
without gradient checkpointing. The text encoder is a 1-layer stand-in of the right width (its output is cached
per caption and is not part of the per-clip time); the VAE is the real Wan VAE architecture (``--vae``).

Reports seconds per clip (median of ``--repeats`` after one warm-up), the forward+backward and projection split,
and peak GPU memory (``torch.cuda.max_memory_allocated``). The goal in the issue: <= 5 s per clip on an H200.
On CUDA it also checks that a tiny model's vector is the same on CPU and GPU (cosine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)


def _wan_1_3b(device, layers: int, spec):
    """A WanBackbone with Wan2.1-T2V-1.3B's transformer and VAE architectures, seeded random weights."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from motive_index.backbones.base import byte_tokenizer
    from motive_index.backbones.wan import PAPER_TEXT_LEN, WanBackbone

    torch.manual_seed(0)
    with torch.device(device):  # initialize in place: 1.42 B parameters are slow to build on a CPU
        transformer = WanTransformer3DModel(**{**WAN_1_3B, "num_layers": layers})
        vae = AutoencoderKLWan()  # the Wan2.1 VAE architecture (base_dim 96, z_dim 16)
        tok = byte_tokenizer()
        text = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), d_model=4096, d_kv=64, d_ff=256, num_layers=1,
                                           num_heads=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    sched = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}
    bb = WanBackbone(transformer, vae, text, tok, sched, spec, PAPER_TEXT_LEN)
    return bb.to(device)


def _time_vector(engine, clip, repeats: int, sync, device):
    import torch

    engine.vector(clip)  # warm-up: allocator, kernels
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    walls, fb, pr = [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        engine.vector(clip)
        sync()
        walls.append(time.perf_counter() - t)
        fb.append(clip.timings["fwd_bwd"])
        pr.append(clip.timings["projection"])
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return statistics.median(walls), statistics.median(fb), statistics.median(pr), peak


def _cpu_gpu_agreement(device) -> float:
    """Cosine between a tiny model's vector computed on the CPU and on ``device``, same clip, same settings."""
    import numpy as np

    from motive_index.backbones import build_tiny
    from motive_index.config import MaskConfig
    from motive_index.gradients import GradientEngine, PreparedClip

    import torch

    vecs = []
    for dev in ("cpu", str(device)):
        bb = build_tiny(0).to(dev)
        eng = GradientEngine(bb, MaskConfig(kind="none"))
        g = torch.Generator().manual_seed(1)
        clip = PreparedClip("probe", torch.randn(bb.latent_shape(), generator=g).to(dev),
                            torch.rand(bb.latent_shape()[1:], generator=g).to(dev), bb.encode_text("a red square"))
        vecs.append(eng.vector(clip))
    return float(np.dot(vecs[0], vecs[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["1.3b", "tiny"], default="1.3b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--layers", type=int, default=30, help="transformer layers of the 1.3b config (30)")
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--precision", nargs="+", default=["bf16", "fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--checkpointing", nargs="+", default=["off", "on"], choices=["off", "on"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--vae", action="store_true", help="also time the VAE encode of one clip")
    args = ap.parse_args()

    import torch

    from motive_index.backbones import build_tiny
    from motive_index.config import EstimatorConfig, MaskConfig, VideoSpec
    from motive_index.gradients import GradientEngine, PreparedClip

    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    if args.preset == "tiny":
        bb = build_tiny(0).to(device)
    else:
        bb = _wan_1_3b(device, args.layers, VideoSpec(frames=args.frames, fps=16.0, height=args.height,
                                                        width=args.width))
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in bb.transformer.parameters())
    g = torch.Generator().manual_seed(0)
    shape = bb.latent_shape()
    clip_args = (torch.randn(shape, generator=g).to(device), torch.rand(shape[1:], generator=g).to(device),
                 bb.encode_text("a red square moves to the right"))

    rows = []
    for ckpt in args.checkpointing:
        for prec in args.precision:
            engine = GradientEngine(bb, MaskConfig(kind="none"), EstimatorConfig(precision=prec),
                                    checkpointing=ckpt == "on")
            if ckpt == "off" and getattr(bb.transformer, "gradient_checkpointing", False):
                bb.transformer.disable_gradient_checkpointing()
            clip = PreparedClip("probe", *clip_args)
            try:
                rows.append((prec, ckpt, *_time_vector(engine, clip, args.repeats, sync, device)))
            except torch.OutOfMemoryError as e:
                rows.append((prec, ckpt, float("nan"), float("nan"), float("nan"), float("nan")))
                print(f"{prec} checkpointing {ckpt}: out of memory ({str(e).splitlines()[0]})")
                torch.cuda.empty_cache()

    vae_s = vae_peak = None
    if args.vae:
        frames = torch.rand(bb.spec.frames, 3, bb.spec.height, bb.spec.width, generator=g)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        bb.encode_video(frames)
        sync()
        t = time.perf_counter()
        bb.encode_video(frames)
        sync()
        vae_s = time.perf_counter() - t
        vae_peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")

    print(f"\nmachine: {machine()}; device {device}")
    print(f"model: {args.preset} Wan transformer, {n_params / 1e9:.3f} B parameters"
          f"{'' if args.preset == 'tiny' else f' ({args.layers} layers)'}; latents {tuple(shape)} "
          f"(clip {bb.spec.frames}x{bb.spec.height}x{bb.spec.width}); built in {build_s:.1f}s; "
          f"Fastfood dim 512, all parameters, one (t, eps) pair\n")
    print("| precision | checkpointing | s per clip | forward+backward s | projection s | peak GPU GiB |")
    print("|---|---|---:|---:|---:|---:|")
    for prec, ckpt, wall, fb, pr, peak in rows:
        print(f"| {prec} | {ckpt} | {wall:.2f} | {fb:.2f} | {pr:.3f} | "
              f"{'-' if peak != peak else f'{peak:.1f}'} |")
    if vae_s is not None:
        print(f"\nVAE encode of one {bb.spec.frames}x{bb.spec.height}x{bb.spec.width} clip: {vae_s:.2f} s"
              + ("" if vae_peak != vae_peak else f", peak {vae_peak:.1f} GiB"))
    print("\n(on a GPU the streamed part of the projection runs asynchronously inside backward, so most of it "
          "is counted under forward+backward; the paper: ~54 s + ~2 s per clip on an A100)")
    if device.type == "cuda":
        print(f"tiny model, same clip on CPU and {device}: cosine {_cpu_gpu_agreement(device):.6f}")


if __name__ == "__main__":
    main()
