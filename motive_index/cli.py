"""The `motive-index` command line: thin wrappers over :mod:`motive_index.api` (the only module importing click).

Exit codes: 0 ok; 1 unexpected error; 2 bad usage, manifest, model or index; 3 bad video; 4 bad gradient;
5 a build where some clips failed (the rest are stored); 6 the index is busy (another writer, with --no-wait).
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from . import __version__
from .config import LOSS_KINDS, MOTION_KINDS, PRECISIONS
from .errors import MotiveIndexError

EXIT_PARTIAL = 5


@contextmanager
def _bar(desc: str, quiet: bool = False):
    """A tqdm progress bar on stderr as a progress(i, n, label) callback; a new stage (new n) starts a new bar.

    Hidden with --quiet, and when stderr is not a terminal (tqdm's disable=None)."""
    from tqdm import tqdm

    state: dict = {}

    def progress(i: int, n: int, label: str = "") -> None:
        bar = state.get("bar")
        if bar is None or bar.total != n:
            if bar is not None:
                bar.close()
            bar = state["bar"] = tqdm(total=n, desc=desc, file=sys.stderr, disable=True if quiet else None,
                                      dynamic_ncols=True, leave=False)
        bar.n = i
        if label:
            bar.set_postfix_str(label, refresh=False)
        bar.refresh()

    try:
        yield progress
    finally:
        if "bar" in state:
            state["bar"].close()


def _emit(obj, as_json: bool, text: str) -> None:
    click.echo(json.dumps(obj, indent=2, default=str) if as_json else text)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MotiveIndexError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:  # a path that cannot be written or read: say which, without a traceback
            click.echo(f"error: {e}", err=True)
            ctx.exit(1)


def _device(ctx, param, value: str) -> str:
    """Validate --device: 'cpu', 'cuda' or 'cuda:N', and only where CUDA is present."""
    if value == "cpu":  # the default: no torch import for it (a query through --server needs no torch)
        return value
    import torch

    try:
        dev = torch.device(value)
    except RuntimeError:
        raise click.BadParameter(f"{value!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise click.BadParameter(f"{value!r}: only cpu and cuda are supported")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter(f"{value!r}: this torch has no CUDA device; use --device cpu")
    return value


def _mask_options(f):
    """--motion, --flow, --flow-model, --normalize, --flow-steps, --camera-fit, --camera-gate: how the motion mask
    is made (all part of the fingerprint)."""
    from .config import CAMERA_FITS, FLOW_METHODS, MAX_FLOW_STEPS, MOTION_KINDS, NORMALIZATIONS, MaskConfig

    f = click.option("--camera-gate", type=click.FloatRange(0, 255), default=None,
                     help="With --motion object: residual motion where the camera's warp explains a pixel's look "
                          "(photometric error in gray levels over this) counts less, while the camera moves "
                          f"(default {MaskConfig().camera_gate:g}; 0: off, as indexes made before it).")(f)
    f = click.option("--camera-fit", type=click.Choice(CAMERA_FITS), default=None,
                     help="With --motion object: fit the camera to the dense flow (flow, default) or to sparse "
                          "tracks (tracks, as indexes made before it).")(f)
    f = click.option("--flow-steps", type=click.IntRange(1, MAX_FLOW_STEPS), default=None,
                     help="Flow between two standard frames runs through up to this many steps of source frames "
                          f"(default {MaskConfig().flow_steps}; 1: between the standard frames alone, as indexes "
                          "made before it).")(f)
    f = click.option("--normalize", type=click.Choice(NORMALIZATIONS), default=None,
                     help="minmax (the paper's, default) or percentile (robust to outlier pixels).")(f)
    f = click.option("--flow-model", default=None, type=click.Path(exists=True, dir_okay=False, resolve_path=True),
                     help="With --flow learned: your exported flow model (.pt2 or TorchScript .pt).")(f)
    f = click.option("--flow", type=click.Choice(FLOW_METHODS), default=None,
                     help="Optical flow estimator (default dis).")(f)
    f = click.option("--motion", type=click.Choice(MOTION_KINDS), default=None,
                     help="object: subtract the camera's motion; all: keep it (the paper's mask).")(f)
    return f


def _mask_config(kind: str = "flow", base=None, **options):
    """A MaskConfig from the options given (``_mask_options``' values, None where not given), over ``base`` (an
    index's settings) or the defaults."""
    import dataclasses

    from .config import MaskConfig

    given = {"kind": kind, **options}
    if options.get("flow") and options["flow"] != "learned":
        given["flow_model"] = ""
    try:  # every field, base's or the defaults' (from_dict would read a missing flow_steps as an old index's)
        return MaskConfig(**{**dataclasses.asdict(base if base else MaskConfig()),
                             **{k: v for k, v in given.items() if v is not None}})
    except ValueError as e:
        raise click.UsageError(str(e)) from None


_DEVICE = click.option("--device", default="cpu", show_default=True, callback=_device,
                       help="cpu, cuda or cuda:N.")
def _run_options(f):
    """--engine, --address, --workers, --gpus-per-worker: where a build's per-clip work runs."""
    f = click.option("--gpus-per-worker", default=0.0, show_default=True, type=click.FloatRange(0),
                     help="With --engine ray: GPUs each model worker takes (0: CPU workers).")(f)
    f = click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
                     help="With --engine ray: model workers (each loads the model once).")(f)
    f = click.option("--address", default=None,
                     help="With --engine ray: the cluster to join (auto, ray://host:port); default: a local one.")(f)
    f = click.option("--engine", "executor", type=click.Choice(["local", "ray"]), default="local",
                     show_default=True,
                     help="Run the per-clip work here, or on Ray (the ray extra; the same vectors).")(f)
    return f


_NO_WAIT = click.option("--no-wait", "no_wait", is_flag=True,
                        help="Fail at once (exit 6) if another writer holds the index's write lock, instead of "
                             "waiting for it.")


class _IndexType(click.ParamType):
    """``--index``: a folder (a Path), or a prefix on object storage (``s3://bucket/prefix``, kept as text)."""

    name = "DIR|s3://BUCKET/PREFIX"

    def convert(self, value, param, ctx):
        from .location import Location, is_uri

        if isinstance(value, Path):
            return value
        if is_uri(value):
            try:
                Location.of(value)
            except ValueError as e:
                self.fail(str(e), param, ctx)
            return value
        path = Path(value)
        if path.is_file():
            self.fail(f"{value!r} is a file; --index names a folder (or s3://bucket/prefix)", param, ctx)
        return path


INDEX = _IndexType()


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="motive-index")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (index loads and rebuilds, failures).")
def main(verbose: bool) -> None:
    """Which training clips most influenced the motion of a generated video."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:  # our own INFO lines only: not faiss's loader or other libraries' chatter
        logging.getLogger("motive_index").setLevel(logging.INFO)


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips", "n_clips", default=48, show_default=True, type=click.IntRange(1), help="Number of clips.")
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same clips).")
@click.option("--prefix", default="clip", show_default=True, help="File and clip_id prefix.")
@click.option("--min-frames", default=17, show_default=True, type=click.IntRange(2))
@click.option("--max-frames", default=40, show_default=True, type=click.IntRange(2))
@click.option("--quiet", is_flag=True)
def synth(out_dir: Path, n_clips: int, seed: int, prefix: str, min_frames: int, max_frames: int, quiet: bool):
    """Write procedural clips with known motion and appearance, and OUT_DIR/manifest.csv."""
    from .synthetic import generate_dataset

    if max_frames < min_frames:
        raise click.BadParameter(f"--max-frames {max_frames} < --min-frames {min_frames}")
    with _bar("synth", quiet) as bar:
        manifest = generate_dataset(out_dir, n_clips, seed, frames_range=(min_frames, max_frames), prefix=prefix,
                                    progress=lambda i, n: bar(i, n))
    click.echo(f"wrote {n_clips} clips and {manifest}")


@main.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", default="tiny", show_default=True, help="'tiny' or a local diffusers model directory.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to save the fine-tuned model.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True)
@_DEVICE
@click.option("--quiet", is_flag=True)
def finetune(manifest, model, out_dir, steps, lr, batch_size, seed, device, quiet):
    """Fine-tune MODEL's transformer on MANIFEST's clips and save it to --out."""
    from .backbones import load_backbone
    from .finetune import finetune as run
    from .manifest import read_manifest

    clips = read_manifest(manifest)
    backbone = load_backbone(model, device=device)
    with _bar("finetune", quiet) as bar:
        report = run(backbone, clips, steps=steps, lr=lr, batch_size=batch_size, seed=seed, progress=bar)
    backbone.save_pretrained(out_dir)
    for cid, why in report.clips_failed.items():
        click.echo(f"skipped {cid}: {why}", err=True)
    click.echo(f"fine-tuned {report.steps} steps on {report.clips_used} clips in {report.seconds:.1f}s "
               f"(loss {report.first_loss:.4f} -> {report.last_loss:.4f}); saved to {out_dir}")


@main.command()
@click.option("--model", required=True, help="'tiny' or a local diffusers model directory (Wan family).")
@click.option("--prompt", required=True, help="The caption to generate from.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FILE.mp4 to write.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds the initial noise.")
@click.option("--steps", default=20, show_default=True, type=click.IntRange(1),
              help="Euler steps of the flow-matching sampler.")
@_DEVICE
@click.option("--json", "as_json", is_flag=True)
def generate(model, prompt, out, seed, steps, device, as_json):
    """Sample a clip from --prompt with the model's own flow-matching sampler and write it as an mp4, at the
    model's standard shape. The tiny preset's transformer is untrained until fine-tuned (`motive-index
    finetune`): its clips are noise until then; a fine-tuned tiny model's decode through the trained tiny VAE."""
    import time

    from .backbones import load_backbone
    from .generate import generate_video
    from .video import write_video

    if out.suffix.lower() != ".mp4":
        raise click.BadParameter(f"{str(out)!r}: write a .mp4 file", param_hint="--out")
    t = time.perf_counter()
    backbone = load_backbone(model, device=device)
    try:
        frames = generate_video(backbone, prompt, steps=steps, seed=seed)
    except NotImplementedError as e:
        raise click.UsageError(str(e)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, frames, backbone.spec.fps)
    seconds = time.perf_counter() - t
    t_, h, w = frames.shape[:3]
    _emit({"out": str(out), "frames": t_, "height": h, "width": w, "fps": backbone.spec.fps, "seed": seed,
           "steps": steps, "seconds": seconds}, as_json,
          f"wrote {out}: {t_} frames of {w}x{h} at {backbone.spec.fps:g} fps ({steps} steps, seed {seed}) in "
          f"{seconds:.1f}s")


