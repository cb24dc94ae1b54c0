"""Peer check: the engine's exact per-clip gradients against an independent torch.func computation.

    python benchmarks/peer_check.py [--clips 16] [--steps 50] [--samples 1] [--noise-seed 0] [--data-seed 0]
                                    [--vmap] [--quick]

What is checked. ``GradientEngine`` with the identity projection gives each clip's EXACT gradient over every
transformer parameter, L2-normalized, assembled by post-accumulate-grad hooks that stream each parameter's
``.grad`` into an accumulator at that parameter's offset (gradients.py). The peer here computes the same
quantity a different way: ``torch.func.grad`` of a pure function of the parameter dict, the transformer called
through ``torch.func.functional_call`` (parameters AND buffers passed), the motion-weighted loss written out
again below (not imported from ``motive_index.loss``), the gradient flattened in ``named_parameters()`` order.
Nothing of the engine's machinery (hooks, requires_grad toggling, offsets, accumulator, ``weighted_loss``)
is shared. What IS shared, on purpose: the prepared clips (decode, flow mask, VAE latents, text embedding: the
inputs, not the thing checked), ``backbone.noisy_input`` (the scheduler's z_t / target) and the engine's
timestep(s) and shared noise draw(s). The peer re-derives the draws from the documented recipe (timesteps at
the centres of K strata, ``torch.randn`` from a CPU generator seeded with ``noise_seed``) and reports whether
they equal the engine's (``draws_match``).

Per loss (``mse``, ``td``; the default flow mask, fp32): max |entry difference| between the engine's stored
unit vectors and the peer's (normalized in float64), the smallest cosine between a clip's two vectors, and for
every pair of clips i < j the cosine from each method (the engine's: the inner product of its stored vectors, as
the index scores them): max |difference| and the Spearman correlation of the two sets of pairwise cosines. The
same two maxima with the engine's vectors renormalized in float64 compare directions only, and
max | ||u_engine|| - 1 | shows why the two differ: ``projection.unit`` divides by a float32 ``Tensor.norm()``,
which on the CPU (torch 2.13) is off by about 1e-5 relative at this model's 947 k entries (the error grows with
the length: ~1e-7 at 65 k, ~8e-5 at 4 M; ``(v * v).sum().sqrt()`` or a float64 norm is accurate), so the
stored vectors' norms measured 1.00001 to 1.00004. At the default Fastfood dim of 512 the same error is ~1e-8.

Setup (seeded by ``--data-seed``): ``--clips`` synthetic clips (``synthetic.generate_dataset``), the tiny Wan
fine-tuned ``--steps`` steps on them (``finetune.finetune``) so its gradients are not those of random weights.
``--quick``: 4 clips, 5 fine-tuning steps (about 10 s on 2 CPU cores; the default 16 clips and 50 steps about
40 s). Only the Wan family's transformer call is implemented (the tiny preset's); other families raise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine, matmul_anchor_ms  # noqa: E402
from fidelity import spearman  # noqa: E402

from motive_index.config import EstimatorConfig, MaskConfig, ProjectionConfig  # noqa: E402
from motive_index.gradients import GradientEngine, PreparedClip  # noqa: E402

LOSSES = ("mse", "td")
NUM_TRAIN_TIMESTEPS = 1000


# ------------------------------------------------------------------------------------------------ statistics


def pair_cosines(u: torch.Tensor) -> np.ndarray:
    """Cosines of all pairs i < j of the rows of u (N, P), in float64 -> (N(N-1)/2,)."""
    u = u.double()
    u = u / u.norm(dim=1, keepdim=True)
    iu = torch.triu_indices(u.shape[0], u.shape[0], 1)
    return (u @ u.T)[iu[0], iu[1]].numpy()


# ------------------------------------------------------------------------------------------------ the peer


def peer_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The motion-weighted loss, written out independently of motive_index.loss.

    pred, target: (C, F', H', W'); weight: (F', H', W').
    mse: sum(W * (pred - target)^2) / (C F' H' W').
    td:  r = pred - target; sum(W' * (r[:, f+1] - r[:, f])^2) / (C (F'-1) H' W'), W' = (W[f] + W[f+1]) / 2.
    """
    r = pred.float() - target.float()
    if kind == "mse":
        return (r.square() * weight.unsqueeze(0)).sum() / r.numel()
    if kind == "td":
        dr = torch.diff(r, dim=1)
        w_pair = (weight[:-1] + weight[1:]) * 0.5
        return (dr.square() * w_pair.unsqueeze(0)).sum() / dr.numel()
    raise ValueError(f"loss={kind!r}: one of {LOSSES}")


