"""ClipStore: real LanceDB on disk in tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from motive_index.errors import FingerprintMismatchError, IndexNotFoundError, MotiveIndexError
from motive_index.store import ClipStore, check_fingerprint

DIM = 8
FP = {"model": {"name": "tiny-wan", "weights_sha256": "abc"}, "projection": {"kind": "fastfood", "dim": DIM,
                                                                              "seed": 0},
      "estimator": {"timestep": 751, "noise_seed": 0}, "video": {"frames": 17, "size": [64, 64]}}


def _vec(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _rec(clip_id: str, seed: int = 0, **meta) -> dict:
    return {"clip_id": clip_id, "path": f"/videos/{clip_id}.mp4", "caption": f"caption {clip_id}",
            "metadata": meta, "vector": _vec(seed)}


def test_create_open_round_trip(tmp_path):
    d = tmp_path / "idx"
    assert not ClipStore.exists(d)
    store = ClipStore.create(d, FP, DIM)
    assert ClipStore.exists(d)
    assert len(store) == 0 and store.dim == DIM and store.path == d
    assert store.fingerprint == FP
    assert store.vectors()[1].shape == (0, DIM)
    assert store.add([_rec("a", 1), _rec("b", 2)]) == 2

    again = ClipStore.open(d)
    assert len(again) == 2 and again.dim == DIM
    assert again.fingerprint == FP
    assert again.version == store.version
    assert sorted(again.ids()) == ["a", "b"]
    # the human-readable copy exists and agrees
    assert json.loads((d / "fingerprint.json").read_text()) == FP


def test_fingerprint_in_table_schema_metadata(tmp_path):
    import lancedb

    ClipStore.create(tmp_path, FP, DIM)
    (tmp_path / "fingerprint.json").unlink()  # the table, not the file, is authoritative
    table = lancedb.connect(str(tmp_path / "lancedb")).open_table("clips")
    assert json.loads(table.schema.metadata[b"motive_index.fingerprint"]) == FP
    assert ClipStore.open(tmp_path).fingerprint == FP


def test_create_again_same_fingerprint_continues(tmp_path):
    s1 = ClipStore.create(tmp_path, FP, DIM)
    s1.add([_rec("a", 1)])
    fp_tuples = {**FP, "video": {"frames": 17, "size": (64, 64)}}  # tuples read back as lists: same
    s2 = ClipStore.create(tmp_path, fp_tuples, DIM)
    assert s2.ids() == ["a"]


def test_fingerprint_mismatch_names_nested_field(tmp_path):
    ClipStore.create(tmp_path, FP, DIM)
    other = json.loads(json.dumps(FP))
    other["projection"]["seed"] = 1
    with pytest.raises(FingerprintMismatchError) as e:
        ClipStore.create(tmp_path, other, DIM)
    assert e.value.field == "projection.seed"
    assert e.value.stored == 0 and e.value.given == 1
    assert "projection.seed" in str(e.value)
    assert isinstance(e.value, ValueError) and isinstance(e.value, MotiveIndexError)
    with pytest.raises(FingerprintMismatchError) as e:
        ClipStore.create(tmp_path, FP, DIM + 1)
    assert e.value.field == "dim"


def test_check_fingerprint_paths():
    check_fingerprint(FP, json.loads(json.dumps(FP)))
    with pytest.raises(FingerprintMismatchError) as e:
        check_fingerprint({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}})
    assert e.value.field == "a.c" and repr(e.value.stored) == "<missing>" and e.value.given == 2
    with pytest.raises(FingerprintMismatchError) as e:
        check_fingerprint({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}})
    assert e.value.field == "a.c" and e.value.stored == 2
    with pytest.raises(FingerprintMismatchError) as e:
        check_fingerprint({"a": {"b": 1}}, {"a": 5})
    assert e.value.field == "a"
    with pytest.raises(FingerprintMismatchError) as e:
        check_fingerprint({"t": [751, 500]}, {"t": [751, 501]})
    assert e.value.field == "t[1]"
    with pytest.raises(FingerprintMismatchError) as e:
        check_fingerprint({"flag": True}, {"flag": 1})
    assert e.value.field == "flag"


def test_open_missing_raises(tmp_path):
    with pytest.raises(IndexNotFoundError):
        ClipStore.open(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()  # looking does not create anything
    with pytest.raises(FileNotFoundError):  # IndexNotFoundError is a FileNotFoundError
        ClipStore.open(tmp_path)


def test_add_is_idempotent(tmp_path):
    store = ClipStore.create(tmp_path, FP, DIM)
    assert store.add([_rec("a", 1), _rec("b", 2)]) == 2
    v = store.version
    assert store.add([_rec("a", 1), _rec("b", 2)]) == 0
    assert store.version == v  # nothing new: no write, no new version
    assert store.add([_rec("c", 3), _rec("c", 4), _rec("a", 5)]) == 1
    assert len(store) == 3
    assert store.add([]) == 0
    ids, vecs = store.vectors()
    assert sorted(ids) == ["a", "b", "c"]
    np.testing.assert_array_equal(vecs[ids.index("c")], _vec(3))  # first occurrence in the batch wins
    np.testing.assert_array_equal(vecs[ids.index("a")], _vec(1))  # stored one untouched


def test_add_validates(tmp_path):
    store = ClipStore.create(tmp_path, FP, DIM)
    bad = _rec("bad")
    bad["vector"] = np.zeros(DIM + 1, np.float32)
    with pytest.raises(ValueError, match="'bad'"):
        store.add([_rec("ok"), bad])
    nan = _rec("nanclip")
    nan["vector"] = np.full(DIM, np.nan, np.float32)
    with pytest.raises(ValueError, match="nanclip"):
        store.add([nan])
    assert len(store) == 0  # a bad record writes nothing of its batch


def test_vectors_order_matches_ids(tmp_path):
    store = ClipStore.create(tmp_path, FP, DIM)
    ids = [f"clip{i:03d}" for i in range(50)]
    store.add([_rec(c, i) for i, c in enumerate(ids[:30])])
    store.add([_rec(c, i + 30) for i, c in enumerate(ids[30:])])
    got_ids, vecs = store.vectors()
    assert vecs.dtype == np.float32 and vecs.shape == (50, DIM) and vecs.flags.c_contiguous
    assert sorted(got_ids) == ids and got_ids == store.ids()
    for c, v in zip(got_ids, vecs):
        np.testing.assert_array_equal(v, _vec(ids.index(c)))
    version, snap_ids, snap_vecs = store.snapshot()
    assert version == store.version and snap_ids == got_ids


def test_rows_round_trip_with_quotes(tmp_path):
    store = ClipStore.create(tmp_path, FP, DIM)
    weird = ["it's", 'say "hi"', "back\\slash", "o'' ; drop", "ünï"]
    meta = {"license": "cc-by", "nested": {"a": [1, 2]}, "score": np.float64(0.5), "n": np.int64(3),
            "missing": float("nan")}
    store.add([_rec(c, i, **meta) for i, c in enumerate(weird)] + [_rec("plain", 9)])
    assert store.has(weird + ["absent"]) == set(weird)
    rows = store.rows(weird + ["absent"])
    assert set(rows) == set(weird)
    for c in weird:
        r = rows[c]
        assert r["clip_id"] == c and r["path"] == f"/videos/{c}.mp4" and r["caption"] == f"caption {c}"
        assert r["metadata"] == {"license": "cc-by", "nested": {"a": [1, 2]}, "score": 0.5, "n": 3,
                                 "missing": None}
        assert "vector" not in r
    assert store.rows([]) == {}


def test_many_ids_in_filters(tmp_path):
    store = ClipStore.create(tmp_path, FP, DIM)
    ids = [f"c{i}" for i in range(2500)]
    vecs = np.random.default_rng(0).standard_normal((2500, DIM)).astype(np.float32)
    store.add([{"clip_id": c, "path": "", "caption": "", "metadata": {}, "vector": v} for c, v in zip(ids, vecs)])
    assert store.has(ids) == set(ids)
    assert len(store.rows(ids[::2])) == 1250


def test_failures_recorded_and_cleared(tmp_path):
    store = ClipStore.create(tmp_path, FP, DIM)
    store.record_failure("x", "/v/x.mp4", "unreadable")
    store.record_failure("y", "/v/y.mp4", "too short")
    store.record_failure("x", "/v/x.mp4", "NaN gradient")
    f = {r["clip_id"]: r for r in ClipStore.open(tmp_path).failures()}
    assert set(f) == {"x", "y"}
    assert f["x"]["reason"] == "NaN gradient" and f["x"]["path"] == "/v/x.mp4"
    v = store.version
    store.add([_rec("x", 1)])  # x succeeds on retry
    assert [r["clip_id"] for r in store.failures()] == ["y"]
    assert store.version == v + 1  # failures do not touch the clips table's version


def test_reads_see_other_writers(tmp_path):
    reader = ClipStore.create(tmp_path, FP, DIM)
    assert len(reader) == 0
    v0 = reader.version
    writer = ClipStore.open(tmp_path)
    writer.add([_rec("a", 1)])
    assert len(reader) == 1 and reader.version > v0 and reader.has(["a"]) == {"a"}
    # a stale handle must not write a duplicate
    writer2 = ClipStore.open(tmp_path)
    reader.add([_rec("b", 2)])
    assert writer2.add([_rec("b", 2)]) == 0
    assert sorted(ClipStore.open(tmp_path).ids()) == ["a", "b"]


def test_plain_lancedb_and_pandas_read(tmp_path):
    import lancedb

    store = ClipStore.create(tmp_path, FP, DIM)
    store.add([_rec("a", 1, license="cc0"), _rec("b", 2)])
    df = lancedb.connect(str(tmp_path / "lancedb")).open_table("clips").to_pandas()
    assert sorted(df["clip_id"]) == ["a", "b"]
    assert set(df.columns) >= {"clip_id", "path", "caption", "metadata", "vector", "added_at"}
    row = df.set_index("clip_id").loc["a"]
    assert json.loads(row["metadata"]) == {"license": "cc0"}
    assert len(row["vector"]) == DIM


def test_not_a_motive_index_table(tmp_path):
    import lancedb
    import pyarrow as pa

    lancedb.connect(str(tmp_path / "lancedb")).create_table("clips", schema=pa.schema([("clip_id", pa.string())]))
    with pytest.raises(MotiveIndexError, match="fingerprint"):
        ClipStore.open(tmp_path)


def test_a_reading_block_looks_up_the_newest_version_once_but_writes_always_do(tmp_path, monkeypatch):
    store = ClipStore.create(tmp_path, FP, DIM)
    other = ClipStore.open(tmp_path)  # another process's handle on the same store
    store.add([_rec("a", 1)])
    lookups = []
    real = type(store._clips).checkout_latest
    monkeypatch.setattr(type(store._clips), "checkout_latest", lambda t: (lookups.append(t), real(t))[1])
    with store.reading(), store.tombstones.reading():
        assert store.ids() == ["a"] and len(store) == 1 and store.rows(["a"])["a"]["clip_id"] == "a"
        assert store.tombstones.ids() == frozenset() and store.has(["a"]) == {"a"}
        assert len(lookups) == 2  # one for the clips, one for the tombstones: not one per read
        other.add([_rec("b", 2)])
        other.remove(["a"])
        assert store.ids() == ["a"]  # the block reads what it first saw
        # a write in the block looks again: it sees b (stored once) and refuses the removed a
        assert store.add([_rec("b", 2), _rec("a", 1)]) == 0
    assert store.ids() == ["b"] and "a" in store.tombstones.ids()  # after the block: the newest again
    assert sorted(ClipStore.open(tmp_path).ids()) == ["b"]
