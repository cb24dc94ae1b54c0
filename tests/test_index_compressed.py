"""The compressed kind: 8-bit IVF codes whose candidates are re-scored against the memory-mapped float copy.
Real FAISS and a real LanceDB store in tmp_path."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from motive_index.index import VectorIndex, choose_kind, open_index
from motive_index.index import floatcopy, kinds
from motive_index.store import ClipStore

DIM = 32
FP = {"projection": {"kind": "identity", "dim": DIM, "seed": 0}}


def _clustered(n, dim=DIM, clusters=40, noise=0.35, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = (centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _random(n, dim=DIM, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _filled(path, vecs, start=0):
    store = ClipStore.create(path, FP, DIM)
    _add(store, vecs, start)
    return store


def _add(store, vecs, start=0):
    store.add([{"clip_id": f"c{start + i}", "path": "", "caption": "", "metadata": {}, "vector": v}
               for i, v in enumerate(vecs)])


def _exact_scores(hits, by_id, q):
    """Each hit's score against its clip's true inner product with ``q``."""
    return [(s, float(by_id[c] @ q)) for c, s in hits]


def _recall(index, vecs, ids, queries, k=10):
    truth = np.argsort(-(queries @ vecs.T), axis=1)[:, :k]
    got = index.search(queries, k)
    return np.mean([len({c for c, _ in row} & {ids[j] for j in t}) / k for row, t in zip(got, truth)])


def test_compressed_returns_exact_scores_at_the_recall_target(tmp_path, caplog):
    both = _clustered(3050)
    vecs, queries = both[:3000], both[3000:]  # queries held out, from the same clusters
    store = _filled(tmp_path, vecs)
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(store, tmp_path, kind="compressed", recall_target=0.95)
    rec = index.record
    assert index.kind == "compressed" and rec.fallback is None and rec.recall_at_10 >= 0.95
    assert rec.rerank in kinds.RERANK_FACTORS and rec.nprobe >= 1 and rec.nlist == kinds.choose_nlist(3000)
    assert "compressed" in caplog.text and "re-rank" in caplog.text
    ids = [f"c{i}" for i in range(3000)]
    by_id = dict(zip(ids, vecs))
    for q, row in zip(queries, index.search(queries, 10)):
        got = _exact_scores(row, by_id, q)
        np.testing.assert_allclose([a for a, _ in got], [b for _, b in got], atol=1e-6)  # exact, not the codes'
        assert [a for a, _ in got] == sorted((a for a, _ in got), reverse=True)
    assert _recall(index, vecs, ids, queries) >= 0.9  # held-out queries, after the re-rank
    neg = index.search(queries[0], 5, negative=True)[0]
    np.testing.assert_allclose([s for _, s in neg], [float(by_id[c] @ queries[0]) for c, _ in neg], atol=1e-6)
    # the codes are a quarter of the floats; the floats are mapped from disk once saved
    assert index.resident_bytes < 0.5 * 3000 * DIM * 4 and index.mapped_bytes == 3000 * DIM * 4
    assert isinstance(index._kind.floats._segments[0].array, np.memmap)
    segs = json.loads((tmp_path / "faiss.json").read_text())["parts"][0]["segments"]
    assert [s["count"] for s in segs] == [3000]
    assert (tmp_path / "vectors" / segs[0]["name"]).stat().st_size == 3000 * DIM * 4


def test_compressed_save_load_and_catch_up_never_returns_removed(tmp_path, caplog):
    vecs = _clustered(3000)
    store = _filled(tmp_path, vecs)
    first = open_index(store, tmp_path, kind="compressed")
    q = _clustered(20, seed=9)
    loaded = VectorIndex.load(tmp_path)
    assert loaded.kind == "compressed" and loaded.record == first.record
    assert loaded.search(q, 10) == first.search(q, 10)
    # 100 added, 60 removed: a catch-up writes one more segment, the removed never come back
    new = _clustered(100, seed=11)
    _add(store, new, start=3000)
    gone = [f"c{i}" for i in range(0, 600, 10)]
    store.remove(gone)
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(ClipStore.open(tmp_path), tmp_path, kind="compressed")
    assert "caught up: +100 -60" in caplog.text and index.opened.action == "catch_up"
    assert len(index) == 3040 and not set(gone) & set(index.ids)
    by_id = {**{f"c{i}": v for i, v in enumerate(vecs)}, **{f"c{3000 + i}": v for i, v in enumerate(new)}}
    removed_vecs = np.stack([by_id[c] for c in gone])
    for row in index.search(removed_vecs, 10):  # a removed clip's own vector finds it no more
        assert not {c for c, _ in row} & set(gone)
    for i, row in enumerate(index.search(new[:10], 1)):  # each new clip is its own nearest neighbour
        assert row[0][0] == f"c{3000 + i}" and row[0][1] == pytest.approx(1.0, abs=1e-5)
    segs = json.loads((tmp_path / "faiss.json").read_text())["parts"][0]["segments"]
    assert [s["count"] for s in segs] == [3000, 100] and segs[1]["start"] == 3000
    again = VectorIndex.load(tmp_path)
    assert again.search(q, 10) == index.search(q, 10)
    for qq, row in zip(q, again.search(q, 10)):  # exact scores after the reload
        np.testing.assert_allclose([s for _, s in row], [float(by_id[c] @ qq) for c, _ in row], atol=1e-6)


def test_two_processes_catching_up_the_same_saved_index_keep_their_own_rows(tmp_path, monkeypatch):
    """Two holders of one saved index each add different clips under the same new labels: each writes its own
    segment, so neither's re-rank reads the other's rows, even after the other's save deleted its file."""
    vecs = _clustered(2000)
    index = VectorIndex.build([f"c{i}" for i in range(2000)], vecs, 1, kind="compressed")
    index.save(tmp_path)
    a, b = VectorIndex.load(tmp_path), VectorIndex.load(tmp_path)
    va, vb = _clustered(30, seed=21), _clustered(30, seed=22)
    ids0 = [f"c{i}" for i in range(2000)]
    a.catch_up(ids0 + [f"a{i}" for i in range(30)], np.concatenate([vecs, va]), 2)
    b.catch_up(ids0 + [f"b{i}" for i in range(30)], np.concatenate([vecs, vb]), 2)
    monkeypatch.setattr(floatcopy, "UNUSED_GRACE_S", 0.0)
    a.save(tmp_path)
    b.save(tmp_path)  # deletes a's new segment: no saved index names it now
    assert len(list((tmp_path / "vectors").iterdir())) == 2
    for i in range(30):  # a still re-ranks with its own rows (its mapping outlives the unlink)
        assert a.search(va[i], 1)[0][0] == (f"a{i}", pytest.approx(1.0, abs=1e-5))
        assert b.search(vb[i], 1)[0][0] == (f"b{i}", pytest.approx(1.0, abs=1e-5))
    a.save(tmp_path)  # its missing segment is written again
    reloaded = VectorIndex.load(tmp_path)
    assert reloaded.search(va[3], 1)[0][0] == ("a3", pytest.approx(1.0, abs=1e-5))


