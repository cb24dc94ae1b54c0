"""Calibrated scores: percentiles against the index's own null distribution, on real vectors and a real index."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from motive_index.calibration import NULL_FILE, NullDistribution, load_null, measure_null, save_null


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_null_percentiles_on_known_vectors(tmp_path):
    rng = np.random.default_rng(0)
    stored = _unit(rng.standard_normal((600, 64)))
    ids = [f"c{i}" for i in range(len(stored))]
    null = measure_null(ids, lambda want: {c: stored[int(c[1:])] for c in want}, store_version=7, sample=400)
    assert null.sample == 400 and null.pairs == 400 * 399 // 2 and null.store_version == 7
    # a near-duplicate of a stored clip: far above the 99th percentile
    dup = _unit(stored[3] + 0.05 * rng.standard_normal(64)[None])[0]
    assert null.percentile(float(dup @ stored[3])) > 99.9
    # fresh random queries against stored clips: their percentiles are uniform, so near 50 on average
    queries = _unit(rng.standard_normal((50, 64)))
    pcts = [null.percentile(float(s)) for s in (queries @ stored.T).ravel()]
    assert 45 < np.mean(pcts) < 55 and 45 < np.median(pcts) < 55
    assert null.percentile(-1.0) == 0.0 and null.percentile(1.0) == 100.0
    # persisted (quantiles to 7 decimals); a corrupt file reads as absent (measured again), not a crash
    again = NullDistribution.from_json(null.to_json())
    assert again.percentile(0.1) == pytest.approx(null.percentile(0.1), abs=1e-3)
    with pytest.raises(ValueError):
        NullDistribution.from_json(json.dumps({**json.loads(null.to_json()), "quantiles": [0.5, 0.1]}))
    save_null(tmp_path, null)
    assert load_null(tmp_path).pairs == null.pairs
    (tmp_path / NULL_FILE).write_text("{not json")
    assert load_null(tmp_path) is None


def test_null_needs_two_clips():
    assert measure_null(["a"], lambda w: {"a": np.ones(4, np.float32)}, 1) is None
    assert measure_null([], lambda w: {}, 1) is None


def test_query_hits_carry_percentiles_kept_current(tmp_path, built_index, dataset):
    from motive_index.api import MotiveIndex
    from motive_index.manifest import read_manifest

    index_dir = tmp_path / "index"
    shutil.copytree(built_index, index_dir)
    clips = read_manifest(dataset)
    idx = MotiveIndex.open(index_dir)
    probe = clips[0]
    res = idx.query(probe.path, prompt=probe.caption, k=len(clips), similar=len(clips))
    assert len(res.hits) == len(clips)
    # the query is a stored clip: itself is a planted duplicate, far above the 99th percentile of the null
    top = res.hits[0]
    assert top.clip_id == probe.clip_id and top.percentile > 99
    assert res.similar[0].clip_id == probe.clip_id and res.similar[0].percentile > 99
    # the other clips: their scores against it are draws of the null, so their percentiles centre on 50
    others = [h.percentile for h in res.hits[1:]]
    assert all(0 <= p <= 100 for p in others)
    assert 25 <= float(np.median(others)) <= 75
    assert [h.percentile for h in res.hits] == sorted((h.percentile for h in res.hits), reverse=True)
    assert res.to_dict()["hits"][0]["percentile"] == top.percentile

    cal = idx.info()["calibration"]
    assert set(cal) == {"influence", "motion"}
    assert cal["influence"]["store_version"] == idx.store.version and not cal["influence"]["stale"]
    assert cal["influence"]["pairs"] == len(clips) * (len(clips) - 1) // 2
    q = cal["influence"]["quantiles"]
    assert q["p1"] <= q["p50"] <= q["p99"] <= q["p99.9"]

    # kept current: a removal moves the store on; info says stale until the next search measures it again
    idx.remove([clips[5].clip_id])
    fresh = MotiveIndex.open(index_dir)
    assert fresh.info()["calibration"]["influence"]["pairs"] == (len(clips) - 1) * (len(clips) - 2) // 2
    assert not fresh.info()["calibration"]["influence"]["stale"]
    saved = load_null(index_dir)
    assert saved.size == len(clips) - 1 and saved.store_version == fresh.store.version
    assert (index_dir / "motion" / NULL_FILE).is_file()