@main.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="'tiny' or a local diffusers model directory.")
@click.option("--index", "index_dir", required=True, type=INDEX)
@click.option("--mask", type=click.Choice(["flow", "none"]), default="flow", show_default=True,
              help="flow: the motion-weighted loss; none: the ordinary loss (baseline).")
@_mask_options
@click.option("--dim", default=512, show_default=True, type=click.IntRange(1), help="Projected dimensions.")
@click.option("--samples", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="(timestep, noise) pairs averaged per clip: 1 is the paper's single sample at t=751; K > 1 "
                   "uses K strata of [0, 1000) (K times the cost).")
@click.option("--params", "params", multiple=True, metavar="PATTERN",
              help="Only transformer parameters whose name matches this fnmatch pattern (repeatable), "
                   "e.g. 'blocks.*.attn1.*'. Default: all.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="bf16: forward under bf16 autocast (faster on GPUs; vectors differ slightly from fp32).")
@click.option("--loss", type=click.Choice(LOSS_KINDS), default="mse", show_default=True,
              help="mse: the paper's masked squared error; td: the masked error of the residual's frame-to-frame "
                   "differences (static appearance errors cancel). See benchmarks/quality.py.")
@click.option("--features/--no-features", default=True, show_default=True,
              help="Also keep the motion-feature channel (flow descriptors: which clips move like a query).")
@click.option("--checkpointing", is_flag=True,
              help="Gradient checkpointing: less memory, more time; same vectors. Kept for later adds/queries.")
@_DEVICE
@_run_options
@_NO_WAIT
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", is_flag=True)
def build(manifest, model, index_dir, mask, motion, flow, flow_model, normalize, flow_steps, camera_fit, camera_gate,
          dim, samples, params, precision, loss, features, checkpointing, device, executor, address, workers,
          gpus_per_worker, no_wait, as_json, quiet):
    """Embed MANIFEST's clips into the index at --index (resumes; skips clips already stored)."""
    from .api import MotiveIndex

    cfg = _mask_config(mask, motion=motion, flow=flow, flow_model=flow_model, normalize=normalize,
                       flow_steps=flow_steps, camera_fit=camera_fit, camera_gate=camera_gate)
    with _bar("build", quiet) as bar:
        _, report = MotiveIndex.build(manifest, model, index_dir, mask=cfg, dim=dim, samples=samples,
                                      params=params, precision=precision, loss=loss, features=features,
                                      checkpointing=checkpointing, device=device, progress=bar,
                                      wait=not no_wait, **_run(executor, address, workers, gpus_per_worker))
    _emit(report.to_dict(), as_json, _report_text(report))
    if report.failed:
        sys.exit(EXIT_PARTIAL)


def _run(executor, address, workers, gpus_per_worker) -> dict:
    if executor == "local" and (address or workers != 1 or gpus_per_worker):
        raise click.UsageError("--address, --workers and --gpus-per-worker go with --engine ray")
    if executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise click.UsageError("--engine ray needs the ray extra: pip install 'motive-index[ray]'")
    return {"executor": executor, "address": address, "workers": workers, "gpus_per_worker": gpus_per_worker}


def _search_text(st: dict) -> str:
    kind = st.get("kind", "?")
    text = f"{kind}"
    if kind in ("ivf", "compressed"):
        rerank = f", exact re-rank of {st['rerank']} x k candidates" if st.get("rerank") else ""
        text += (f" (nlist {st.get('nlist')}, nprobe {st.get('nprobe')}{rerank}, measured recall@10 "
                 f"{st.get('recall_at_10')})")
    elif kind == "hnsw":
        text += (f" (efSearch {st.get('ef_search')}, measured recall@10 {st.get('recall_at_10')}, "
                 f"{st.get('tombstones', 0)} removed clips filtered"
                 + (", rebuilding in the background" if st.get("rebuilding") else "") + ")")
    if st.get("fallback"):
        text += f" (fallback: {st['fallback']})"
    if st.get("p50_ms") is not None:
        text += f", p50 {st['p50_ms']:.2f} ms per query"
    if st.get("stale"):
        text += " (behind the store: the next query catches it up)"
    return text


def _report_text(report) -> str:
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in report.stage_seconds.items())
    text = (f"added {report.added}, already stored {report.skipped}, removed earlier (not re-added) "
            f"{report.removed}, failed {len(report.failed)}; index size {report.size}; {report.seconds:.1f}s"
            + (f" ({stages})" if stages else ""))
    for cid, why in report.failed.items():
        text += f"\nfailed {cid}: {why}"
    return text