def test_unused_segments_are_deleted_after_a_rebuild(tmp_path, monkeypatch):
    store = _filled(tmp_path, _clustered(1500))
    open_index(store, tmp_path, kind="compressed")
    _add(store, _clustered(1000, seed=3), start=1500)  # > 20 % more: a rebuild, with a new segment
    monkeypatch.setattr(floatcopy, "UNUSED_GRACE_S", 0.0)
    index = open_index(ClipStore.open(tmp_path), tmp_path, kind="compressed")
    assert index.opened.action == "rebuild" and "change is large" in index.opened.reason
    names = {s["name"] for s in json.loads((tmp_path / "faiss.json").read_text())["parts"][0]["segments"]}
    assert {p.name for p in (tmp_path / "vectors").iterdir()} == names and len(names) == 1


def test_a_damaged_float_segment_is_rebuilt(tmp_path, caplog):
    store = _filled(tmp_path, _clustered(1500))
    open_index(store, tmp_path, kind="compressed")
    seg = next((tmp_path / "vectors").iterdir())
    seg.write_bytes(seg.read_bytes()[:-DIM * 4])  # one row short
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        index = open_index(ClipStore.open(tmp_path), tmp_path, kind="compressed")
    assert "rebuilt because corrupt" in caplog.text and index.kind == "compressed" and len(index) == 1500


