"""Curation in small: fine-tune on the clips attribution keeps for a motion; does generated motion change?

    python benchmarks/curation.py [--seeds 0 1 2] [--targets rotate translate] [--quick] [--json curation.json]

Per seed: the planted-motion set (``synthetic.planted_dataset``: 6 motion x 6 appearance classes, 60 training
clips, 3 queries of each held-out (motion, appearance) pair; captions name the appearance only). The attributed
model is ``build_tiny(seed)`` fine-tuned ``--steps`` steps on every training clip. Every training clip and query
is read once (``GradientEngine``, default settings: flow mask, Fastfood 512, t = 751) into an influence vector
and a flow motion descriptor (``features.motion_descriptor``).

For each target motion in ``--targets`` its held-out queries (3 clips) are the query set, and four training
sets are kept, each 10% (6 clips; ``--keep``):

- ``influence``: the paper's majority vote (``attribution.curate``, 90th percentile) on influence cosines;
- ``motion features``: the same vote on motion-descriptor cosines;
- ``random``: a seeded random 10% (one draw per seed, shared by the targets);
- ``all``: all 60 clips (shared by the targets).

Each set fine-tunes a fresh tiny model (the initial weights of ``build_tiny(seed)``, restored: the same model a
new ``build_tiny(seed)`` gives) for ``--ft-steps`` steps, with the same steps, seed and batch size for every arm
(``finetune`` draws min(8, clips) a step: 6 for a 6-clip set). Each
model then generates ``--samples`` videos for each of the target's query captions (``generate.sample_many``:
Euler, ``--sample-steps`` steps; the same noise seeds for every arm). Reference rows: the fresh model with no
fine-tuning, the real held-out target clips, and those clips with their first frame frozen (no motion at all).

**Where motion is measured: in the generated pixels.** Every sample is decoded by the trained tiny VAE
(``backbones/tiny_vae.py``; each run prints the check: real clips encoded and decoded, their pixel PSNR and the
correlation of their optical flow with the input's) and read like any video: DIS flow and the motion mask
(``motion.motion_mask``, default settings) and the motion descriptor of the similarity channel
(``features.motion_descriptor``). Measured on each sample:

- **flow px/frame**: the mean optical-flow magnitude of the generated clip (a frozen clip reads about 0);
- **similarity to target**: the cosine of its motion descriptor with the mean descriptor of the target class,
  from an independent set of clips no arm trains on (``generate_dataset``, as many clips as the training set,
  another seed);
- **classifier says target**: the share of samples a nearest-centroid classifier (cosine, on those descriptors)
  assigns to the target motion; centroids from the independent clips (the main column) and, as a second column,
  from the real training clips. The second rewards a model for copying the clips it was fine-tuned on (they are
  part of the centroid of their class) whether or not it learned their motion; the first does not.

Columns ``kept: target motion`` and ``kept: query appearance`` say what each arm selected: the share of its kept
clips with the target's motion class, and with the queries' appearance class (which never occurs with the target
motion in training, so every such clip has another motion).

The reference rows are the instrument's check: the classifier's rate on the real target clips is its ceiling
(its accuracy on all held-out queries is printed too), and the frozen clips show what the flow reads for no
motion. If those rows look like the arms and like chance, the instrument does not see motion, and the arm
rows cannot say anything about it either way.

``--quick``: 4 motion and 4 appearance classes (24 training clips, 1 query per held-out pair), one seed, one
target, a few steps of everything: a smoke run for CI (well under a minute), far too small to read.
Cost at the defaults (3 seeds x 2 targets): about 5 minutes per seed on 2 CPU cores, 15 minutes in all (decoding
and reading every sample is most of the extra over the latent measures it had before).
Threads: ``--threads`` (default 1): the tiny model's operations are too small to gain from more, and on cores
shared with other work more threads slow it down many times over.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402
from fidelity import pm  # noqa: E402
from quality import planted_clips  # noqa: E402

from motive_index.attribution import curate  # noqa: E402
from motive_index.backbones import build_tiny  # noqa: E402
from motive_index.backbones.tiny_vae import psnr  # noqa: E402
from motive_index.config import FeatureConfig, MaskConfig  # noqa: E402
from motive_index.features import motion_descriptor  # noqa: E402
from motive_index.finetune import finetune  # noqa: E402
from motive_index.generate import decode_latents, sample_many  # noqa: E402
from motive_index.gradients import GradientEngine  # noqa: E402
from motive_index.manifest import read_manifest  # noqa: E402
from motive_index.motion import flow_fields, make_flow_estimator, motion_mask  # noqa: E402
from motive_index.synthetic import MOTIONS, generate_dataset  # noqa: E402
from motive_index.video import frames_to_tensor  # noqa: E402

ARMS = ("influence", "motion features", "random", "all")
REFERENCE = ("fresh model, no fine-tuning", "real held-out target clips", "the same, first frame frozen")


# ------------------------------------------------------------------------------------------ pixel measures


class MotionReader:
    """Frames (T, H, W, 3) uint8 -> (motion descriptor, mean flow px/frame), as the index reads a query."""

    def __init__(self):
        self.mask_cfg, self.feat_cfg = MaskConfig(), FeatureConfig()
        self.flow = make_flow_estimator(self.mask_cfg)

    def read(self, frames: np.ndarray) -> tuple[np.ndarray, float]:
        mm = motion_mask(frames, self.mask_cfg, self.flow)
        desc = motion_descriptor(mm.flows, mm.residual, self.feat_cfg, residual_still=mm.static)
        return desc, float(np.linalg.norm(mm.flows, axis=-1).mean())


class MotionClassifier:
    """Nearest centroid (cosine) on motion descriptors; centroids (unit means) from labelled clips."""

    def __init__(self, desc: np.ndarray, labels: np.ndarray, classes=MOTIONS):
        self.classes = tuple(classes)
        self.centroids = np.stack([_unit(desc[labels == c].mean(0)) for c in self.classes])   # (K, D)

    def similarity(self, desc: np.ndarray, target: str) -> np.ndarray:
        return desc @ self.centroids[self.classes.index(target)]

    def predict(self, desc: np.ndarray) -> np.ndarray:
        return np.array(self.classes)[np.argmax(desc @ self.centroids.T, axis=1)]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def decode_check(backbone, frames: list[np.ndarray]) -> dict:
    """Is pixel decoding meaningful? Encode real clips, decode, compare pixels and optical flow to the input."""
    ps, flow_in, flow_out, flow_corr = [], [], [], []
    for f in frames:                                                        # (T, H, W, 3) uint8
        dec = decode_latents(backbone, backbone.encode_video(frames_to_tensor(f)))   # (T, H, W, 3) uint8
        ps.append(psnr(f, dec))
        fi, fo = flow_fields(f), flow_fields(dec)                           # (T-1, H, W, 2) each
        flow_in.append(np.linalg.norm(fi, axis=-1).mean())
        flow_out.append(np.linalg.norm(fo, axis=-1).mean())
        flow_corr.append(np.corrcoef(fi.ravel(), fo.ravel())[0, 1])
    return {"psnr_db": float(np.mean(ps)), "flow_px_input": float(np.mean(flow_in)),
            "flow_px_decoded": float(np.mean(flow_out)), "flow_corr": float(np.mean(flow_corr))}


def cache_encodes(backbone) -> None:
    """Memoize ``backbone.encode_video`` by the frames' bytes: the VAE is frozen, so every fine-tuning run and
    the engine reuse one encoding per clip (the same latents they would compute; only faster)."""
    encode, memo = backbone.encode_video, {}

    def cached(frames: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        key = (hashlib.sha1(frames.detach().cpu().contiguous().numpy().tobytes()).hexdigest(), normalize)
        if key not in memo:
            memo[key] = encode(frames, normalize)
        return memo[key]

    backbone.encode_video = cached


# ------------------------------------------------------------------------------------------------ one seed


def run_seed(seed: int, args, log) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_c, query_c, motions = planted_clips(tmp, seed, args.quick)
        clf_c = read_manifest(generate_dataset(Path(tmp) / "classifier", len(train_c), seed=seed + 10_000,
                                               motions=motions, prefix="clf"))
        backbone = build_tiny(seed)
        cache_encodes(backbone)
        init = {k: v.detach().clone() for k, v in backbone.transformer.state_dict().items()}
        base = finetune(backbone, train_c, steps=args.steps, seed=seed)
        t1 = time.perf_counter()
        engine = GradientEngine(backbone)
        reads = [engine.read(c.path, c.start_sec, c.end_sec) for c in train_c + query_c]
        prepared = [engine.prepare(c.path, c.caption, name=c.clip_id, read=r)
                    for c, r in zip(train_c + query_c, reads)]
        vec = np.stack([engine.vector(p) for p in prepared])               # (N + Q, 512) at the base model
        feat = np.stack([motion_descriptor(mm.flows, mm.residual, FeatureConfig(), residual_still=mm.static)
                         for _, mm, _ in reads])                            # (N + Q, D)
        frozen = [np.repeat(v.frames[:1], len(v.frames), axis=0) for v, _, _ in reads[len(train_c):]]
        motion_reader = MotionReader()
        frozen_read = [motion_reader.read(f) for f in frozen]
        d_frozen = np.stack([d for d, _ in frozen_read])
        f_frozen = [px for _, px in frozen_read]
        f_real = [float(np.linalg.norm(mm.flows, axis=-1).mean()) for _, mm, _ in reads]
        clf_reads = [engine.read(c.path, c.start_sec, c.end_sec) for c in clf_c]   # no arm trains on these
        d_clf = np.stack([motion_descriptor(mm.flows, mm.residual, FeatureConfig(), residual_still=mm.static)
                          for _, mm, _ in clf_reads])
        check = decode_check(backbone, [v.frames for v, _, _ in reads[len(train_c):len(train_c) + 2]])
        t2 = time.perf_counter()

        n = len(train_c)
        ids = [c.clip_id for c in train_c]
        motion = np.array([c.metadata["motion"] for c in train_c])
        q_motion = np.array([c.metadata["motion"] for c in query_c])
        app = np.array([c.metadata["appearance"] for c in train_c])
        q_app = np.array([c.metadata["appearance"] for c in query_c])
        classifiers = {"says_target": MotionClassifier(d_clf, np.array([c.metadata["motion"] for c in clf_c]),
                                                       motions),
                       "says_target_train": MotionClassifier(feat[:n], motion, motions)}
        ceiling = {k: float((c.predict(feat[n:]) == q_motion).mean()) for k, c in classifiers.items()}
        n_keep = max(1, int(round(args.keep * n)))
        rng = np.random.default_rng([seed, 7])
        random_keep = sorted(rng.choice(n, n_keep, replace=False).tolist())
        sample_seeds = list(range(args.samples))

        def train_and_sample(keep: list[int], captions: dict[str, list[str]]) -> dict[str, tuple]:
            """Fine-tune the initial weights on ``keep`` (or not at all: empty), then sample per target, decode
            and read: {target: (descriptors (S, D), flow px/frame (S,))}."""
            backbone.transformer.load_state_dict(init)
            if keep:
                finetune(backbone, [train_c[i] for i in keep], steps=args.ft_steps, seed=seed)
            out = {}
            for target, caps in captions.items():
                pairs = [(c, s) for c in caps for s in sample_seeds]
                z = sample_many(backbone, [c for c, _ in pairs], [s for _, s in pairs], steps=args.sample_steps)
                read = [motion_reader.read(decode_latents(backbone, zi)) for zi in z]
                out[target] = (np.stack([d for d, _ in read]), np.array([f for _, f in read]))
            return out

        def measures(m: tuple, target: str) -> dict:
            desc, flow_px = m
            out = {"flow_px": float(np.mean(flow_px)),
                   "similarity": float(classifiers["says_target"].similarity(desc, target).mean())}
            for key, clf in classifiers.items():
                pred = clf.predict(desc)
                out[key] = float((pred == target).mean())
                out[key.replace("says_target", "predicted")] = dict(Counter(pred.tolist()))
            return out

        targets = [t for t in args.targets if t in motions]
        captions = {t: [query_c[i].caption for i in np.flatnonzero(q_motion == t)] for t in targets}
        shared = {"random": train_and_sample(random_keep, captions), "all": train_and_sample(list(range(n)), captions),
                  REFERENCE[0]: train_and_sample([], captions)}
        result = {}
        for target in targets:
            qi = np.flatnonzero(q_motion == target)
            kept = {"influence": [ids.index(c) for c, _, _ in curate(vec[n + qi] @ vec[:n].T, ids, keep=args.keep)],
                    "motion features": [ids.index(c) for c, _, _ in
                                        curate(feat[n + qi] @ feat[:n].T, ids, keep=args.keep)],
                    "random": random_keep, "all": list(range(n))}
            rows = {}
            for arm in ARMS:
                m = (shared[arm] if arm in shared else train_and_sample(kept[arm], {target: captions[target]}))[target]
                rows[arm] = {"kept_share": float((motion[kept[arm]] == target).mean()),
                             "kept_appearance": float((app[kept[arm]] == q_app[qi[0]]).mean()),
                             "kept": [ids[i] for i in kept[arm]], **measures(m, target)}
            rows[REFERENCE[0]] = measures(shared[REFERENCE[0]][target], target)
            rows[REFERENCE[1]] = measures((feat[n + qi], np.array(f_real)[n + qi]), target)
            rows[REFERENCE[2]] = measures((d_frozen[qi], np.array(f_frozen)[qi]), target)
            result[target] = rows
            log(f"[seed {seed}] target {target}: kept share " + ", ".join(
                f"{a} {rows[a]['kept_share']:.2f}" for a in ARMS) + "; classifier says target " + ", ".join(
                f"{a} {rows[a]['says_target']:.2f}" for a in ARMS + REFERENCE))
        t3 = time.perf_counter()
    log(f"[seed {seed}] {n} train + {len(query_c)} queries; base fine-tune {base.first_loss:.3f} -> "
        f"{base.last_loss:.3f} ({t1 - t0:.0f}s), read + vectors + features {t2 - t1:.0f}s, arms {t3 - t2:.0f}s; "
        f"classifier accuracy on real queries {ceiling}; decode check {check}")
    return {"targets": result, "classes": len(motions), "classifier_accuracy": ceiling["says_target"],
            "classifier_accuracy_train_centroids": ceiling["says_target_train"], "decode_check": check, "train": n,
            "queries": len(query_c), "kept": n_keep, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------ output

COLUMNS = (("kept_share", "kept: target motion"), ("kept_appearance", "kept: query appearance"),
           ("flow_px", "flow px/frame"), ("similarity", "similarity to target"),
           ("says_target", "classifier says target"),
           ("says_target_train", "… centroids from the training clips"))


def _cells(vals_by_key: dict[str, list[float]]) -> str:
    return " | ".join(pm(vals_by_key[k]) if vals_by_key.get(k) else "" for k, _ in COLUMNS)


def table(runs: list[dict], by_target: bool = False) -> str:
    targets = list(runs[0]["targets"])
    head = ("| arm | target | " if by_target else "| arm | ") + " | ".join(c for _, c in COLUMNS) + " |"
    lines = [head, "|---|" + ("---|" if by_target else "") + "---:|" * len(COLUMNS)]
    groups = [[t] for t in targets] if by_target else [targets]
    for rows_of in (ARMS, REFERENCE):
        for arm in rows_of:
            for group in groups:
                vals = {k: [r["targets"][t][arm][k] for r in runs for t in group if k in r["targets"][t][arm]]
                        for k, _ in COLUMNS}
                lines.append(f"| {arm} | " + (f"{group[0]} | " if by_target else "") + _cells(vals) + " |")
    k = runs[0]["classes"]
    c = f"{1 / k:.3f}"
    lines.append(("| chance | | " if by_target else "| chance | ") + f"{c} | {c} |  |  | {c} | {c} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (--quick: 0)")
    ap.add_argument("--targets", nargs="+", default=None, choices=MOTIONS,
                    help="target motions (default rotate translate; --quick: rotate)")
    ap.add_argument("--steps", type=int, default=None, help="base model fine-tuning steps (default 300; --quick: 20)")
    ap.add_argument("--ft-steps", type=int, default=None, help="steps per arm (default 150; --quick: 10)")
    ap.add_argument("--keep", type=float, default=0.1, help="fraction kept by the curated and random arms")
    ap.add_argument("--samples", type=int, default=None, help="sampling seeds per caption (default 4; --quick: 2)")
    ap.add_argument("--sample-steps", type=int, default=None, help="Euler steps per sample (default 20; --quick: 4)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--quick", action="store_true", help="a small smoke run for CI")
    ap.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    args = ap.parse_args(argv)
    q = args.quick
    args.seeds = args.seeds or ([0] if q else [0, 1, 2])
    args.targets = args.targets or (["rotate"] if q else ["rotate", "translate"])
    args.steps = args.steps or (20 if q else 300)
    args.ft_steps = args.ft_steps or (10 if q else 150)
    args.samples = args.samples or (2 if q else 4)
    args.sample_steps = args.sample_steps or (4 if q else 20)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    try:
        runs = [run_seed(s, args, log) for s in args.seeds]
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t_start
    r0 = runs[0]
    k = r0["classes"]
    checks = [r["decode_check"] for r in runs]
    print(f"\nmachine: {machine()} (ran with {args.threads} torch thread(s))")
    print(f"curation in small: {r0['train']} training clips, {r0['queries']} queries per seed; base model fine-tuned "
          f"{args.steps} steps, each arm {args.ft_steps} steps from the initial weights; kept {r0['kept']} clips "
          f"({args.keep:.0%}); {args.samples} samples per query caption, {args.sample_steps} Euler steps; seeds "
          f"{args.seeds}; targets {list(r0['targets'])}; mean ± sd over seeds x targets\n")
    print(f"pixel decoding (real clips encoded then decoded by the tiny VAE): PSNR "
          f"{pm([c['psnr_db'] for c in checks])} dB, mean optical flow {pm([c['flow_px_decoded'] for c in checks])} "
          f"px/frame against the input's {pm([c['flow_px_input'] for c in checks])}, flow correlation "
          f"{pm([c['flow_corr'] for c in checks])}\n")
    print(table(runs))
    print(f"\nchance {1 / k:.3f}: each motion (and each appearance) class is 1/{k} of the training clips; the "
          f"query's appearance never occurs with the target motion in training. Motion classifier accuracy on all "
          f"real held-out queries (its ceiling): {pm([r['classifier_accuracy'] for r in runs])} (centroids from "
          f"{r0['train']} independent clips), {pm([r['classifier_accuracy_train_centroids'] for r in runs])} "
          f"(centroids from the training clips)\n")
    if len(r0["targets"]) > 1:
        print(table(runs, by_target=True) + "\n")
    print(f"total {seconds:.0f} s; per-seed seconds: {', '.join('%.0f' % r['seconds'] for r in runs)}")
    out = {"seeds": args.seeds, "targets": list(r0["targets"]), "steps": args.steps, "ft_steps": args.ft_steps,
           "samples": args.samples, "sample_steps": args.sample_steps, "keep": args.keep, "runs": runs,
           "seconds": seconds, "machine": machine(), "table": table(runs)}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