@main.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "index_dir", required=True, type=INDEX)
@_DEVICE
@_run_options
@_NO_WAIT
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", is_flag=True)
def add(manifest, index_dir, device, executor, address, workers, gpus_per_worker, no_wait, as_json, quiet):
    """Embed MANIFEST's clips not yet in the index, with the index's own model and settings."""
    from .api import MotiveIndex

    idx = MotiveIndex.open(index_dir, device=device)
    with _bar("add", quiet) as bar:
        report = idx.add(manifest, progress=bar, wait=not no_wait,
                         **_run(executor, address, workers, gpus_per_worker))
    _emit(report.to_dict(), as_json, _report_text(report))
    if report.failed:
        sys.exit(EXIT_PARTIAL)


@main.command()
@click.argument("clip_ids", nargs=-1)
@click.option("--index", "index_dir", required=True, type=INDEX)
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Also remove every clip_id of this manifest.")
@click.option("--reason", default="", help="Recorded with each removal (e.g. 'licence withdrawn').")
@_NO_WAIT
@click.option("--json", "as_json", is_flag=True)
def remove(clip_ids, index_dir, manifest, reason, no_wait, as_json):
    """Remove clips: from the moment this returns they are in no result, and no later add stores them again.
    Run `purge` to erase them from the index's old versions on disk as well."""
    from .api import MotiveIndex

    if manifest:
        from .manifest import read_manifest  # pandas: only when a manifest is given

    ids = list(clip_ids) + ([c.clip_id for c in read_manifest(manifest)] if manifest else [])
    if not ids:
        raise click.UsageError("give CLIP_IDs or --manifest")
    idx = MotiveIndex.open(index_dir)
    n = idx.remove(ids, reason=reason, wait=not no_wait)
    _emit({"removed": n, "requested": len(set(ids)), "size": len(idx.store)}, as_json,
          f"removed {n} of {len(set(ids))} requested clips (the rest were not stored; all are refused from now "
          f"on); index size {len(idx.store)}. Run `motive-index purge --index {index_dir}` to erase old versions.")


