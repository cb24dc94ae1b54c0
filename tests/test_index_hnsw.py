"""The hnsw kind: a FAISS HNSW graph whose removals are tombstones filtered in the search, and whose background
rebuild drops them without letting a removed clip back. Real FAISS and a real LanceDB store in tmp_path."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from motive_index.index import VectorIndex, open_index
from motive_index.index import hnsw
from motive_index.store import ClipStore

DIM = 32
FP = {"projection": {"kind": "identity", "dim": DIM, "seed": 0}}


def _random(n, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _ids(n, start=0):
    return [f"c{i}" for i in range(start, start + n)]


def _check_exact(index, by_id, queries, k=10):
    """Every hit's score is its clip's true inner product; returns the hits."""
    got = index.search(queries, k)
    for row, q in zip(got, queries):
        assert len(row) == min(k, len(index))
        assert [s for _, s in row] == sorted((s for _, s in row), reverse=True)
        for c, s in row:
            assert s == pytest.approx(float(by_id[c] @ q), abs=1e-5)
    return got


def _recall(index, vecs, ids, queries, k=10):
    truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :k]
    got = index.search(queries, k)
    return np.mean([len({c for c, _ in row} & {ids[j] for j in t}) / k for row, t in zip(got, truth)])


def test_hnsw_on_unclustered_vectors_reaches_the_target_with_exact_scores():
    both = _random(3050)
    vecs, queries = both[:3000], both[3000:]
    ids = _ids(3000)
    index = VectorIndex.build(ids, vecs, 1, kind="hnsw", recall_target=0.95)
    rec = index.record
    assert index.kind == "hnsw" and rec.fallback is None and rec.recall_at_10 >= 0.95
    assert rec.ef_search in hnsw.EF_SEARCH_LADDER and str(rec.ef_search) in rec.recall_by_nprobe
    _check_exact(index, dict(zip(ids, vecs)), queries)
    assert _recall(index, vecs, ids, queries) >= 0.9  # held-out queries, measured against exact search
    assert index.stats["tombstones"] == 0 and index.stats["rebuilding"] is False


def test_removed_clips_are_filtered_out_of_every_search_and_stay_out_after_save_and_load(tmp_path):
    vecs = _random(2000)
    ids = _ids(2000)
    index = VectorIndex.build(ids, vecs, 1, kind="hnsw")
    gone = ids[:100]  # 5 %: below the rebuild share, so they stay tombstones
    index.apply([], np.zeros((0, DIM)), gone, 2)
    assert len(index) == 1900 and index.stats["tombstones"] == 100 and not index.stats["rebuilding"]
    by_id = dict(zip(ids, vecs))
    # each removed clip's own vector as the query: it would be its own best hit
    got = _check_exact(index, by_id, vecs[:100], k=20)
    assert all(c not in gone for row in got for c, _ in row)
    index.save(tmp_path)
    back = VectorIndex.load(tmp_path)
    assert back.kind == "hnsw" and len(back) == 1900 and back.stats["tombstones"] == 100
    assert back.record.ef_search == index.record.ef_search
    assert back.search(vecs[:100], 20) == got
    # a clip added after the load is found, with its exact score
    new = _random(1, seed=9)
    back.apply(["new"], new, [], 3)
    assert back.search(new[0], 1)[0][0] == ("new", pytest.approx(1.0, abs=1e-5))


def test_a_background_rebuild_drops_tombstones_and_keeps_the_changes_made_while_it_ran(tmp_path):
    vecs = _random(2000)
    ids = _ids(2000)
    by_id = dict(zip(ids, vecs))
    index = VectorIndex.build(ids, vecs, 1, kind="hnsw")
    graph = index._kind
    release, started = threading.Event(), threading.Event()

    def hold():  # the rebuild thread waits here: the changes below land while it builds
        started.set()
        assert release.wait(30)

    graph._on_rebuild_start = hold
    first = ids[:300]  # 15 % > REBUILD_SHARE: starts the rebuild
    index.apply([], np.zeros((0, DIM)), first, 2)
    assert started.wait(30) and index.stats["rebuilding"]
    during = ids[300:350]
    added = _random(40, seed=5)
    add_ids = [f"n{i}" for i in range(40)]
    index.apply(add_ids, added, during, 3)
    index.apply([], np.zeros((0, DIM)), ["n0"], 4)  # n0: added and removed while the rebuild runs
    # searches go on against the old graph with its tombstones meanwhile
    assert all(c not in first + during + ["n0"] for row in index.search(vecs[:350], 10) for c, _ in row)
    release.set()
    assert graph.wait_rebuilt(60) and graph.rebuilds == 1 and graph.last_rebuild_error is None
    assert len(index) == 2000 - 350 + 39
    assert index.stats["tombstones"] == 51  # only what was removed during the rebuild: replayed as tombstones
    assert int(graph.index.ntotal) == 1700 + 40  # the new graph: the live vectors of the snapshot, then the adds
    by_id.update(zip(add_ids, added))
    queries = np.concatenate([vecs[:350], added])
    got = _check_exact(index, by_id, queries, k=10)
    assert all(c not in first + during + ["n0"] for row in got for c, _ in row)
    assert [row[0][0] for row in index.search(added[1:], 1)] == add_ids[1:]
    live = [c for c in ids[350:]] + add_ids[1:]
    assert sorted(index.ids) == sorted(live)
    index.save(tmp_path)
    back = VectorIndex.load(tmp_path)
    assert sorted(back.ids) == sorted(live) and back.stats["tombstones"] == 51
    assert back.search(queries, 10) == index.search(queries, 10)


def test_a_failed_rebuild_leaves_the_graph_with_its_tombstones_answering():
    vecs = _random(1000)
    ids = _ids(1000)
    index = VectorIndex.build(ids, vecs, 1, kind="hnsw")
    graph = index._kind

    def fail():
        raise MemoryError("no room for a second graph")

    graph._on_rebuild_start = fail
    index.apply([], np.zeros((0, DIM)), ids[:200], 2)
    assert graph.wait_rebuilt(30) and graph.rebuilds == 0 and "MemoryError" in graph.last_rebuild_error
    assert len(index) == 800 and index.stats["tombstones"] == 200
    got = index.search(vecs[:200], 10)
    assert all(c not in ids[:200] for row in got for c, _ in row)
    index.apply(["late"], _random(1, seed=3), ids[200:210], 3)  # later changes still apply (no journal left)
    assert len(index) == 791 and "late" in index


def test_hnsw_opens_from_the_store_catches_up_and_searches_exactly_on_torch(tmp_path):
    vecs = _random(1500)
    store = ClipStore.create(tmp_path, FP, DIM)
    store.add([{"clip_id": f"c{i}", "path": "", "caption": "", "metadata": {}, "vector": v}
               for i, v in enumerate(vecs)])
    index = open_index(store, tmp_path, kind="hnsw")
    assert index.kind == "hnsw" and index.opened.action == "rebuild"
    store.remove(["c1", "c2"])
    again = open_index(ClipStore.open(tmp_path), tmp_path, kind="hnsw")
    assert again.opened.action == "catch_up" and again.opened.removed == 2 and len(again) == 1498
    assert again.stats["tombstones"] == 2
    hits = again.search(vecs[1], 5)[0]
    assert "c1" not in {c for c, _ in hits}
    again.use_device("cpu", backend="torch")  # exact over the live vectors only
    assert again.backend == "torch-cpu"
    exact = sorted(((float(vecs[i] @ vecs[1]), f"c{i}") for i in range(1500) if i not in (1, 2)), reverse=True)[:5]
    got = again.search(vecs[1], 5)[0]
    assert [c for c, _ in got] == [c for _, c in exact]
    again.apply(["x"], _random(1, seed=4), ["c3"], again.store_version)  # the torch copy follows
    assert len(again) == 1498 and "c3" not in {c for c, _ in again.search(vecs[3], 5)[0]}


def test_sharded_hnsw_parts_search_as_one_and_keep_their_tombstones(tmp_path):
    vecs = _random(1200)
    ids = _ids(1200)
    parts = [VectorIndex.build(ids[a:b], vecs[a:b], 1, kind="hnsw") for a, b in ((0, 600), (600, 1200))]
    index = VectorIndex.from_parts(parts, 1)
    assert index.kind == "hnsw" and index.record.shards == 2
    index.apply([], np.zeros((0, DIM)), ["c5", "c700"], 2)
    assert index.stats["tombstones"] == 2
    got = _check_exact(index, dict(zip(ids, vecs)), vecs[[5, 700]], k=10)
    assert all(c not in ("c5", "c700") for row in got for c, _ in row)
    index.save(tmp_path)
    back = VectorIndex.load(tmp_path)
    assert len(back) == 1198 and back.stats["tombstones"] == 2 and back.search(vecs[[5, 700]], 10) == got
