"""The build's pipeline steps on their own (plan, per-clip step, writer), on the real tiny model and real stores."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from motive_index.api import MotiveIndex
from motive_index.manifest import read_manifest
from motive_index.pipeline import INFLUENCE, MOTION, ClipRecord, StoreWriter, Work, plan, run_local
from motive_index.types import Clip


@pytest.fixture()
def index(tmp_path, built_index):
    dest = tmp_path / "index"
    shutil.copytree(built_index, dest)
    return MotiveIndex.open(dest)


def test_the_per_clip_step_rebuilt_from_the_index_gives_its_stored_vectors(index, dataset):
    clips = read_manifest(dataset)[:3]
    step = MotiveIndex.open(index.path).embedder()  # from the fingerprint and settings alone
    for c in clips:
        rec = step(Work(c, frozenset({INFLUENCE, MOTION})))
        assert rec.error is None and set(rec.vectors) == {INFLUENCE, MOTION}
        stored = index.store.get_vectors([c.clip_id])[c.clip_id]
        desc = index.features_store.get_vectors([c.clip_id])[c.clip_id]
        assert np.abs(rec.vectors[INFLUENCE] - stored).max() <= 1e-5
        assert np.abs(rec.vectors[MOTION] - desc).max() <= 1e-5
        assert rec.row(INFLUENCE)["metadata"]["motive"] == rec.computed and "motive" not in rec.row(MOTION)["metadata"]


def test_failures_are_values_not_exceptions(index, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    step = index.embedder()
    rec = step(Work(Clip("junk", str(junk)), frozenset({INFLUENCE, MOTION})))
    assert isinstance(rec, ClipRecord) and rec.error and "junk.mp4" in rec.error and not rec.vectors
    writer = StoreWriter(index.channels)
    writer.put(rec)
    assert writer.report.failed == {"junk": rec.error}
    assert [f["clip_id"] for f in index.store.failures()] == ["junk"]


def test_plan_skips_stored_and_removed_and_fills_a_missing_channel(index, dataset):
    clips = read_manifest(dataset)
    index.remove([clips[0].clip_id])
    index.features_store.delete([clips[1].clip_id])  # as if a crash fell between its two writes
    new = Clip("new-1", clips[2].path, clips[2].caption)
    p = plan(clips + [new], index.channels)
    assert p.removed == 1 and p.skipped == len(clips) - 1
    assert [(w.clip.clip_id, sorted(w.channels)) for w in p.work] == [
        ("new-1", [INFLUENCE, MOTION]), (clips[1].clip_id, [MOTION])]

    writer = StoreWriter(index.channels, batch=8)
    run_local(index.embedder(), p.work, writer)
    assert writer.report.added == 1 and writer.report.writes == 1
    assert {"new-1", clips[1].clip_id} <= index.features_store.has(["new-1", clips[1].clip_id])
    assert plan(clips + [new], index.channels).work == []


def test_writer_stores_other_channels_before_the_influence_vector(index, dataset):
    c = read_manifest(dataset)[3]
    rec = index.embedder()(Work(c, frozenset({INFLUENCE, MOTION})))
    # a new clip whose influence vector the store refuses (wrong dim): its descriptor was written before
    bad = ClipRecord(Clip("order-check", c.path, c.caption), vectors={MOTION: rec.vectors[MOTION],
                                                                       INFLUENCE: rec.vectors[INFLUENCE][:10]})
    writer = StoreWriter(index.channels)
    with pytest.raises(ValueError, match="does not match the store"):
        writer.put(bad)
    assert index.features_store.has(["order-check"]) == {"order-check"}  # written first
    assert index.store.has(["order-check"]) == set()                    # the influence write failed after it
    with pytest.raises(ValueError, match="batch"):
        StoreWriter(index.channels, batch=0)