@main.command()
@click.option("--index", "index_dir", required=True, type=INDEX)
@_NO_WAIT
@click.option("--json", "as_json", is_flag=True)
def purge(index_dir, no_wait, as_json):
    """Erase old versions of the index's tables from disk (removed clips' vectors included)."""
    from .api import MotiveIndex

    deleted = MotiveIndex.open(index_dir).purge(wait=not no_wait)
    _emit({"versions_deleted": deleted}, as_json,
          "purged: " + ", ".join(f"{k} {v} old versions" for k, v in deleted.items()))


def _pct(hit) -> str:
    return f"{hit.percentile:>5.1f}" if hit.percentile is not None else f"{'-':>5}"


def _calibration_text(cal: dict) -> str:
    out = []
    for channel, c in cal.items():
        if c is None:
            out.append(f"\n  null ({channel}): not measured yet (the first query measures it)")
            continue
        q = c["quantiles"]
        out.append(f"\n  null ({channel}): p50 {q['p50']:.4f}, p99 {q['p99']:.4f}, p99.9 {q['p99.9']:.4f} "
                   f"({c['pairs']:,} pairs of {c['sample']} clips, store version {c['store_version']}"
                   + (", stale" if c["stale"] else "") + ")")
    return "".join(out)


@main.command()
@click.argument("video", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--index", "index_dir", default=None, type=INDEX,
              help="The index (needed unless --server is given).")
