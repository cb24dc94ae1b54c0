"""Cold start: what a fresh `motive-index` process pays before and around its real work, as tables.

    python benchmarks/cold_start.py              # 3 repeats of every cold command (best of 3 reported)
    python benchmarks/cold_start.py --quick      # 1 repeat, small hash probe (about a minute)
    python benchmarks/cold_start.py --wan-load   # also load and hash a real-size Wan2.1-1.3B transformer from a
                                                 # sparse (all-zero) checkpoint: ~6 GB of RAM, a minute or two

Builds a tiny index in a temporary directory (the tiny Wan preset saved with save_pretrained, 6 synthetic clips
(3 with --quick), 64 dims), then times fresh subprocesses (the page cache is warm: "cold" means a new interpreter):

- the interpreter alone, ``import motive_index.cli``, ``motive-index info`` and ``motive-index query`` (its
  ``--json`` timings split the run into load_model and the query stages; the rest of the wall time is the
  interpreter, imports outside load_model (torch for --device, LanceDB, FAISS, PyAV, OpenCV) and exit);
- the parts of loading the model (imports, each component's from_pretrained, the weights identity with a full
  rehash vs from a weights record, the GradientEngine), in one fresh process;
- the real Wan2.1-T2V-1.3B architecture (transformer, VAE and the UMT5-XXL text encoder) built on the meta device
  from its config (structure cost without weights), the weights record checked on a directory of sparse files
  with that model's real safetensors headers, and the full weights hash extrapolated from the throughput measured
  here (labelled as an extrapolation; ``--wan-load`` measures it on the real-size transformer instead).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Wan2.1-T2V-1.3B-Diffusers: transformer/config.json, and its text encoder (google/umt5-xxl, encoder only)
WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
# bytes per parameter as Wan2.1-T2V-1.3B-Diffusers ships them (transformer and VAE fp32, text encoder bf16)
SHIPPED_BYTES = {"transformer": 4, "vae": 4, "text_encoder": 2}
TEXT_SHARDS = 5


# ----- probes: each runs in a fresh interpreter and prints one JSON line ---------------------------------------
def _probe_load(model_dir: str) -> dict:
    """The parts of what `_ensure_engine` does for a model directory, timed in a fresh process."""
    laps: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        laps[name] = now - t
        t = now

    import torch  # noqa: F401
    lap("import torch")
    import lancedb  # noqa: F401
    lap("import lancedb (the store; not part of load_model)")
    import diffusers  # noqa: F401
    lap("import diffusers (diffusers.utils, torch._dynamo)")
    from diffusers import AutoencoderKLWan, WanTransformer3DModel  # noqa: F401
    lap("import the Wan model classes (diffusers.models, transformers)")
    from transformers import AutoTokenizer, UMT5EncoderModel  # noqa: F401
    lap("import UMT5EncoderModel, AutoTokenizer")
    import motive_index.backbones.base as base
    from motive_index.backbones import check_record, load_backbone
    from motive_index.config import EstimatorConfig, MaskConfig, ProjectionConfig
    from motive_index.gradients import GradientEngine
    lap("import motive_index.gradients (motion, video, projection)")
    bb = load_backbone(model_dir)
    lap("load_backbone: every component's from_pretrained")
    ident = bb.identity()
    lap("identity(): full weights hash")
    rec = json.loads(json.dumps(bb.weights_record()))
    t = time.perf_counter()
    why = check_record(model_dir, rec)
    lap("check_record (stat + safetensors headers)")
    bb2 = load_backbone(model_dir, record=rec)
    lap("load_backbone again (warm imports), with the record")
    calls = []
    real = base._weights_hash
    base._weights_hash = lambda mods: calls.append(1) or real(mods)
    ident2 = bb2.identity()
    lap("identity(): from the record")
    base._weights_hash = real
    engine = GradientEngine(bb2, MaskConfig(), EstimatorConfig(), ProjectionConfig(dim=64))
    lap("GradientEngine(...)")
    engine.fingerprint()
    lap("engine.fingerprint()")
    tiny = load_backbone("tiny")
    tiny.identity()
    lap("load_backbone('tiny') + identity(): random init, calibration, full hash")
    trec = json.loads(json.dumps(tiny.weights_record()))
    t = time.perf_counter()
    tiny2 = load_backbone("tiny", record=trec)
    tiny2.identity()
    lap("load_backbone('tiny', record=...) + identity(): random init only")
    same_tiny = tiny.identity() == tiny2.identity() and tiny2.record_status == "matched"
    nbytes = sum(t.numel() * t.element_size() for m in (bb.transformer, bb.vae, bb.text_encoder)
                 for t in m.state_dict().values())
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.5 or reps < 3:
        base._weights_hash([bb.transformer, bb.vae, bb.text_encoder])
        reps += 1
    per = (time.perf_counter() - t0) / reps
    return {"laps": laps, "record_matched": why is None and bb2.record_status == "matched" and not calls,
            "same_identity": ident == ident2 and same_tiny, "weights_bytes": nbytes, "hash_seconds": per}


def _probe_hash(mib: int) -> dict:
    """Full-hash throughput on large float32 tensors (``mib`` MiB), the regime of a real checkpoint."""
    import torch

    from motive_index.backbones.base import _weights_hash

    n = mib * 2**20 // 4
    mod = torch.nn.Module()
    rows = 4096
    for i in range(max(1, n // (rows * 4096))):
        mod.register_buffer(f"w{i}", torch.randn(rows, 4096))
    nbytes = sum(b.numel() * 4 for b in mod.buffers())
    _weights_hash([mod])
    t0 = time.perf_counter()
    _weights_hash([mod])
    return {"bytes": nbytes, "seconds": time.perf_counter() - t0}


def _safetensors_header(shapes: dict[str, tuple[tuple[int, ...], str]]) -> tuple[bytes, int]:
    """A real safetensors header (8-byte length + JSON) for tensors (name -> (shape, dtype)); and the data size."""
    sizes = {"F32": 4, "BF16": 2, "F16": 2}
    order = sorted(shapes, key=lambda k: (-sizes[shapes[k][1]], k))   # safetensors' order: alignment, then name
    header, off = {}, 0
    for k in order:
        shape, dt = shapes[k]
        n = sizes[dt]
        for s in shape:
            n *= s
        header[k] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    return len(js).to_bytes(8, "little") + js, off


def _probe_wan(out_dir: str, load: bool) -> dict:
    """Wan2.1-T2V-1.3B on the meta device; its record checked on sparse files with its real headers."""
    res: dict = {}
    t0 = time.perf_counter()
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    res["import"] = time.perf_counter() - t0
    root = Path(out_dir)
    parts = {}
    for name, make in (("transformer", lambda: WanTransformer3DModel(**WAN_1_3B)),
                       ("vae", lambda: AutoencoderKLWan()),
                       ("text_encoder", lambda: UMT5EncoderModel(UMT5Config(**UMT5_XXL)))):
        t = time.perf_counter()
        with torch.device("meta"):
            m = make()
        build = time.perf_counter() - t
        sd = m.state_dict()
        dt = "BF16" if SHIPPED_BYTES[name] == 2 else "F32"
        shapes = {k: (tuple(v.shape), dt) for k, v in sd.items()}
        if name == "text_encoder":
            shapes.pop("encoder.embed_tokens.weight", None)  # tied to "shared": saved once
        params = sum(p.numel() for p in m.parameters())
        parts[name] = {"params": params, "tensors": len(sd), "meta_build_s": build,
                       "bytes": params * SHIPPED_BYTES[name]}
        folder = root / name
        folder.mkdir(parents=True)
        keys = sorted(shapes)
        shards = [keys] if name != "text_encoder" else [keys[i::TEXT_SHARDS] for i in range(TEXT_SHARDS)]
        for i, ks in enumerate(shards):
            head, data = _safetensors_header({k: shapes[k] for k in ks})
            fname = ("diffusion_pytorch_model.safetensors" if name != "text_encoder"
                     else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
            with open(folder / fname, "wb") as f:   # sparse: the header, then a hole the size of the weights
                f.write(head)
                f.truncate(len(head) + data)
        (folder / "config.json").write_text(json.dumps(dict(m.config) if name != "text_encoder"
                                                       else m.config.to_dict(), default=list))
        del m, sd
    res["parts"] = parts
    from motive_index.backbones.record import scan_directory

    scan_directory(root, "wan")
    t = time.perf_counter()
    rec = scan_directory(root, "wan")
    res["record_check_s"] = time.perf_counter() - t
    res["record_files"] = len(rec["files"])
    res["header_bytes"] = sum(int.from_bytes(open(root / f["path"], "rb").read(8), "little")
                              for f in rec["files"] if f["path"].endswith(".safetensors"))
    if load:
        from motive_index.backbones.base import _weights_hash
        from motive_index.backbones.base import quiet_hf

        quiet_hf()
        t = time.perf_counter()
        tr = WanTransformer3DModel.from_pretrained(str(root / "transformer"), local_files_only=True)
        res["load_transformer_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _weights_hash([tr])
        res["hash_transformer_s"] = time.perf_counter() - t
        res["transformer_state_bytes"] = sum(v.numel() * v.element_size() for v in tr.state_dict().values())
    return res


# ----- the driver ------------------------------------------------------------------------------------------------
def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "motive-index"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "motive_index.cli"]


def _run(cmd: list[str], timeout: float = 600) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return wall, out.stdout


def _best(cmd: list[str], repeats: int) -> tuple[float, list[float], str]:
    runs = [_run(cmd) for _ in range(repeats)]
    walls = [w for w, _ in runs]
    i = walls.index(min(walls))
    return walls[i], walls, runs[i][1]


def _probe(kind: str, *args: str) -> dict:
    _, out = _run([sys.executable, __file__, "--probe", kind, *args])
    return json.loads(out.strip().splitlines()[-1])


def _fmt(walls: list[float]) -> str:
    return f"{min(walls):.2f}" + (f" (median {statistics.median(walls):.2f})" if len(walls) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one repeat per command, a small hash probe")
    ap.add_argument("--repeats", type=int, default=None, help="fresh runs per command (default 3; --quick 1)")
    ap.add_argument("--wan-load", action="store_true",
                    help="also from_pretrained + hash the real-size Wan2.1-1.3B transformer (sparse, ~6 GB RAM)")
    ap.add_argument("--probe", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        kind, rest = args.probe[0], args.probe[1:]
        res = (_probe_load(rest[0]) if kind == "load" else _probe_hash(int(rest[0])) if kind == "hash"
               else _probe_wan(rest[0], rest[1] == "1"))
        print(json.dumps(res))
        return
    repeats = args.repeats or (1 if args.quick else 3)

    from _machine import machine

    from motive_index.api import MotiveIndex
    from motive_index.backbones import build_tiny
    from motive_index.synthetic import generate_dataset

    tmp = Path(tempfile.mkdtemp(prefix="motive-cold-"))
    try:
        t = time.perf_counter()
        manifest = generate_dataset(tmp / "data", 3 if args.quick else 6, seed=0, frames_range=(17, 24))
        model = build_tiny(seed=0).save_pretrained(tmp / "model")
        MotiveIndex.build(manifest, model, tmp / "idx", dim=64)
        setup = time.perf_counter() - t
        clip = str(tmp / "data" / "clip_0000.mp4")
        cli = _cli()
        py_pass = _best([sys.executable, "-c", "pass"], repeats)[1]
        imp_cli = _best([sys.executable, "-c", "import motive_index.cli"], repeats)[1]
        imp_api = _best([sys.executable, "-c", "import motive_index.api"], repeats)[1]
        info = _best(cli + ["info", "--index", str(tmp / "idx")], repeats)[1]
        qwall, qwalls, qout = _best(cli + ["query", clip, "--index", str(tmp / "idx"), "--json"], repeats)
        timings = json.loads(qout)["timings"]
        load = _probe("load", str(model))
        hash_probe = _probe("hash", "64" if args.quick else "512")
        wan = _probe("wan", str(tmp / "wan"), "1" if args.wan_load else "0")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    bytecode = "off (PYTHONDONTWRITEBYTECODE: motive_index is compiled at every start)" \
        if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    print(f"\nmachine: {machine()}; load average {os.getloadavg()[0]:.2f}; bytecode cache {bytecode}")
    print(f"tiny Wan index: {3 if args.quick else 6} clips, 64 dims (setup {setup:.1f}s); each command in a fresh process, page cache warm; "
          f"wall seconds, best of {repeats}\n")
    total = timings.get("total", 0.0)
    outside = qwall - total
    print("| cold command | wall s | of which |")
    print("|---|---:|---|")
    print(f"| python -c pass | {_fmt(py_pass)} | the interpreter |")
    print(f"| import motive_index.cli | {_fmt(imp_cli)} | click, config, errors |")
    print(f"| import motive_index.api | {_fmt(imp_api)} | numpy |")
    print(f"| motive-index info | {_fmt(info)} | LanceDB import and the store's reads |")
    print(f"| motive-index query (tiny) | {_fmt(qwalls)} | load_model {timings.get('load_model', 0):.2f}s, query "
          f"stages {total - timings.get('load_model', 0):.2f}s, the rest {outside:.2f}s (interpreter, imports "
          f"outside load_model, exit) |")
    print("\nquery stages of that best run (`query --json` timings):\n")
    print("| stage | ms |")
    print("|---|---:|")
    for k, v in timings.items():
        print(f"| {k} | {v * 1000:.0f} |")

    print("\nload_model in parts (one fresh process, tiny model directory):\n")
    print("| part | ms |")
    print("|---|---:|")
    for k, v in load["laps"].items():
        print(f"| {k} | {v * 1000:.1f} |")
    rate_tiny = load["weights_bytes"] / load["hash_seconds"] / 1e9
    rate_big = hash_probe["bytes"] / hash_probe["seconds"] / 1e9
    print(f"\nrecord matched without hashing: {load['record_matched']}; same identity: {load['same_identity']}. "
          f"Full weights hash: {load['hash_seconds'] * 1000:.1f} ms for the tiny model's "
          f"{load['weights_bytes'] / 1e6:.1f} MB ({rate_tiny:.2f} GB/s); {hash_probe['seconds']:.2f} s for "
          f"{hash_probe['bytes'] / 2**20:.0f} MiB of large float32 tensors ({rate_big:.2f} GB/s)")

    parts = wan["parts"]
    print(f"\nWan2.1-T2V-1.3B from its config on the meta device (no weights; diffusers + transformers import "
          f"{wan['import']:.1f}s in that process). Full-hash seconds are an EXTRAPOLATION: the bytes as the "
          f"checkpoint ships them (transformer and VAE fp32, text encoder bf16) over the throughput measured "
          f"above ({rate_tiny:.2f} GB/s on the tiny model's weights, {rate_big:.2f} GB/s on large tensors)\n")
    print("| component | params | tensors | GB | meta build s | full hash s, extrapolated (tiny rate / large "
          "rate) |")
    print("|---|---:|---:|---:|---:|---:|")
    names = {"transformer": "Wan2.1-T2V-1.3B transformer", "vae": "Wan2.1 VAE", "text_encoder": "UMT5-XXL encoder"}
    tot = {"params": 0, "bytes": 0, "meta": 0.0}
    for name, p in parts.items():
        gb = p["bytes"] / 1e9
        tot["params"] += p["params"]
        tot["bytes"] += p["bytes"]
        tot["meta"] += p["meta_build_s"]
        print(f"| {names[name]} | {p['params'] / 1e9:.3f} B | {p['tensors']} | {gb:.2f} | {p['meta_build_s']:.2f} | "
              f"{gb / rate_tiny:.1f} / {gb / rate_big:.1f} |")
    gb = tot["bytes"] / 1e9
    print(f"| all three | {tot['params'] / 1e9:.3f} B | | {gb:.2f} | {tot['meta']:.2f} | "
          f"{gb / rate_tiny:.1f} / {gb / rate_big:.1f} |")
    tr = parts["transformer"]
    print(f"\n1.42 B-parameter transformer alone at fp32: full hash {tr['params'] * 4 / 1e9 / rate_big:.1f} s "
          f"(extrapolated from large tensors). The weights record instead: {wan['record_files']} files, "
          f"{wan['header_bytes'] / 1e6:.2f} MB of real safetensors headers, checked in "
          f"{wan['record_check_s'] * 1000:.1f} ms (measured, sparse files).")
    if "load_transformer_s" in wan:
        print(f"Measured (--wan-load, sparse all-zero checkpoint, page cache): from_pretrained of the transformer "
              f"{wan['load_transformer_s']:.1f} s, its full hash {wan['hash_transformer_s']:.1f} s for "
              f"{wan['transformer_state_bytes'] / 1e9:.2f} GB "
              f"({wan['transformer_state_bytes'] / 1e9 / wan['hash_transformer_s']:.2f} GB/s).")


if __name__ == "__main__":
    main()
