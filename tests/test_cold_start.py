"""The weights record: a model is loaded again without rehashing its weights while its files are unchanged, rehashed
in full when a file, the libraries or the preset differ, and always with verify=True. Plus the cold-start
benchmark's --quick run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import motive_index.backbones.base as base
import motive_index.backbones.record as record_mod
from motive_index.backbones import build_tiny, check_record, load_backbone, scan_model

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = "transformer/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return build_tiny(seed=0).save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def model(saved, tmp_path):
    """A private copy of the saved tiny model (files keep their times: copytree copies them)."""
    import shutil

    return Path(shutil.copytree(saved, tmp_path / "m"))


@pytest.fixture
def hashes(monkeypatch):
    """Counts full weights hashes (the only function that reads every weight)."""
    calls = []
    real = base._weights_hash

    def counting(modules):
        calls.append(1)
        return real(modules)

    monkeypatch.setattr(base, "_weights_hash", counting)
    return calls


def _saved_record(model_dir) -> dict:
    """What an index keeps: the record of a first load, through JSON."""
    return json.loads(json.dumps(load_backbone(model_dir).weights_record()))


def test_matching_record_skips_the_hash(model, hashes):
    first = load_backbone(model)
    assert first.record_status == "none"
    ident = first.identity()
    rec = json.loads(json.dumps(first.weights_record()))
    assert len(hashes) == 1
    assert rec["weights"] == ident["weights"] and rec["kind"] == "directory" and rec["family"] == "wan"
    assert {f["path"] for f in rec["files"]} >= {WEIGHTS, "vae/diffusion_pytorch_model.safetensors",
                                                 "text_encoder/model.safetensors", "transformer/config.json"}
    assert all(f["header_sha256"] for f in rec["files"] if f["path"].endswith(".safetensors"))

    again = load_backbone(model, record=rec)
    assert again.record_status == "matched"
    assert again.identity() == ident
    assert again.weights_record() == rec
    assert len(hashes) == 1                     # no weight was hashed again
    assert check_record(model, rec) is None


def test_touched_file_rehashes_with_the_same_identity(model, hashes):
    rec = _saved_record(model)
    ident = load_backbone(model, record=rec).identity()
    n = len(hashes)
    p = model / WEIGHTS
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))       # same bytes, a newer time
    assert "mtime_ns changed" in check_record(model, rec)
    bb = load_backbone(model, record=rec)
    assert bb.record_status == "stale"
    assert bb.identity() == ident                # hashed in full, and the weights are the same
    assert len(hashes) == n + 1
    fresh = bb.weights_record()                  # the refreshed record vouches for the files as they are now
    assert fresh != rec and fresh["weights"] == rec["weights"]
    assert check_record(model, fresh) is None
    assert load_backbone(model, record=fresh).record_status == "matched"


def _rewrite_one_weight(path: Path, keep_time: bool) -> None:
    """Change one value of a safetensors file in place: same size, same header (same tensors, dtypes, offsets)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    st = path.stat()
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    sd = load_file(str(path))
    key = sorted(sd)[0]
    sd[key].view(-1)[0] += 1.0
    save_file(sd, str(path), metadata=meta)
    assert path.stat().st_size == st.st_size
    if keep_time:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_changed_weights_give_another_identity(model, hashes):
    rec = _saved_record(model)
    header = record_mod.safetensors_header_sha256(model / WEIGHTS)
    _rewrite_one_weight(model / WEIGHTS, keep_time=False)
    assert record_mod.safetensors_header_sha256(model / WEIGHTS) == header  # only the time gives it away
    bb = load_backbone(model, record=rec)
    assert bb.record_status == "stale"
    n = len(hashes)
    assert bb.identity()["weights"] != rec["weights"]
    assert len(hashes) == n + 1


def test_verify_always_rehashes(model, hashes):
    rec = _saved_record(model)
    n = len(hashes)
    bb = load_backbone(model, record=rec, verify=True)
    assert bb.record_status == "verify"
    assert bb.identity()["weights"] == rec["weights"]
    assert len(hashes) == n + 1
    # the one thing a record cannot see: the same size, header and time with other bytes; verify sees it
    _rewrite_one_weight(model / WEIGHTS, keep_time=True)
    assert check_record(model, rec) is None
    assert load_backbone(model, record=rec).identity()["weights"] == rec["weights"]   # trusted, as documented
    assert load_backbone(model, record=rec, verify=True).identity()["weights"] != rec["weights"]