@click.option("--server", envvar="MOTIVE_INDEX_SERVER", default=None,
              help="Ask a running `motive-index serve` at this URL (env MOTIVE_INDEX_SERVER) instead of loading "
                   "the model here: a cold query in well under a second. Its read token: MOTIVE_INDEX_TOKEN.")
@click.option("--prompt", default="", help="The prompt the video was generated from.")
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1))
@click.option("--negative", is_flag=True, help="Return the most opposed clips (most negative scores).")
@click.option("--model", default=None, help="Override the model recorded in the index (same identity).")
@click.option("--motion", type=click.Choice(MOTION_KINDS), default=None,
              help="Must match the index's (it is part of the fingerprint); checked, not changed.")
@click.option("--similar", default=None, type=click.IntRange(0),
              help="How many motion-similar clips to list beside the influence hits (default: k; 0: none).")
@click.option("--combined", is_flag=True,
              help="Also list the 3k most motion-similar clips re-ranked by influence (top k).")
@_DEVICE
@click.option("--json", "as_json", is_flag=True)
def query(video, index_dir, server, prompt, k, negative, model, motion, similar, combined, device, as_json):
    """The training clips that most influenced the motion of VIDEO, and the clips that move most like it."""
    if server:
        import os

        from .client import ServiceClient

        if model or motion or device != "cpu":
            raise click.UsageError("--model, --motion and --device are the server's own with --server")
        client = ServiceClient(server, token=os.environ.get("MOTIVE_INDEX_TOKEN"))
        try:
            result = client.query(video, prompt=prompt, k=k, negative=negative, similar=similar, combined=combined)
        finally:
            client.close()
    elif index_dir is None:
        raise click.UsageError("give --index INDEX_DIR (or --server URL)")
    else:
        from .api import MotiveIndex

        result = MotiveIndex.open(index_dir, device=device, model=model).query(
            video, prompt=prompt, k=k, negative=negative, motion=motion, similar=similar, combined=combined)
    title = "most opposed" if negative else "most influential"
    lines = [f"warning: {w}" for w in result.query.get("warnings", [])]
    lines += [f"influence: the training clips {title} to this motion (score: gradient cosine; pct: percentile "
              f"among the index's own clip-to-clip scores)", f"{'rank':>4}  {'score':>7}  {'pct':>5}  clip_id / caption"]
    lines += [f"{h.rank:>4}  {h.score:>7.4f}  {_pct(h)}  {h.clip_id}  {h.caption}" for h in result.hits]
    if result.similar:
        lines += ["", "motion similarity: clips that move like this; not influence (score: motion-feature cosine)",
                  f"{'rank':>4}  {'score':>7}  {'pct':>5}  clip_id / caption"]
        lines += [f"{h.rank:>4}  {h.score:>7.4f}  {_pct(h)}  {h.clip_id}  {h.caption}" for h in result.similar]
    if result.combined:
        lines += ["", f"combined: the {3 * k} most motion-similar clips ordered by influence",
                  f"{'rank':>4}  {'influence':>9}  {'pct':>5}  {'similarity':>10}  clip_id / caption"]
        lines += [f"{h.rank:>4}  {h.score:>9.4f}  {_pct(h)}  {h.similarity:>10.4f}  {h.clip_id}  {h.caption}"
                  for h in result.combined]
    lines.append("time: " + ", ".join(f"{k} {v * 1000:.0f}ms" for k, v in result.timings.items()))
    _emit(result.to_dict(), as_json, "\n".join(lines))


