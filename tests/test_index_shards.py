"""Sharded search: an index built in parts answers as one index over all the vectors. Real FAISS, real
LanceDB store in tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from motive_index.index import VectorIndex, open_index
from motive_index.store import ClipStore

DIM = 24
FP = {"projection": {"kind": "identity", "dim": DIM, "seed": 0}}


def _clustered(n, clusters=30, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM))
    x = (centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, DIM))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _parts(vecs, cuts, kind):
    """Indexes over consecutive slices of ``vecs``, each labelled from 0 as a worker would build it."""
    out, a = [], 0
    for b in cuts + [len(vecs)]:
        out.append(VectorIndex.build([f"c{i}" for i in range(a, b)], vecs[a:b], 1, kind=kind))
        a = b
    return out


def _same(a, b, atol=1e-6):
    assert [[c for c, _ in r] for r in a] == [[c for c, _ in r] for r in b]
    np.testing.assert_allclose([[s for _, s in r] for r in a], [[s for _, s in r] for r in b], atol=atol)


def test_sharded_flat_equals_one_flat_index():
    vecs = _clustered(900)
    one = VectorIndex.build([f"c{i}" for i in range(900)], vecs, 1, kind="flat")
    sharded = VectorIndex.from_parts(_parts(vecs, [250, 600], "flat"), store_version=1)
    assert sharded.record.shards == 3 and sharded.kind == "flat" and len(sharded) == 900
    q = _clustered(40, seed=3)
    _same(sharded.search(q, 10), one.search(q, 10))
    _same(sharded.search(q, 5, negative=True), one.search(q, 5, negative=True))
    _same(sharded.search(q[:2], 2000), one.search(q[:2], 2000))  # k past every part's size: all 900, in order
    assert sorted(sharded.ids) == sorted(one.ids)


def test_sharded_catch_up_save_and_load(tmp_path):
    vecs = _clustered(900)
    new = _clustered(30, seed=8)
    sharded = VectorIndex.from_parts(_parts(vecs, [300, 600], "flat"), store_version=1)
    gone = ["c5", "c350", "c899"]  # one in each part
    sharded.apply([f"n{i}" for i in range(30)], new, gone, store_version=2)
    all_ids = [f"c{i}" for i in range(900) if f"c{i}" not in gone] + [f"n{i}" for i in range(30)]
    all_vecs = np.concatenate([np.delete(vecs, [5, 350, 899], axis=0), new])
    one = VectorIndex.build(all_ids, all_vecs, 2, kind="flat")
    q = np.concatenate([_clustered(20, seed=4), vecs[[5, 350, 899]], new[:3]])
    _same(sharded.search(q, 10), one.search(q, 10))
    assert not {c for r in sharded.search(vecs[[5, 350, 899]], 10) for c, _ in r} & set(gone)
    sharded.save(tmp_path)
    meta = json.loads((tmp_path / "faiss.json").read_text())
    assert [p["file"] for p in meta["parts"]] == [f"faiss.shard-{i}.index" for i in range(3)]
    loaded = VectorIndex.load(tmp_path)
    assert loaded.record.shards == 3 and len(loaded) == 927
    _same(loaded.search(q, 10), one.search(q, 10))


def test_sharded_compressed_scores_are_exact_and_it_opens_from_the_store(tmp_path):
    both = _clustered(3050)
    vecs, queries = both[:3000], both[3000:]
    store = ClipStore.create(tmp_path, FP, DIM)
    store.add([{"clip_id": f"c{i}", "path": "", "caption": "", "metadata": {}, "vector": v}
               for i, v in enumerate(vecs)])
    sharded = VectorIndex.from_parts(_parts(vecs, [1500], "compressed"), store_version=store.version)
    assert sharded.kind == "compressed" and sharded.mapped_bytes == 3000 * DIM * 4
    by_id = {f"c{i}": v for i, v in enumerate(vecs)}
    got = sharded.search(queries, 10)
    for q, row in zip(queries, got):
        np.testing.assert_allclose([s for _, s in row], [float(by_id[c] @ q) for c, _ in row], atol=1e-6)
    truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
    assert np.mean([len({c for c, _ in r} & {f"c{j}" for j in t}) / 10 for r, t in zip(got, truth)]) >= 0.9
    sharded.save(tmp_path)
    store.add([{"clip_id": "late", "path": "", "caption": "", "metadata": {}, "vector": queries[0]}])
    index = open_index(ClipStore.open(tmp_path), tmp_path, kind="compressed")  # loaded, caught up: still sharded
    assert index.opened.action == "catch_up" and index.record.shards == 2 and index.search(queries[0], 1)[0][0][0] == "late"
    assert VectorIndex.load(tmp_path).search(queries[0], 1)[0][0][0] == "late"


def test_parts_with_the_same_clip_are_refused():
    vecs = _clustered(100)
    a = VectorIndex.build([f"c{i}" for i in range(50)], vecs[:50], 1, kind="flat")
    b = VectorIndex.build([f"c{i}" for i in range(40, 90)], vecs[40:90], 1, kind="flat")
    with pytest.raises(ValueError, match="more than once"):
        VectorIndex.from_parts([a, b], 1)
    with pytest.raises(ValueError, match="one kind"):
        VectorIndex.from_parts([a, VectorIndex.build(["x"], vecs[:1], 1, kind="flat"),
                                VectorIndex.build([f"y{i}" for i in range(300)], _clustered(300), 1, kind="ivf")], 1)