def test_header_size_new_file_and_versions_each_invalidate(model, monkeypatch):
    rec = _saved_record(model)
    # a new tensor: another header (and size)
    from safetensors.torch import load_file, save_file

    p = model / "vae" / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(p))
    sd["extra.weight"] = torch.zeros(3)
    save_file(sd, str(p), metadata={"format": "pt"})
    why = check_record(model, rec)
    assert why.startswith("vae/diffusion_pytorch_model.safetensors: ") and "changed" in why
    rec = json.loads(json.dumps(scan_model(model) | {"weights": rec["weights"]}))
    assert check_record(model, rec) is None
    (model / "text_encoder" / "model-00002.safetensors").write_bytes(b"\0" * 16)   # a new shard
    assert check_record(model, rec) == "text_encoder/model-00002.safetensors: new file"
    (model / "text_encoder" / "model-00002.safetensors").unlink()
    (model / "transformer" / ".DS_Store").write_bytes(b"x")                       # hidden files do not count
    (model / "tokenizer" / "extra.txt").write_text("x")                           # nor other components
    assert check_record(model, rec) is None
    real = record_mod.library_versions
    monkeypatch.setattr(record_mod, "library_versions", lambda: {**real(), "diffusers": "0.0.1"})
    assert "library versions changed: diffusers" in check_record(model, rec)
    assert load_backbone(model, record=rec).record_status == "stale"


def test_bad_records_are_ignored(model, hashes):
    rec = _saved_record(model)
    for bad in ({}, {**rec, "weights": ""}, {**rec, "format": 99}, {**rec, "family": "cogvideox"}, "x", None):
        n = len(hashes)
        bb = load_backbone(model, record=bad)
        assert bb.record_status in ("stale", "none")
        assert bb.identity()["weights"] == rec["weights"]
        assert len(hashes) == n + 1


def test_tiny_preset_record_skips_hash_and_sees_the_vae_file(hashes):
    first = load_backbone("tiny")
    ident = first.identity()
    rec = json.loads(json.dumps(first.weights_record()))
    assert rec["kind"] == "preset" and rec["preset"] == "tiny" and rec["seed"] == 0
    assert set(rec["calibration"]) == {"latents_mean", "latents_std"}
    assert [f["path"] for f in rec["files"]] == ["tiny_vae/diffusion_pytorch_model.safetensors"]
    n = len(hashes)
    again = load_backbone("tiny", record=rec)
    assert again.record_status == "matched"
    assert again.identity() == ident             # same weights hash and the same configs (calibration kept)
    assert len(hashes) == n
    z = torch.rand(17, 3, 64, 64)
    assert torch.equal(again.encode_video(z), first.encode_video(z))
    retrained = {**rec, "files": [{**rec["files"][0], "sha256": "0" * 64}]}   # another VAE file
    assert "sha256 changed" in check_record("tiny", retrained)
    assert load_backbone("tiny", record=retrained).record_status == "stale"
    other = {**rec, "seed": 1}
    assert "seed changed" in check_record("tiny", other)
    assert load_backbone("tiny", record=other).record_status == "stale"


def test_changed_in_memory_gives_no_record(model):
    bb = load_backbone(model)
    assert bb.weights_record() is not None
    bb.invalidate_identity()                     # what fine-tuning calls: the files no longer hold these weights
    assert bb.weights_record() is None
    assert build_tiny(seed=0).weights_record() is None   # built in memory, not loaded: nothing vouches for it


def test_checking_a_record_imports_no_model_library(model):
    rec = _saved_record(model)
    code = ("import json, sys; from motive_index.backbones import check_record, read_spec; "
            f"rec = json.loads({json.dumps(json.dumps(rec))}); "
            f"assert check_record({str(model)!r}, rec) is None; read_spec({str(model)!r}); read_spec('tiny'); "
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'numpy') if m in sys.modules]; "
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]


def test_cold_start_benchmark_quick():
    out = subprocess.run([sys.executable, "benchmarks/cold_start.py", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for row in ("| import motive_index.cli", "| motive-index info", "| motive-index query", "| load_backbone",
                "| Wan2.1-T2V-1.3B transformer"):
        assert row in text, text
    assert "extrapolat" in text