@main.command()
@click.argument("video", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--index", "index_dir", required=True, type=INDEX)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The evidence page: one self-contained HTML file (images inlined).")
@click.option("--png", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the same evidence as one PNG contact sheet.")
@click.option("--prompt", default="", help="The prompt the video was generated from.")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1),
              help="Influence and opposed clips shown (each).")
@click.option("--similar", default=None, type=click.IntRange(0), help="Motion-similar clips shown (default: k).")
@click.option("--start-sec", type=click.FloatRange(min=0), default=None, help="As a manifest's start_sec.")
@click.option("--end-sec", type=click.FloatRange(min=0), default=None, help="As a manifest's end_sec.")
@click.option("--model", default=None, help="Override the model recorded in the index (same identity).")
@_DEVICE
@click.option("--json", "as_json", is_flag=True)
def report(video, index_dir, out, png, prompt, k, similar, start_sec, end_sec, model, device, as_json):
    """An evidence page for a reviewer: VIDEO's keyframes and motion heatmap, the clips that most influenced
    and most opposed its motion (keyframes, score, percentile, metadata), and the motion-similar clips."""
    from ._io import atomic_write
    from .api import MotiveIndex
    from .report import opposed_hits, render_report, render_sheet

    if out.suffix.lower() not in (".html", ".htm"):
        raise click.BadParameter(f"{str(out)!r}: the page is an .html file", param_hint="--out")
    if png is not None and png.suffix.lower() != ".png":
        raise click.BadParameter(f"{str(png)!r}: the sheet is a .png file", param_hint="--png")
    idx = MotiveIndex.open(index_dir, device=device, model=model)
    result = idx.query(video, prompt=prompt, k=k, similar=similar, start_sec=start_sec, end_sec=end_sec)
    opposed = opposed_hits(idx, result, video, start_sec=start_sec, end_sec=end_sec)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, render_report(idx, result, video, start_sec=start_sec, end_sec=end_sec, opposed=opposed))
    if png is not None:
        render_sheet(idx, result, video, png, start_sec=start_sec, end_sec=end_sec, opposed=opposed)
    d = {"out": str(out), "png": str(png) if png else None, "hits": len(result.hits), "opposed": len(opposed),
         "similar": len(result.similar), "warnings": result.query.get("warnings", [])}
    _emit(d, as_json, f"wrote {out}" + (f" and {png}" if png else "") + f": {len(result.hits)} influence, "
                      f"{len(opposed)} opposed, {len(result.similar)} motion-similar clips")


@main.command()
@click.argument("queries", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--index", "index_dir", required=True, type=INDEX)
@click.option("--keep", default=0.1, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="Fraction of the stored clips to keep.")
@click.option("--percentile", default=90.0, show_default=True, type=click.FloatRange(0, 100, max_open=True),
              help="Each query votes for the clips above this percentile of its own scores.")
@click.option("--by", type=click.Choice(["influence", "similarity"]), default="influence", show_default=True,
              help="Score by influence (gradients) or by motion similarity (the motion-feature channel).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the kept clips as a CSV manifest (absolute paths) to fine-tune on.")
@_DEVICE
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True)
def curate(queries, index_dir, keep, percentile, by, out, device, as_json, quiet):
    """Keep the stored clips that most shaped the motions of QUERIES (a manifest): majority vote of the queries."""
    from .api import MotiveIndex
    from .manifest import write_manifest

    with _bar("curate", quiet) as bar:
        res = MotiveIndex.open(index_dir, device=device).curate(queries, keep=keep, percentile=percentile, by=by,
                                                              progress=bar)
    if out is not None:
        write_manifest(out, [{"clip_id": r["clip_id"], "path": r["path"], "caption": r["caption"],
                              "votes": r["votes"], "score": r["score"]} for r in res["kept"]])
    lines = [f"kept {len(res['kept'])} of {res['size']} clips by {by} (votes of {res['queries']} queries, each "
             f"above its {percentile:g}th percentile)" + (f"; manifest: {out}" if out else ""),
             f"{'votes':>5}  {'score':>7}  clip_id / caption"]
    lines += [f"{r['votes']:>5}  {r['score']:>7.4f}  {r['clip_id']}  {r['caption']}" for r in res["kept"]]
    lines += [f"failed {q}: {why}" for q, why in res["failed"].items()]
    _emit(res, as_json, "\n".join(lines))