def test_without_cluster_structure_compressed_scans_every_code_and_stays_exact():
    both = _random(3050)
    vecs, queries = both[:3000], both[3000:]
    ids = [f"c{i}" for i in range(3000)]
    index = VectorIndex.build(ids, vecs, 1, kind="compressed", recall_target=0.95)
    rec = index.record
    assert index.kind == "compressed" and rec.nprobe == rec.nlist and rec.fallback is None  # every list scanned
    assert rec.recall_at_10 >= 0.95 and f"{rec.nlist}x4" in rec.recall_by_nprobe
    assert _recall(index, vecs, ids, queries) >= 0.95
    by_id = dict(zip(ids, vecs))
    for q, row in zip(queries[:10], index.search(queries[:10], 10)):
        np.testing.assert_allclose([s for _, s in row], [float(by_id[c] @ q) for c, _ in row], atol=1e-6)


def test_auto_whose_ivf_misses_the_target_builds_compressed_not_flat(tmp_path, monkeypatch):
    monkeypatch.setattr(kinds, "AUTO_FLAT_MAX_ELEMENTS", 500 * DIM)  # auto picks ivf at 3000 vectors
    store = _filled(tmp_path, _random(3000))
    index = open_index(store, tmp_path)
    assert index.kind == "compressed" and index.record.requested == "auto"
    assert index.record.fallback.startswith("ivf recall@10") and index.record.fallback.endswith("compressed instead")
    _add(store, _random(20, seed=5), start=3000)
    again = open_index(ClipStore.open(tmp_path), tmp_path)  # auto still says ivf: kept, caught up, not rebuilt
    assert again.opened.action == "catch_up" and again.kind == "compressed" and len(again) == 3020
    # explicitly asked, ivf still falls back to exact flat search
    ivf = VectorIndex.build([f"c{i}" for i in range(3000)], _random(3000), 1, kind="ivf")
    assert ivf.kind == "flat" and ivf.record.fallback.endswith("exact search")


def test_auto_picks_compressed_above_its_size(tmp_path, monkeypatch):
    assert choose_kind(1000, 512) == "flat"
    assert choose_kind(100_000, 512) == "ivf"
    assert choose_kind(3_000_000, 512) == "compressed"
    # the same rule at sizes a test can build: flat up to 500 vectors, ivf to 1000, compressed above
    monkeypatch.setattr(kinds, "AUTO_FLAT_MAX_ELEMENTS", 500 * DIM)
    monkeypatch.setattr(kinds, "AUTO_COMPRESSED_MIN_ELEMENTS", 1000 * DIM)
    store = _filled(tmp_path, _clustered(800))
    assert open_index(store, tmp_path).kind == "ivf"
    _add(store, _clustered(1200, seed=4), start=800)
    index = open_index(ClipStore.open(tmp_path), tmp_path)
    assert index.kind == "compressed" and "auto picks 'compressed'" in index.opened.reason
    with pytest.raises(ValueError, match="annoy"):
        choose_kind(10, 10, "annoy")
    assert choose_kind(10 ** 9, 512) == "compressed" and choose_kind(10, 10, "hnsw") == "hnsw"  # never auto's


def test_compressed_on_torch_is_exact(tmp_path):
    vecs = _clustered(2000)
    ids = [f"c{i}" for i in range(2000)]
    index = VectorIndex.build(ids, vecs, 1, kind="compressed").use_device("cpu", backend="torch")
    exact = VectorIndex.build(ids, vecs, 1, kind="flat")
    q = _clustered(10, seed=5)
    got, want = index.search(q, 10), exact.search(q, 10)
    assert [[c for c, _ in r] for r in got] == [[c for c, _ in r] for r in want]
    np.testing.assert_allclose([[s for _, s in r] for r in got], [[s for _, s in r] for r in want], atol=1e-5)


