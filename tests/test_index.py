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
    assert meta["store_version"] == 7 and meta["count"] == 30 and meta["dim"] == DIM and "ids" not in meta
    import pyarrow as pa  # the ids: an Arrow IPC file beside the index, not a JSON list
    saved = pa.ipc.open_file(pa.OSFile(str(tmp_path / "faiss.ids"))).read_all()
    assert saved.column("clip_id").to_pylist() == ids and saved.column("label").to_pylist() == list(range(30))
    assert meta["kind"] == "flat" and meta["stats"]["kind"] == "flat"
    loaded = VectorIndex.load(tmp_path)
    assert loaded.ids == ids and loaded.store_version == 7 and len(loaded) == 30
    q = _unit(3, seed=4)
    assert loaded.search(q, 5) == index.search(q, 5)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "none")


def test_open_index_loads_then_catches_up_when_stale(tmp_path, caplog):
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
    assert "caught up: +1 -0" in caplog.text
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


# ---- index kinds, recall tuning, catch-up, threads ----------------------------------------------------------


def _fp(dim):
    return {"projection": {"kind": "identity", "dim": dim, "seed": 0}}


def _clustered(n, dim=DIM, clusters=30, noise=0.3, seed=0):
    """Unit vectors around ``clusters`` random centres: the structure IVF relies on."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim))  # (n, dim)
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _records(ids, vecs):
    return [{"clip_id": c, "path": "", "caption": "", "metadata": {}, "vector": v} for c, v in zip(ids, vecs)]


def _filled(path, vecs, prefix="c"):
    store = ClipStore.create(path, _fp(vecs.shape[1]), vecs.shape[1])
    store.add(_records([f"{prefix}{i}" for i in range(len(vecs))], vecs))
    return store


def _recall(index, ids, vecs, queries, k=10, negative=False):
    got = index.search(queries, k, negative=negative)
    total = 0.0
    for q, hits in zip(queries, got):
        want, _ = _brute(ids, vecs, q, k, negative=negative)
        total += len(set(want) & {c for c, _ in hits}) / k
    return total / len(queries)


def _index_logs(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "motive_index.index"]


def test_auto_picks_flat_for_small_n(tmp_path):
    store = _store(tmp_path, 300)
    index = open_index(store, tmp_path)  # kind="auto"
    assert index.kind == "flat" and index.stats["kind"] == "flat" and index.stats["recall_at_10"] == 1.0
    from motive_index.index import choose_kind
    assert choose_kind(10_000, 512) == "flat" and choose_kind(1_000_000, 512) == "ivf"
    with pytest.raises(ValueError):
        open_index(store, tmp_path, kind="annoy")


def test_ivf_on_clustered_reaches_recall_target_and_reports_it(tmp_path, caplog):
    vecs = _clustered(3000)
    store = _filled(tmp_path, vecs)
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(store, tmp_path, kind="ivf", recall_target=0.95)
    st = index.stats
    assert st["kind"] == "ivf" and index.kind == "ivf" and st["fallback"] is None
    assert st["recall_at_10"] >= 0.95 and 1 <= st["nprobe"] <= st["nlist"]
    assert st["n"] == 3000 and st["p50_ms"] > 0 and st["build_seconds"] > 0
    assert "ivf" in caplog.text and "recall@10" in caplog.text
    # independent check: fresh queries from the same distribution, against brute force
    ids = [f"c{i}" for i in range(3000)]
    queries = _clustered(50, seed=5)
    assert _recall(index, ids, vecs, queries) >= 0.9
    hits = index.search(queries[0], 10)[0]  # scores are exact inner products, best first
    exact = {c: float(v @ queries[0]) for c, v in zip(ids, vecs)}
    np.testing.assert_allclose([s for _, s in hits], [exact[c] for c, _ in hits], atol=1e-5)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    # the stats are saved, and a reopen loads (not rebuilds) the ivf index
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        again = open_index(ClipStore.open(tmp_path), tmp_path)  # auto keeps the explicitly asked kind
    assert "loaded" in caplog.text and again.kind == "ivf" and again.stats["nprobe"] == st["nprobe"]
    assert json.loads((tmp_path / "faiss.json").read_text())["stats"]["recall_at_10"] == st["recall_at_10"]


def test_ivf_negative_search(tmp_path):
    vecs = _clustered(3000, seed=2)
    store = _filled(tmp_path, vecs)
    index = open_index(store, tmp_path, kind="ivf")
    assert index.kind == "ivf"
    ids = [f"c{i}" for i in range(3000)]
    queries = _clustered(30, seed=6)
    assert _recall(index, ids, vecs, queries, negative=True) >= 0.9
    hits = index.search(queries[0], 5, negative=True)[0]
    assert all(s < 0 for _, s in hits) and [s for _, s in hits] == sorted(s for _, s in hits)
    exact = {c: float(v @ queries[0]) for c, v in zip(ids, vecs)}
    np.testing.assert_allclose([s for _, s in hits], [exact[c] for c, _ in hits], atol=1e-5)


def test_random_vectors_fall_back_to_flat(tmp_path, caplog):
    vecs = _unit(3000, dim=64)
    store = _filled(tmp_path, vecs)
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(store, tmp_path, kind="ivf")
    st = index.stats
    assert index.kind == "flat" and st["requested"] == "ivf" and "cluster structure" in st["fallback"]
    assert max(st["recall_by_nprobe"].values()) < 0.95 and st["recall_at_10"] == 1.0
    assert "cluster structure" in caplog.text
    ids = [f"c{i}" for i in range(3000)]
    assert _recall(index, ids, vecs, _unit(10, dim=64, seed=3)) == 1.0  # exact
    # reopening with the same request keeps the fallback rather than retrying every time
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        open_index(ClipStore.open(tmp_path), tmp_path, kind="ivf")
    assert "loaded" in caplog.text


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_catch_up_after_adds_and_removes(tmp_path, caplog, kind):
    vecs = _clustered(2000, seed=3)
    store = _filled(tmp_path, vecs)
    first = open_index(store, tmp_path, kind=kind)
    assert first.kind == kind
    new = _clustered(60, seed=4)
    store.add(_records([f"n{i}" for i in range(60)], new))
    gone = [f"c{i}" for i in range(0, 200, 5)]  # 40
    store.remove(gone)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(ClipStore.open(tmp_path), tmp_path, kind=kind)
    logs = _index_logs(caplog)
    assert len(logs) == 1 and "caught up: +60 -40" in logs[0]
    assert sorted(index.ids) == sorted(store.ids()) and len(index) == len(store) == 2020
    assert index.store_version == store.version and index.kind == kind
    assert index.stats["changes_since_build"] == 100
    # new clips are found, removed clips never come back
    for i in (0, 17, 59):
        assert index.search(new[i], 1)[0][0][0] == f"n{i}"
    res = index.search(vecs[:200], 10)
    assert not {c for row in res for c, _ in row} & set(gone)
    # saved: a reopen loads the caught-up index
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        again = open_index(ClipStore.open(tmp_path), tmp_path, kind=kind)
    assert "loaded" in caplog.text and sorted(again.ids) == sorted(store.ids())
    assert again.search(new[5], 1)[0][0][0] == "n5"


def test_catch_up_in_memory_current(tmp_path, caplog):
    store = _store(tmp_path, 100)
    index = open_index(store, tmp_path)
    store.add(_records(["x"], _unit(1, seed=42)))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        same = open_index(store, tmp_path, current=index)
    assert same is index and "caught up: +1 -0" in caplog.text and "x" in index
    assert open_index(store, tmp_path, current=index) is index  # current already: nothing to do


def test_big_change_rebuilds(tmp_path, caplog):
    store = _store(tmp_path, 100)
    open_index(store, tmp_path)
    store.add(_records([f"n{i}" for i in range(30)], _unit(30, seed=8)))  # 30% > 20%
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(ClipStore.open(tmp_path), tmp_path)
    logs = _index_logs(caplog)
    assert len(logs) == 1 and "rebuilt because stale" in logs[0] and "+30 -0" in logs[0]
    assert sorted(index.ids) == sorted(store.ids()) and index.stats["changes_since_build"] == 0


def test_small_changes_accumulate_to_a_rebuild(tmp_path, caplog):
    store = _store(tmp_path, 100)
    open_index(store, tmp_path)
    for step in range(3):  # 3 x 8 changes: the third pushes the total since the build past 20 %
        store.add(_records([f"s{step}_{i}" for i in range(8)], _unit(8, seed=20 + step)))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="motive_index.index"):
            index = open_index(ClipStore.open(tmp_path), tmp_path)
        assert ("caught up" in caplog.text) == (step < 2)
    assert "rebuilt" in caplog.text and sorted(index.ids) == sorted(store.ids())


def test_asking_another_kind_rebuilds(tmp_path, caplog):
    store = _filled(tmp_path, _clustered(2000, seed=9))
    assert open_index(store, tmp_path, kind="flat").kind == "flat"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(store, tmp_path, kind="ivf")
    assert index.kind == "ivf" and "rebuilt because kind" in caplog.text


def test_corrupt_ivf_index_rebuilt(tmp_path, caplog):
    store = _filled(tmp_path, _clustered(2000, seed=10))
    open_index(store, tmp_path, kind="ivf")
    f = tmp_path / "faiss.index"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the crc catches it
    f.write_bytes(bytes(data))
    store.add(_records(["late"], _clustered(1, seed=11)))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(ClipStore.open(tmp_path), tmp_path, kind="ivf")
    assert "corrupt" in caplog.text and len(index) == 2001 and "late" in index
    assert VectorIndex.load(tmp_path).kind == "ivf"


def test_search_while_catching_up_from_another_thread(tmp_path):
    import threading

    vecs = _clustered(2000, seed=12)
    store = _filled(tmp_path, vecs)
    index = open_index(store, tmp_path, kind="ivf")
    queries = vecs[:50]
    errors, stop = [], threading.Event()

    def reader():
        try:
            while not stop.is_set():
                for row in index.search(queries, 5):
                    assert len(row) == 5 and all(isinstance(c, str) for c, _ in row)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    ids = [f"c{i}" for i in range(2000)]
    try:
        for step in range(5):
            extra = [f"t{step}_{i}" for i in range(20)]
            all_ids = ids[20:] + extra  # remove 20, add 20 each step
            all_vecs = np.concatenate([vecs[20:], _clustered(20, seed=100 + step)])
            assert index.catch_up(all_ids, all_vecs, 100 + step) == (20, 20)
            ids, vecs = all_ids, all_vecs
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert sorted(index.ids) == sorted(ids) and index.store_version == 104


def test_catch_up_reads_only_the_changes_since_the_last_sync(tmp_path, caplog, monkeypatch):
    store = _store(tmp_path, 300)
    first = open_index(store, tmp_path)
    assert first.synced_at is not None and first.opened.action == "rebuild"
    store.add([{"clip_id": f"n{i}", "path": "", "caption": "", "metadata": {}, "vector": v}
               for i, v in enumerate(_unit(5, seed=8))])
    store.remove(["c1", "c2", "c3"])
    store.tombstones.add(["c4"])  # tombstoned, row not yet deleted: held, as a snapshot read would hold it

    def no_snapshot():
        raise AssertionError("a catch-up of a synced index must not read the whole snapshot")

    reopened = ClipStore.open(tmp_path)
    monkeypatch.setattr(reopened, "snapshot", no_snapshot)
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(reopened, tmp_path)
    assert "caught up: +5 -3" in caplog.text and "changes read" in caplog.text
    assert index.opened.action == "catch_up" and index.opened.reason == "read the store's changes"
    assert sorted(index.ids) == sorted(store.ids()) and "c4" in index and "c1" not in index
    assert VectorIndex.load(tmp_path).synced_at == index.synced_at  # saved with the index
    monkeypatch.undo()


def test_a_change_the_change_read_cannot_see_falls_back_to_the_snapshot(tmp_path, caplog, monkeypatch):
    """A row stamped long before the index's last sync (a writer's clock far behind) is not among the changes
    read; the counts then do not add up, and the catch-up reads the snapshot instead of missing it."""
    import datetime as dt

    from motive_index import store as store_mod

    store = _store(tmp_path, 200)
    open_index(store, tmp_path)
    real_now = store_mod._now
    monkeypatch.setattr(store_mod, "_now", lambda: real_now() - dt.timedelta(hours=2))
    store.add([{"clip_id": "late", "path": "", "caption": "", "metadata": {}, "vector": _unit(1, seed=9)[0]}])
    monkeypatch.setattr(store_mod, "_now", real_now)
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(ClipStore.open(tmp_path), tmp_path)
    assert "caught up: +1 -0" in caplog.text and "snapshot read" in caplog.text and "late" in index