def peer_draws(latent_shape: Sequence[int], samples: int, noise_seed: int, timestep: int = 751):
    """The shared (timestep, noise) pairs re-derived from the documented recipe (not from EstimatorConfig)."""
    if samples == 1:
        ts = [timestep]
    else:
        ts = [(2 * k + 1) * NUM_TRAIN_TIMESTEPS // (2 * samples) for k in range(samples)]
    gen = torch.Generator(device="cpu").manual_seed(noise_seed)
    return ts, [torch.randn(tuple(latent_shape), generator=gen) for _ in ts]


def _wan_call(backbone):
    if getattr(backbone, "family", None) != "wan":
        raise NotImplementedError(f"peer check: only the Wan transformer call is implemented, not "
                                  f"{getattr(backbone, 'family', '?')!r}")

    def call(state: dict, z_t, model_t, text):  # as WanBackbone.predict, but functional
        return functional_call(backbone.transformer, state, (z_t, model_t, text), {"return_dict": False})[0]
    return call


def peer_gradients(backbone, clips: Sequence[PreparedClip], loss: str, timesteps, noises,
                   use_vmap: bool = False) -> torch.Tensor:
    """Each clip's raw (not normalized) gradient of the mean over the (timestep, noise) pairs of the loss, over
    every transformer parameter, by torch.func.grad over functional_call; rows flattened in named_parameters()
    order: (N, P) float32. ``use_vmap`` takes all clips' gradients in one vmap(grad(...)) call."""
    call = _wan_call(backbone)
    model = backbone.transformer
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    noises = [n.to(backbone.device) for n in noises]

    def clip_loss(ps: dict, z0, w, text):
        total = 0.0
        for t, eps in zip(timesteps, noises):
            z_t, model_t, target = backbone.noisy_input(z0[None], eps[None], t)
            pred = call({**ps, **buffers}, z_t, model_t, text[None])
            total = total + peer_loss(loss, pred[0], target[0], w)
        return total / len(timesteps)

    g = grad(clip_loss)
    flat = lambda d: torch.cat([d[n].reshape(-1) for n in names])
    was_training = model.training
    model.eval()
    try:
        if use_vmap:
            z = torch.stack([c.latents for c in clips])
            w = torch.stack([c.weight for c in clips])
            txt = torch.stack([c.text for c in clips])
            with warnings.catch_warnings():  # vmap has no batching rule for CPU SDPA: it loops, correctly
                warnings.filterwarnings("ignore", message=".*not yet implemented the batching rule.*")
                gs = vmap(g, in_dims=(None, 0, 0, 0))(params, z, w, txt)
            out = torch.cat([gs[n].reshape(len(clips), -1) for n in names], dim=1)
        else:
            out = torch.stack([flat(g(params, c.latents, c.weight, c.text)) for c in clips])
    finally:
        model.train(was_training)
    return out.detach().to("cpu", torch.float32)


# ------------------------------------------------------------------------------------------------ comparison


def engine_vectors(backbone, clips: Sequence[PreparedClip], estimator: EstimatorConfig,
                   mask: MaskConfig = MaskConfig()) -> tuple[torch.Tensor, GradientEngine]:
    """The engine's unit exact gradients (N, P) under the identity projection, and the engine."""
    n = sum(p.numel() for p in backbone.transformer.parameters())
    eng = GradientEngine(backbone, mask=mask, estimator=estimator, projection=ProjectionConfig(kind="identity", dim=n))
    return torch.from_numpy(np.stack([eng.vector(c) for c in clips])), eng


def compare(engine_unit: torch.Tensor, peer_raw: torch.Tensor) -> dict:
    """Agreement of the engine's stored unit vectors with the peer's gradients (normalized here, in float64).

    The engine's pairwise cosines are the plain inner products of its stored vectors, as the index scores them
    (``engine_cosines``); ``*_renorm`` numbers first renormalize the engine's vectors in float64, so they
    compare directions only. ``max_norm_dev``: the largest | ||stored vector|| - 1 |."""
    e = engine_unit.double()
    p = peer_raw.double()
    p = p / p.norm(dim=1, keepdim=True)
    en = e.norm(dim=1)
    e_renorm = e / en[:, None]
    iu = torch.triu_indices(e.shape[0], e.shape[0], 1)
    ce = (e @ e.T)[iu[0], iu[1]].numpy()            # as the index scores: inner products of stored vectors
    ce_renorm = pair_cosines(e)
    cp = pair_cosines(p)
    return {"clips": int(e.shape[0]), "pairs": int(len(cp)),
            "max_abs_unit_diff": float((e - p).abs().max()),
            "max_abs_unit_diff_renorm": float((e_renorm - p).abs().max()),
            "max_norm_dev": float((en - 1).abs().max()),
            "min_self_cosine": float((e_renorm * p).sum(1).min()),
            "max_abs_cos_diff": float(np.abs(ce - cp).max()) if len(cp) else 0.0,
            "max_abs_cos_diff_renorm": float(np.abs(ce_renorm - cp).max()) if len(cp) else 0.0,
            "spearman": spearman(ce, cp) if len(cp) >= 2 else float("nan"),
            "engine_cosines": ce.tolist(), "peer_cosines": cp.tolist(),
            "max_abs_unit_entry": float(p.abs().max())}


def peer_check(backbone, clips: Sequence[PreparedClip], loss: str = "mse", samples: int = 1, noise_seed: int = 0,
               timestep: int = 751, mask: MaskConfig = MaskConfig(), use_vmap: bool = False) -> dict:
    """Engine (identity projection) vs torch.func peer on ``clips`` (prepared with ``mask``) under one estimator.

    Returns compare()'s numbers plus ``draws_match`` (the peer's re-derived timesteps and noise equal the
    engine's), ``num_params``, the seconds each side took, and the raw ``engine``/``peer`` tensors."""
    est = EstimatorConfig(loss=loss, samples=samples, noise_seed=noise_seed, timestep=timestep)
    t0 = time.perf_counter()
    ev, eng = engine_vectors(backbone, clips, est, mask)
    t1 = time.perf_counter()
    ts, noises = peer_draws(clips[0].latents.shape, samples, noise_seed, timestep)
    draws_match = (list(ts) == list(eng.timesteps) and len(noises) == len(eng.noises)
                   and all(torch.equal(a, b.cpu()) for a, b in zip(noises, eng.noises)))
    pv = peer_gradients(backbone, clips, loss, list(eng.timesteps), list(eng.noises), use_vmap=use_vmap)
    t2 = time.perf_counter()
    if tuple(pv.shape) != tuple(ev.shape):
        raise RuntimeError(f"peer gradients {tuple(pv.shape)} vs engine vectors {tuple(ev.shape)}")
    out = compare(ev, pv)
    out.update(loss=loss, samples=samples, noise_seed=noise_seed, timesteps=list(eng.timesteps),
               draws_match=bool(draws_match), num_params=int(ev.shape[1]), engine_s=t1 - t0, peer_s=t2 - t1,
               engine=ev, peer=pv)
    return out


# ------------------------------------------------------------------------------------------------ main


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=None, help="synthetic clips (default 16; --quick 4)")
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default 50; --quick 5)")
    ap.add_argument("--samples", type=int, default=1, help="(timestep, noise) pairs of the estimator (default 1)")
    ap.add_argument("--noise-seed", type=int, default=0)
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the clips, the tiny model and fine-tuning")
    ap.add_argument("--vmap", action="store_true", help="peer: one vmap(grad) over all clips instead of a loop")
    ap.add_argument("--quick", action="store_true", help="4 clips, 5 fine-tuning steps")
    args = ap.parse_args(argv)
    args.clips = args.clips or (4 if args.quick else 16)
    args.steps = args.steps or (5 if args.quick else 50)
    if args.clips < 2:
        ap.error("need --clips >= 2 (pairs of clips are compared)")
    log = lambda s: print(s, file=sys.stderr, flush=True)

    from motive_index.backbones import build_tiny
    from motive_index.finetune import finetune
    from motive_index.manifest import read_manifest
    from motive_index.synthetic import generate_dataset

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        clips = read_manifest(generate_dataset(Path(tmp) / "data", args.clips, seed=args.data_seed,
                                               frames_range=(17, 30)))
        backbone = build_tiny(seed=args.data_seed)
        rep = finetune(backbone, clips, steps=args.steps, seed=args.data_seed)
        log(f"[setup] {args.clips} clips, fine-tuned {args.steps} steps, loss {rep.first_loss:.3f} -> "
            f"{rep.last_loss:.3f} ({time.perf_counter() - t0:.1f}s)")
        t = time.perf_counter()
        eng = GradientEngine(backbone)  # prepare() depends on the backbone and the mask only
        prepared = [eng.prepare(c.path, c.caption, c.start_sec, c.end_sec, name=c.clip_id) for c in clips]
        log(f"[prepare] decode + flow mask + VAE for {len(prepared)} clips ({time.perf_counter() - t:.1f}s)")
    results = []
    for loss in LOSSES:
        r = peer_check(backbone, prepared, loss=loss, samples=args.samples, noise_seed=args.noise_seed,
                       use_vmap=args.vmap)
        log(f"[{loss}] engine {r['engine_s']:.1f}s, peer {r['peer_s']:.1f}s")
        results.append(r)
    wall = time.perf_counter() - t0

    anchor = matmul_anchor_ms()
    n = results[0]["num_params"]
    print(f"\nmachine: {machine()}; 512x512 matmul {anchor:.2f} ms")
    print(f"benchmarks/peer_check.py{' --quick' if args.quick else ''}: wall {wall:.0f} s; tiny Wan ({n:,} params) "
          f"fine-tuned {args.steps} steps on {args.clips} synthetic clips (loss {rep.first_loss:.3f} -> "
          f"{rep.last_loss:.3f}), data seed {args.data_seed}; default flow mask, fp32; timesteps "
          f"{results[0]['timesteps']}, noise seed {args.noise_seed}; peer: torch.func.grad over functional_call"
          f"{' (vmap)' if args.vmap else ''}")
    print("engine: GradientEngine, identity projection (exact, unit); peer's re-derived (t, ε) equal the engine's: "
          + ", ".join(f"{r['loss']} {'yes' if r['draws_match'] else 'NO'}" for r in results) + "\n")
    print("| loss | clips | pairs | max abs Δ unit-vector entry | same, engine renormalized | max abs(‖u_engine‖ - 1) "
          "| max abs Δ pairwise cosine (index's inner product) | same, engine renormalized | Spearman of pairwise "
          "cosines | min cos(engine, peer) per clip |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['loss']} | {r['clips']} | {r['pairs']} | {r['max_abs_unit_diff']:.1e} | "
              f"{r['max_abs_unit_diff_renorm']:.1e} | {r['max_norm_dev']:.1e} | {r['max_abs_cos_diff']:.1e} | "
              f"{r['max_abs_cos_diff_renorm']:.1e} | {r['spearman']:.6f} | {r['min_self_cosine']:.12f} |")
    print("\nscale: largest abs entry of a unit vector " + ", ".join(f"{r['loss']} {r['max_abs_unit_entry']:.2f}"
                                                                     for r in results)
          + "; exact pairwise cosines span " + ", ".join(
              f"{r['loss']} [{min(r['peer_cosines']):.3f}, {max(r['peer_cosines']):.3f}]" for r in results))
    print("seconds (engine / peer): " + ", ".join(f"{r['loss']} {r['engine_s']:.1f} / {r['peer_s']:.1f}"
                                                   for r in results))
    print(f"total wall time {wall:.1f} s")
    return {"args": vars(args), "wall_s": wall, "machine": machine(),
            "rows": [{k: v for k, v in r.items() if k not in ("engine", "peer")} for r in results]}


if __name__ == "__main__":
    main()