def test_a_small_catch_up_keeps_its_rows_in_ram_until_the_save_writes_them(tmp_path):
    vecs = _clustered(1000)
    index = VectorIndex.build([f"c{i}" for i in range(1000)], vecs, 1, kind="compressed", folder=tmp_path)
    index.save(tmp_path)
    files = sorted(p.name for p in (tmp_path / floatcopy.FOLDER).iterdir())
    assert len(files) == 1
    new = _clustered(50, seed=3)
    index.apply([f"n{i}" for i in range(50)], new, ["c1"], 2)
    assert sorted(p.name for p in (tmp_path / floatcopy.FOLDER).iterdir()) == files  # nothing written yet
    assert index.search(new[7], 1)[0][0] == ("n7", pytest.approx(1.0, abs=1e-5))  # re-ranked from RAM
    index.save(tmp_path)
    assert len(list((tmp_path / floatcopy.FOLDER).iterdir())) == 2
    back = VectorIndex.load(tmp_path)
    assert back.search(new, 3) == index.search(new, 3) and "c1" not in back


def test_a_float16_copy_halves_the_bytes_and_scores_stay_within_rounding(tmp_path, monkeypatch):
    both = _clustered(2020)
    vecs, q = both[:2000], both[2000:]  # queries held out, from the same clusters
    ids = [f"c{i}" for i in range(2000)]
    index = VectorIndex.build(ids, vecs, 1, kind="compressed", float_copy="float16")
    assert index.record.rerank_dtype == "float16" and index.mapped_bytes == 2000 * DIM * 2
    by_id = dict(zip(ids, vecs))
    got = index.search(q, 10)
    for qq, row in zip(q, got):  # exact for the float16-rounded vectors: within 1e-3 of the float32 ones
        np.testing.assert_allclose([s for _, s in row], [float(by_id[c] @ qq) for c, _ in row], atol=1e-3)
    assert _recall(index, vecs, ids, q) >= 0.9
    new = _clustered(30, seed=6)  # other clusters: each its own nearest neighbour
    index.apply([f"n{i}" for i in range(30)], new, ["c0"], 2)
    index.save(tmp_path)
    names = [p.name for p in (tmp_path / floatcopy.FOLDER).iterdir()]
    assert len(names) == 2 and all(n.endswith(".f16") for n in names)
    assert sum((tmp_path / floatcopy.FOLDER / n).stat().st_size for n in names) == 2030 * DIM * 2
    back = VectorIndex.load(tmp_path)
    assert back.record.rerank_dtype == "float16" and back.search(q, 10) == index.search(q, 10)
    assert back.search(new[3], 1)[0][0][0] == "n3" and "c0" not in back
    # auto keeps float32 below AUTO_FLOAT16_MIN_BYTES, float16 above
    assert VectorIndex.build(ids, vecs, 1, kind="compressed").record.rerank_dtype == "float32"
    monkeypatch.setattr(kinds, "AUTO_FLOAT16_MIN_BYTES", 1000 * DIM * 4)
    assert VectorIndex.build(ids, vecs, 1, kind="compressed").record.rerank_dtype == "float16"
    with pytest.raises(ValueError, match="float_copy"):
        VectorIndex.build(ids, vecs, 1, kind="compressed", float_copy="int8")


def test_a_loaded_compressed_index_reads_its_float_copy_into_the_page_cache_when_it_fits(tmp_path, monkeypatch):
    vecs = _clustered(1000)
    VectorIndex.build([f"c{i}" for i in range(1000)], vecs, 1, kind="compressed").save(tmp_path)
    back = VectorIndex.load(tmp_path)  # starts the read in the background
    copy = back._kind.floats
    assert copy.warming is not None
    copy.warming.join(30)
    assert not copy.warming.is_alive() and back.warm(wait=True)
    assert back.search(vecs[3], 1)[0][0][0] == "c3"
    monkeypatch.setattr(floatcopy, "WARM_MAX_SHARE", 1e-12)  # a copy too large for the memory: left to the disk
    assert not VectorIndex.load(tmp_path).warm()
    assert not VectorIndex.build(["a"] * 1 + ["b"], vecs[:2], 1, kind="flat").warm()  # no float copy
