"""The demo: synth -> finetune -> build (flow mask and no mask) -> query held-out clips -> generate a video and
attribute it, with timings.

It prints the top-k of one held-out query beside the query's motion class and appearance, the share of the
top-k sharing the query's motion class over all held-out queries (with and without the mask, against chance),
a self-check (a training clip queried with its own caption comes back first with a score near 1), and the top-5
of a video the fine-tuned model generates from that clip's caption (``generated.mp4``).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable

_SUBDIRS = ("train", "queries", "model", "index-flow", "index-none")
MARKER = ".motive-demo"  # written into a workdir the demo owns; only such a folder is ever cleared


def _appearance(meta: dict) -> str:
    return f"{meta.get('colour', '?')} {meta.get('texture', '?')} {meta.get('shape', '?')}"


def run_demo(workdir: str | Path, n_clips: int = 48, n_queries: int = 12, steps: int = 300, k: int = 10,
             seed: int = 0, quiet: bool = False, echo: Callable[[str], None] = print, bar=None,
             motion: str | None = None) -> dict:
    from .api import MotiveIndex
    from .backbones import build_tiny
    from .errors import IndexStateError
    from .finetune import finetune
    from .generate import generate_video
    from .manifest import read_manifest
    from .synthetic import generate_dataset
    from .video import write_video

    workdir = Path(workdir).resolve()
    if workdir.is_dir() and any(workdir.iterdir()) and not (workdir / MARKER).is_file():
        raise IndexStateError(f"--workdir {str(workdir)!r} is not empty and was not made by the demo; "
                               f"give an empty or new folder")
    for sub in _SUBDIRS:  # a fresh run every time: the model is retrained, so old indexes would not match it
        shutil.rmtree(workdir / sub, ignore_errors=True)
    (workdir / "generated.mp4").unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by `motive-index demo`; the demo clears its own subfolders here\n")
    stage: dict[str, float] = {}

    def bar_cb(desc):
        if bar is None:
            from contextlib import nullcontext

            return nullcontext(None)
        return bar(desc, quiet)

    t = time.perf_counter()
    train_manifest = generate_dataset(workdir / "train", n_clips, seed, prefix="clip")
    query_manifest = generate_dataset(workdir / "queries", n_queries, seed + 1000, prefix="query")
    stage["synth"] = time.perf_counter() - t
    echo(f"[synth] {n_clips} training clips in {workdir / 'train'}, {n_queries} held-out queries in "
         f"{workdir / 'queries'} ({stage['synth']:.1f}s)")

    t = time.perf_counter()
    train = read_manifest(train_manifest)
    backbone = build_tiny(seed)
    with bar_cb("finetune") as cb:
        rep = finetune(backbone, train, steps=steps, seed=seed, progress=cb)
    backbone.save_pretrained(workdir / "model")
    stage["finetune"] = time.perf_counter() - t
    echo(f"[finetune] tiny Wan ({sum(p.numel() for p in backbone.transformer.parameters()):,} params), {steps} "
         f"steps, loss {rep.first_loss:.3f} -> {rep.last_loss:.3f}, saved to {workdir / 'model'} "
         f"({stage['finetune']:.1f}s)")

    indexes = {}
    for mask in ("flow", "none"):
        t = time.perf_counter()
        with bar_cb(f"build --mask {mask}") as cb:
            idx, brep = MotiveIndex.build(train, workdir / "model", workdir / f"index-{mask}", mask=mask,
                                          motion=motion if mask == "flow" else None,
                                          features=mask == "flow", progress=cb)  # one motion channel is enough
        stage[f"build ({mask})"] = time.perf_counter() - t
        per_clip = {s: v / max(brep.added, 1) * 1000 for s, v in brep.stage_seconds.items()}
        echo(f"[build --mask {mask}] {brep.size} clips in {stage[f'build ({mask})']:.1f}s; per clip: "
             + ", ".join(f"{s} {v:.0f}ms" for s, v in per_clip.items()))
        indexes[mask] = idx

    queries = read_manifest(query_manifest)
    train_motion = Counter(c.metadata.get("motion") for c in train)
    shares: dict[str, list[float]] = {}
    query_ms: list[float] = []
    first_table = None
    def share(hits, q) -> float:
        return sum(h.metadata.get("motion") == q.metadata.get("motion") for h in hits) / max(len(hits), 1)

    shares["similarity"] = []
    for mask, idx in indexes.items():
        shares[mask] = []
        for q in queries:
            res = idx.query(q.path, prompt=q.caption, k=k, similar=k if mask == "flow" else 0)
            shares[mask].append(share(res.hits, q))
            if mask == "flow":
                shares["similarity"].append(share(res.similar, q))
            query_ms.append(res.timings["total"] * 1000)
            if first_table is None:
                first_table = (q, res)
    q, res = first_table
    echo(f"\nquery {Path(q.path).name}: motion={q.metadata.get('motion')}, appearance={_appearance(q.metadata)}, "
         f"prompt={q.caption!r}   (index-flow, top {k})")
    for title, hits in (("influence", res.hits), ("motion similarity (not influence)", res.similar)):
        echo(f"{title}:")
        echo(f"{'rank':>4}  {'score':>7}  {'clip_id':<10} {'motion':<10} {'appearance':<26} same motion?")
        for h in hits:
            m = h.metadata.get("motion")
            echo(f"{h.rank:>4}  {h.score:>7.4f}  {h.clip_id:<10} {m:<10} {_appearance(h.metadata):<26} "
                 f"{'yes' if m == q.metadata.get('motion') else ''}")
    echo("query time: " + ", ".join(f"{s} {v * 1000:.0f}ms" for s, v in res.timings.items()))

    chance = sum(train_motion[q.metadata.get("motion")] for q in queries) / (len(queries) * len(train))
    echo(f"\nshare of the top-{k} with the query's motion class, over {len(queries)} held-out queries:")
    summary = {}
    for mask in ("flow", "none", "similarity"):
        vals = shares[mask]
        summary[mask] = mean = sum(vals) / len(vals)
        label = "motion similarity (not influence)" if mask == "similarity" else f"influence, --mask {mask}"
        echo(f"  {label:<34} {mean:.3f}")
    echo(f"  {'chance':<34} {chance:.3f}")

    probe = train[0]
    top = indexes["flow"].query(probe.path, prompt=probe.caption, k=1).hits[0]
    echo(f"\nself-check: training clip {probe.clip_id} with its own caption -> first hit {top.clip_id} "
         f"(score {top.score:.4f})")
    # what the tool is for: a video the model generated, attributed to the training clips
    t = time.perf_counter()
    gen_path = workdir / "generated.mp4"
    write_video(gen_path, generate_video(backbone, probe.caption, steps=20, seed=seed), backbone.spec.fps)
    gen = indexes["flow"].query(gen_path, prompt=probe.caption, k=5, similar=5)
    stage["generate + query"] = time.perf_counter() - t
    echo(f"\ngenerated {gen_path.name} from {probe.caption!r} (the fine-tuned model, 20 Euler steps, decoded by the "
         f"trained tiny VAE); its top-5:")
    for title, hits in (("influence", gen.hits), ("motion similarity", gen.similar)):
        echo(f"  {title + ':':<19} " + ", ".join(f"{h.clip_id} ({h.metadata.get('motion')}, {h.score:.3f})"
                                                for h in hits))
    echo("\nstage times: " + ", ".join(f"{s} {v:.1f}s" for s, v in stage.items())
         + f"; query median {sorted(query_ms)[len(query_ms) // 2]:.0f}ms")
    echo(f"files: {workdir} (train/, queries/, model/, index-flow/, index-none/, generated.mp4)")
    echo(f"try:   motive-index query {queries[0].path} --index {workdir / 'index-flow'} --prompt "
         f"{queries[0].caption!r}")
    return {"share": summary, "chance": chance, "stage_seconds": stage, "self_check": (top.clip_id, top.score),
            "generated": {"path": str(gen_path), "influence": [h.clip_id for h in gen.hits],
                          "similarity": [h.clip_id for h in gen.similar]}}
