"""VectorIndex / open_index: real FAISS over a real LanceDB store in tmp_path."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from motive_index.index import VectorIndex, open_index
from motive_index.store import ClipStore

DIM = 16
FP = {"projection": {"kind": "identity", "dim": DIM, "seed": 0}}


def _unit(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)  # (n, dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _store(path, n: int, seed: int = 0) -> ClipStore:
    store = ClipStore.create(path, FP, DIM)
    vecs = _unit(n, seed=seed)
    store.add([{"clip_id": f"c{i}", "path": "", "caption": "", "metadata": {}, "vector": v}
               for i, v in enumerate(vecs)])
    return store


def _brute(ids, vecs, q, k, negative=False):
    s = vecs @ q  # (n,)
    order = np.argsort(s if negative else -s, kind="stable")[:k]
    return [ids[i] for i in order], s[order]


def test_exact_search_matches_numpy():
    ids = [f"c{i}" for i in range(200)]
    vecs = _unit(200)
    index = VectorIndex.build(ids, vecs, store_version=3)
    assert len(index) == 200 and index.dim == DIM and index.store_version == 3
    queries = _unit(5, seed=1)  # (5, dim)
    res = index.search(queries, k=10)
    assert len(res) == 5
    for q, hits in zip(queries, res):
        want_ids, want_scores = _brute(ids, vecs, q, 10)
        assert [c for c, _ in hits] == want_ids
        np.testing.assert_allclose([s for _, s in hits], want_scores, atol=1e-5)
    one = index.search(queries[0].astype(np.float64), k=3)  # (dim,) and float64 accepted
    assert len(one) == 1 and [c for c, _ in one[0]] == [c for c, _ in res[0][:3]]


def test_negative_search():
    ids = [f"c{i}" for i in range(100)]
    vecs = _unit(100)
    index = VectorIndex.build(ids, vecs, 1)
    q = _unit(1, seed=7)[0]
    hits = index.search(q, k=5, negative=True)[0]
    want_ids, want_scores = _brute(ids, vecs, q, 5, negative=True)
    assert [c for c, _ in hits] == want_ids
    np.testing.assert_allclose([s for _, s in hits], want_scores, atol=1e-5)
    assert all(s < 0 for _, s in hits) and hits[0][1] <= hits[-1][1]


def test_k_larger_than_n_and_empty():
    index = VectorIndex.build(["a", "b", "c"], _unit(3), 1)
    assert len(index.search(_unit(1, seed=2)[0], k=50)[0]) == 3
    empty = VectorIndex.build([], np.zeros((0, DIM), np.float32), 1)
    assert len(empty) == 0
    assert empty.search(_unit(2, seed=2), k=5) == [[], []]
    with pytest.raises(ValueError):
        index.search(np.zeros(DIM + 1, np.float32), k=1)
    with pytest.raises(ValueError):
        index.search(np.zeros(DIM, np.float32), k=0)


def test_save_load_round_trip(tmp_path):
    ids = [f"c{i}" for i in range(30)]
    index = VectorIndex.build(ids, _unit(30), 7)
    index.save(tmp_path)
    meta = json.loads((tmp_path / "faiss.json").read_text())
    assert meta["store_version"] == 7 and meta["count"] == 30 and meta["dim"] == DIM and meta["ids"] == ids
    loaded = VectorIndex.load(tmp_path)
    assert loaded.ids == ids and loaded.store_version == 7 and len(loaded) == 30
    q = _unit(3, seed=4)
    assert loaded.search(q, 5) == index.search(q, 5)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "none")


def test_open_index_loads_then_rebuilds_when_stale(tmp_path, caplog):
    store = _store(tmp_path, 40)
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        first = open_index(store, tmp_path)
    assert len(first) == 40 and first.store_version == store.version
    assert (tmp_path / "faiss.index").exists()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        second = open_index(ClipStore.open(tmp_path), tmp_path)
    assert "loaded" in caplog.text and len(second) == 40
    # store moves on: the saved index is stale and is rebuilt
    store.add([{"clip_id": "new", "path": "", "caption": "", "metadata": {}, "vector": _unit(1, seed=9)[0]}])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        third = open_index(store)  # index_dir defaults to the store's folder
    assert "stale" in caplog.text
    assert len(third) == 41 and third.store_version == store.version
    assert third.search(_unit(1, seed=9)[0], k=1)[0][0][0] == "new"
    assert VectorIndex.load(tmp_path).store_version == store.version


def test_open_index_matches_store_brute_force(tmp_path):
    store = _store(tmp_path, 120, seed=3)
    index = open_index(store, tmp_path)
    ids, vecs = store.vectors()
    q = _unit(1, seed=11)[0]
    want_ids, want_scores = _brute(ids, vecs, q, 8)
    hits = index.search(q, 8)[0]
    assert [c for c, _ in hits] == want_ids
    np.testing.assert_allclose([s for _, s in hits], want_scores, atol=1e-5)


@pytest.mark.parametrize("damage", ["garbage", "same_size_garbage", "truncate", "bad_json"])
def test_corrupt_index_rebuilt(tmp_path, caplog, damage):
    store = _store(tmp_path, 25)
    open_index(store, tmp_path)
    f = tmp_path / "faiss.index"
    if damage == "garbage":
        f.write_bytes(b"\x00garbage\xff" * 37)
    elif damage == "same_size_garbage":
        f.write_bytes(np.random.default_rng(0).integers(0, 256, f.stat().st_size, dtype=np.uint8).tobytes())
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:100])
    else:
        (tmp_path / "faiss.json").write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(ClipStore.open(tmp_path), tmp_path)
    assert "corrupt" in caplog.text
    assert len([r for r in caplog.records if r.name == "motive_index.index"]) == 1
    assert len(index) == 25 and index.store_version == store.version
    assert len(VectorIndex.load(tmp_path)) == 25  # saved again, healthy


def test_open_index_empty_store(tmp_path):
    store = ClipStore.create(tmp_path, FP, DIM)
    index = open_index(store, tmp_path)
    assert len(index) == 0 and index.search(_unit(1)[0], 3) == [[]]
    assert len(open_index(store, tmp_path)) == 0
