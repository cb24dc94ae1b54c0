"""The Python API: MotiveIndex.build / open / query, and a build that is interrupted and resumed."""

import json
import os

import numpy as np
import pytest

import motive_index.backbones.base as base

from motive_index.api import MotiveIndex
from motive_index.errors import IndexNotFoundError
from motive_index.manifest import read_manifest


class Stop(Exception):
    pass


def test_interrupted_build_keeps_finished_clips_and_resumes_without_duplicates(dataset, model_dir, tmp_path):
    clips = read_manifest(dataset)
    index = tmp_path / "idx"

    def interrupt_after_three(i, n, label):
        if i == 3:
            raise KeyboardInterrupt  # as Ctrl-C would, mid-build, before a batch is full

    with pytest.raises(KeyboardInterrupt):
        MotiveIndex.build(clips, model_dir, index, dim=32, progress=interrupt_after_three)
    assert len(MotiveIndex.open(index).store) == 3  # the finished clips were stored on the way out

    _, report = MotiveIndex.build(clips, model_dir, index, dim=32)
    assert (report.skipped, report.added, report.size) == (3, len(clips) - 3, len(clips))
    ids = MotiveIndex.open(index).store.ids()
    assert sorted(ids) == sorted(c.clip_id for c in clips)  # every clip once, none twice


def test_query_api_returns_hits_with_metadata_and_timings(built_index, dataset):
    clip = read_manifest(dataset)[2]
    idx = MotiveIndex.open(built_index)
    res = idx.query(clip.path, prompt=clip.caption, k=3)
    assert res.hits[0].clip_id == clip.clip_id and res.hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert res.hits[0].metadata["motive"]["source_frames"] >= 17  # computed facts kept apart from the manifest's
    assert res.hits[0].metadata["motion"] == clip.metadata["motion"]
    assert res.timings["total"] > 0 and res.query["k"] == 3
    # the store vector of that clip is the query vector
    vec, _ = idx.embed(clip.path, clip.caption)
    ids, mat = idx.store.vectors()
    assert float(mat[ids.index(clip.clip_id)] @ vec) == pytest.approx(1.0, abs=1e-4)
    assert np.allclose(np.linalg.norm(mat, axis=1), 1.0, atol=1e-4)


def test_open_missing_index_says_how_to_make_one(tmp_path):
    with pytest.raises(IndexNotFoundError, match="motive-index build"):
        MotiveIndex.open(tmp_path / "none")

def test_index_keeps_the_weights_record(tmp_path, monkeypatch):
    from motive_index.backbones import build_tiny
    from motive_index.synthetic import generate_dataset

    manifest = generate_dataset(tmp_path / "data", 2, seed=0, frames_range=(17, 20))
    model = build_tiny(seed=0).save_pretrained(tmp_path / "model")
    MotiveIndex.build(manifest, model, tmp_path / "idx", dim=16, features=False)
    settings = json.loads((tmp_path / "idx" / "settings.json").read_text())
    rec = settings["weights_record"]
    assert rec["weights"] == json.loads((tmp_path / "idx" / "fingerprint.json").read_text())["model"]["weights"]

    calls = []
    real = base._weights_hash
    monkeypatch.setattr(base, "_weights_hash", lambda mods: calls.append(1) or real(mods))
    idx = MotiveIndex.open(tmp_path / "idx")
    assert idx.info()["model_files"].startswith("unchanged")
    idx.query(str(tmp_path / "data" / "clip_0000.mp4"))
    assert calls == []                                        # loaded without rehashing

    p = model / "transformer" / "diffusion_pytorch_model.safetensors"
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    idx = MotiveIndex.open(tmp_path / "idx")
    assert idx.info()["model_files"].startswith("changed")
    idx.query(str(tmp_path / "data" / "clip_0000.mp4"))
    assert len(calls) == 1                                    # rehashed once, same identity: record refreshed
    fresh = json.loads((tmp_path / "idx" / "settings.json").read_text())["weights_record"]
    assert fresh != rec and fresh["weights"] == rec["weights"]
    assert MotiveIndex.open(tmp_path / "idx").info()["model_files"].startswith("unchanged")

    v = MotiveIndex.open(tmp_path / "idx").info(verify=True)["verify"]
    assert v["match"] and v["differs"] == [] and len(calls) == 2   # verify always rehashes