@main.command()
@click.argument("video", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="FILE.npy (float32 (frames, height, width) in [0, 1]), FILE.png (a contact sheet) or FILE.mp4.")
@click.option("--model", default=None, help="Standardize to this model's shape ('tiny' or a model directory).")
@click.option("--index", "index_dir", default=None, type=INDEX,
              help="Use this index's shape and mask settings (options given here override them).")
@_mask_options
@click.option("--start-sec", type=click.FloatRange(min=0), default=None, help="As a manifest's start_sec.")
@click.option("--end-sec", type=click.FloatRange(min=0), default=None, help="As a manifest's end_sec.")
@click.option("--json", "as_json", is_flag=True)
def mask(video, out, model, index_dir, motion, flow, flow_model, normalize, flow_steps, camera_fit, camera_gate,
         start_sec, end_sec, as_json):
    """Write the motion mask of VIDEO, on its standardized frames, as the build would compute it."""
    from .api import MotiveIndex, compute_mask
    from .backbones import read_spec
    from .config import MaskConfig, VideoSpec
    from .report import MASK_SUFFIXES, write_mask

    if out.suffix.lower() not in MASK_SUFFIXES:
        raise click.BadParameter(f"{str(out)!r}: use a .npy, .png or .mp4 file", param_hint="--out")
    if index_dir is not None and model is not None:
        raise click.UsageError("give --model or --index, not both")
    base, spec = None, VideoSpec()
    if index_dir is not None:
        fp = MotiveIndex.open(index_dir).store.fingerprint
        stored = dict(fp["mask"])
        if stored.get("flow") == "learned":  # the index keeps the flow model's hash, not its path
            if not flow_model:
                raise click.UsageError("this index uses a learned flow model: pass it again with --flow-model")
            stored["flow_model"] = flow_model
        base, spec = MaskConfig.from_dict(stored), VideoSpec.from_dict(fp["video"])
    elif model is not None:
        spec = read_spec(model)
    cfg = _mask_config("flow", base=base, motion=motion, flow=flow, flow_model=flow_model, normalize=normalize,
                       flow_steps=flow_steps, camera_fit=camera_fit, camera_gate=camera_gate)
    frames, mm = compute_mask(video, cfg, spec, start_sec=start_sec, end_sec=end_sec)
    path = write_mask(out, frames, mm.weight, spec.fps, static=mm.static)
    d = {"out": str(path), "shape": list(mm.weight.shape), "static": mm.static, "max_flow_px": mm.max_flow_px,
         "mask": cfg.to_dict(), **mm.info}
    _emit(d, as_json, f"wrote {path}: {mm.weight.shape[0]} frames of {mm.weight.shape[1]}x{mm.weight.shape[2]}, "
                      f"motion {cfg.motion}, flow {cfg.flow}, max flow {mm.max_flow_px:.2f}px"
                      + (", static (uniform weight)" if mm.static else "")
                      + (f", camera fitted on {mm.info['camera_fits']}/{mm.info['camera_pairs']} frame pairs"
                         if "camera_fits" in mm.info else ""))


@main.command()
@click.option("--index", "index_dir", required=True, type=INDEX)
@click.option("--verify", is_flag=True,
              help="Rehash the model's weights in full and compare them with the fingerprint (slow for big models).")
