"""Planted-motion benchmark: do the scores find motion, or appearance? Every scoring kind, several seeds.

    python benchmarks/quality.py [--seeds 0 1 2 3 4] [--steps 300] [--quick] [--json quality.json]

Data (``synthetic.planted_dataset``, per seed): 6 motion classes x 6 appearance classes (colour + shape);
one (motion, appearance) pair per motion and per appearance is held out. Training: 2 clips of each of the 30
other pairs (60 clips); queries: 3 clips of each held-out pair (18), so no query's combination occurs in
training. Captions name the appearance only. The tiny Wan is fine-tuned ``--steps`` steps on the training clips
(the ordinary loss), then every clip is decoded, its flow computed (``MaskConfig()``: object motion, camera
subtracted) and VAE-encoded once, and each kind scores every query against every training clip:

- ``influence <loss>, <mask>``: cosines of projected gradients (Fastfood 512, one sample at t = 751, as the
  index stores them) for loss ``mse`` (the paper's) and ``td`` (temporal difference), with the flow mask and
  unmasked (W = 1, the ablation);
- ``... centered``: the same vectors minus the training clips' mean vector (a direction every clip's gradient
  shares), renormalized: measured here only, not an index option;
- ``... mask-swap``: the control for shortcuts. Every training clip gets the flow mask of another training clip
  (its donor, always of another motion class; queries keep their own). A method that reads the video should
  fall towards chance on the clips' own motion; one that follows the mask's shape follows the donor
  (``donor-motion@10``: the share of the top 10 whose *donor* has the query's motion);
- ``motion features``: the motion-feature channel (``features.py``): camera-compensated and raw flow
  (``both``, the default), and each alone;
- ``combined``: the top 30 clips by motion features re-ranked by influence (default loss, flow mask), top 10
  (``attribution.rerank_by_influence``, the API's ``combined`` list).

Per kind: motion-precision@10 (share of the top 10 with the query's motion class), appearance-leak@10 (share
with the query's appearance class), donor-motion@10 (mask-swap rows), length bias (per query, the Spearman
correlation of its scores with the source clips' lengths in frames, averaged over queries; 0 is no bias), each
as mean ± sd over seeds. Chance for both shares is 10/60 = 0.167.

``--quick``: 4 motion and 4 appearance classes, 2 training clips per pair (24), 1 query per held-out pair,
top 5, 20 fine-tuning steps, 2 seeds: a smoke run for CI (about a minute; too small to read anything into).
Cost at the defaults: about 2 minutes per seed on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from fidelity import mean_sd, pm, spearman  # noqa: E402

from motive_index.attribution import rerank_by_influence  # noqa: E402
from motive_index.backbones import build_tiny  # noqa: E402
from motive_index.config import EstimatorConfig, FeatureConfig  # noqa: E402
from motive_index.features import motion_descriptor  # noqa: E402
from motive_index.finetune import finetune  # noqa: E402
from motive_index.gradients import GradientEngine  # noqa: E402
from motive_index.manifest import read_manifest  # noqa: E402
from motive_index.synthetic import MOTIONS, planted_dataset  # noqa: E402

DEFAULT_INFLUENCE = "influence mse, flow mask"


def planted_clips(tmp, seed: int, quick: bool):
    """The planted-motion training and query clips of one seed (also used by curation.py), and the motions."""
    motions = MOTIONS[:4] if quick else MOTIONS
    train_m, query_m = planted_dataset(tmp, seed, motions=motions, per_pair=2, queries_per_pair=1 if quick else 3)
    return read_manifest(train_m), read_manifest(query_m), motions


def run_seed(seed: int, args, log) -> dict:
    """Every kind's metrics for one seed: {kind: {metric: value}} plus setup facts."""
    K, CANDIDATES = args.k, 3 * args.k
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_c, query_c, _ = planted_clips(tmp, seed, args.quick)
        backbone = build_tiny(seed)
        rep = finetune(backbone, train_c, steps=args.steps, seed=seed)
        t1 = time.perf_counter()
        engines = {loss: GradientEngine(backbone, estimator=EstimatorConfig(loss=loss)) for loss in ("mse", "td")}
        eng = engines["mse"]
        reads = [eng.read(c.path, c.start_sec, c.end_sec) for c in train_c + query_c]
        prepared = [eng.prepare(c.path, c.caption, name=c.clip_id, read=r)
                    for c, r in zip(train_c + query_c, reads)]
        t2 = time.perf_counter()
        n = len(train_c)
        train_p, query_p = prepared[:n], prepared[n:]
        ones = torch.ones_like(prepared[0].weight)
        rng = np.random.default_rng(seed + 12345)
        motion = np.array([c.metadata["motion"] for c in train_c])
        donors = []
        for i in range(n):  # each training clip's donor: a random training clip of another motion class
            donors.append(int(rng.choice(np.flatnonzero(motion != motion[i]))))
        swapped = [dataclasses.replace(p, weight=train_p[d].weight) for p, d in zip(train_p, donors)]
        unmasked = lambda clips: [dataclasses.replace(p, weight=ones) for p in clips]  # noqa: E731

        def vectors(loss, clips):
            return np.stack([engines[loss].vector(c) for c in clips])

        def centered(q, t):  # both sides minus the training clips' mean vector, renormalized
            mu = t.mean(axis=0)
            q, t = q - mu, t - mu
            return (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (t / np.linalg.norm(t, axis=1, keepdims=True)).T

        scores: dict[str, np.ndarray] = {}  # kind -> (queries, train) score matrix
        for loss in ("mse", "td"):
            q_vec, t_vec = vectors(loss, query_p), vectors(loss, train_p)
            scores[f"influence {loss}, flow mask"] = q_vec @ t_vec.T
            scores[f"influence {loss}, flow mask, centered"] = centered(q_vec, t_vec)
            scores[f"influence {loss}, no mask"] = vectors(loss, unmasked(query_p)) @ vectors(loss, unmasked(train_p)).T
            scores[f"influence {loss}, flow mask, mask-swap"] = vectors(loss, query_p) @ vectors(loss, swapped).T
        t3 = time.perf_counter()
        feats = {}
        for camera in ("both", "compensated", "raw"):
            cfg = FeatureConfig(camera=camera)
            f = np.stack([motion_descriptor(mm.flows, mm.residual, cfg, residual_still=mm.static)
                          for _, mm, _ in reads])
            feats[camera] = f
            scores[f"motion features ({camera})"] = f[n:] @ f[:n].T
        t4 = time.perf_counter()
        ids = [c.clip_id for c in train_c]
        combined_top = []
        for qi in range(len(query_c)):
            sim = scores["motion features (both)"][qi]
            cand = [(ids[j], float(sim[j])) for j in np.argsort(-sim)[:CANDIDATES]]
            infl = dict(zip(ids, scores[DEFAULT_INFLUENCE][qi].tolist()))
            combined_top.append([ids.index(cid) for cid, _, _ in rerank_by_influence(cand, infl, K)])

    app = np.array([c.metadata["appearance"] for c in train_c])
    length = np.array([float(c.metadata["frames"]) for c in train_c])
    q_motion = np.array([c.metadata["motion"] for c in query_c])
    q_app = np.array([c.metadata["appearance"] for c in query_c])
    donor_motion = motion[donors]

    def metrics(tops: np.ndarray, s: np.ndarray | None, swap: bool) -> dict:
        out = {"motion_precision": float((motion[tops] == q_motion[:, None]).mean()),
               "appearance_leak": float((app[tops] == q_app[:, None]).mean())}
        if swap:
            out["donor_motion"] = float((donor_motion[tops] == q_motion[:, None]).mean())
        if s is not None:
            out["length_bias"] = float(np.mean([spearman(row, length) for row in s]))
        return out

    result = {kind: metrics(np.argsort(-s, axis=1)[:, :K], s, "mask-swap" in kind) for kind, s in scores.items()}
    result[f"combined (features top {CANDIDATES}, by influence)"] = metrics(np.array(combined_top), None, False)
    result["chance"] = {"motion_precision": float(np.mean([(motion == m).mean() for m in q_motion])),
                        "appearance_leak": float(np.mean([(app == a).mean() for a in q_app]))}
    log(f"[seed {seed}] {n} train + {len(query_c)} queries; fine-tune {rep.first_loss:.3f} -> {rep.last_loss:.3f} "
        f"({t1 - t0:.0f}s), prepare {t2 - t1:.0f}s, gradients {t3 - t2:.0f}s, features {t4 - t3:.1f}s")
    return {"kinds": result, "train": n, "queries": len(query_c), "seconds": time.perf_counter() - t0}


COLUMNS = (("motion_precision", "motion-precision@{k}"), ("appearance_leak", "appearance-leak@{k}"),
           ("donor_motion", "donor-motion@{k}"), ("length_bias", "length bias (Spearman)"))


def table(runs: list[dict], k: int = 10) -> str:
    kinds = list(runs[0]["kinds"])
    lines = ["| scoring | " + " | ".join(c.format(k=k) for _, c in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for kind in kinds:
        cells = []
        for key, _ in COLUMNS:
            vals = [r["kinds"][kind][key] for r in runs if key in r["kinds"][kind]]
            cells.append(pm(vals) if vals else "")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 3 4 (--quick: 0 1)")
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default 300; --quick: 40)")
    ap.add_argument("--quick", action="store_true", help="a small smoke run for CI")
    ap.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    args = ap.parse_args(argv)
    args.seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2, 3, 4])
    args.steps = args.steps or (20 if args.quick else 300)
    args.k = 5 if args.quick else 10
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    torch.manual_seed(0)
    runs = [run_seed(s, args, log) for s in args.seeds]
    r0 = runs[0]
    print(f"\nmachine: {machine()}")
    print(f"planted motion: {r0['train']} training clips, {r0['queries']} queries per seed (held-out "
          f"(motion, appearance) pairs), tiny Wan fine-tuned {args.steps} steps; seeds {args.seeds}; "
          f"mean ± sd over seeds; top-{args.k}\n")
    print(table(runs, args.k))
    d = {k: mean_sd(r["kinds"][k]["motion_precision"] for r in runs) for k in runs[0]["kinds"]}
    best = max((k for k in d if k.startswith("influence") and "swap" not in k), key=lambda k: d[k][0])
    print(f"\nbest influence kind by motion-precision@{args.k}: {best} ({d[best][0]:.3f} ± {d[best][1]:.3f}); "
          f"per-seed seconds: {', '.join('%.0f' % r['seconds'] for r in runs)}")
    out = {"seeds": args.seeds, "steps": args.steps, "runs": runs, "machine": machine()}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
