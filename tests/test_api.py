"""The Python API: MotiveIndex.build / open / query, and a build that is interrupted and resumed."""

import numpy as np
import pytest

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