@click.option("--json", "as_json", is_flag=True)
def info(index_dir, verify, as_json):
    """Size, fingerprint, model and store version of an index."""
    from .summary import fast_info

    d = None if verify else fast_info(index_dir)  # from summary.json while the tables are unchanged
    if d is None:
        from .api import MotiveIndex

        d = MotiveIndex.open(index_dir).info(verify=verify)
    fp = d["fingerprint"]
    text = (f"index {d['index']}\n  clips {d['size']} (failed {d['failed']}), store version {d['store_version']}\n"
            f"  model {d['model']} ({fp['model']['family']}, weights {fp['model']['weights']}, "
            f"{fp['model']['num_params']:,} params)\n  model files: {d['model_files']}\n"
            f"  video {fp['video']}\n  mask {fp['mask']}\n  estimator {fp['estimator']}\n"
            f"  projection {fp['projection']}\n"
            f"  search {_search_text(d['search'])}" + _calibration_text(d["calibration"]))
    mc = d.get("motion_channel")
    text += (f"\n  motion channel: {mc['size']} clips, {mc['dim']} dims, {mc['fingerprint']['features']}" if mc else
             "\n  motion channel: none (built with --no-features)")
    v = d.get("verify")
    if v is not None:
        text += (f"\n  verify: the weights, rehashed in full, match the fingerprint ({v['seconds']:.1f}s)" if v["match"]
                 else f"\n  verify: MISMATCH with the fingerprint in {', '.join(v['differs'])} ({v['seconds']:.1f}s)")
    _emit(d, as_json, text)
    if v is not None and not v["match"]:
        sys.exit(2)


@main.command()
@click.option("--index", "index_dir", required=True, type=INDEX)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs a token (and a TLS proxy in front).")
@click.option("--port", default=8750, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token", envvar="MOTIVE_INDEX_TOKEN", default=None,
              help="Read token (env MOTIVE_INDEX_TOKEN): with a token set, every route but /healthz needs one.")
@click.option("--curator-token", envvar="MOTIVE_INDEX_CURATOR_TOKEN", default=None,
              help="Curator token (env MOTIVE_INDEX_CURATOR_TOKEN): needed to add and withdraw clips; without "
                   "it those routes are off.")
@click.option("--model", default=None, help="Override the model recorded in the index (same identity).")
@_DEVICE
@click.option("--max-upload-mb", default=64.0, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds before a request is answered 504.")
@click.option("--queue", default=16, show_default=True, type=click.IntRange(1),
              help="Requests of model work queued or running at most; more are answered 503 + Retry-After.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1),
              help="Threads doing requests' work (decode and flow overlap; the model's own work is serialized).")
@click.option("--max-k", default=100, show_default=True, type=click.IntRange(1), help="Largest k (and similar).")
@click.option("--uploads", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Where clips added over HTTP are kept (default INDEX/uploads).")
@click.option("--json-logs", is_flag=True, help="Access log as JSON lines.")
def serve(index_dir, host, port, token, curator_token, model, device, max_upload_mb, timeout_s, queue, workers,
          max_k, uploads, json_logs):
    """Serve the index over HTTP (the serve extra: pip install 'motive-index[serve]'). See the README."""
    try:
        from .service import ServiceConfig, is_loopback, serve as run_service
    except ImportError as e:
        raise click.ClickException(str(e)) from None
    if not is_loopback(host) and not token and not curator_token:
        raise click.UsageError(f"--host {host} is not loopback: set --token (or MOTIVE_INDEX_TOKEN) to serve "
                               f"beyond this machine, behind a TLS proxy")
    logging.getLogger("motive_index").setLevel(logging.INFO)
    try:
        cfg = ServiceConfig(index=index_dir, device=device, model=model, token=token, curator_token=curator_token,
                            max_upload_mb=max_upload_mb, timeout_s=timeout_s, queue=queue, workers=workers,
                            max_k=max_k, uploads=uploads, json_logs=json_logs)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    run_service(cfg, host=host, port=port)


@main.command()
@click.option("--workdir", default="motive-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--clips", "n_clips", default=48, show_default=True, type=click.IntRange(6))
@click.option("--queries", "n_queries", default=12, show_default=True, type=click.IntRange(1))
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1))
@click.option("-k", "k", default=10, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True)
@click.option("--quiet", is_flag=True)
def demo(workdir, n_clips, n_queries, steps, k, seed, quiet):
    """synth -> finetune -> build (with and without the mask) -> query held-out clips."""
    from .demo import run_demo

    run_demo(workdir, n_clips=n_clips, n_queries=n_queries, steps=steps, k=k, seed=seed, quiet=quiet,
             echo=click.echo, bar=_bar)


if __name__ == "__main__":
    main()
