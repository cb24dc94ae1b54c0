"""The compact clip id <-> label map of the FAISS index."""

from __future__ import annotations

import pytest

from motive_index.index import idmap
from motive_index.index.idmap import IdMap


def test_lookups_adds_removes_and_order():
    m = IdMap([0, 1, 3], ["a", "b", "d"])
    assert len(m) == 3 and m.span == 4 and m.label("d") == 3 and m.label("c") is None and m.id_of(1) == "b"
    m.add(["x", "y"], 5)  # a gap at 4: labels are never reused
    assert m.label("y") == 6 and "x" in m and m.span == 7
    m.remove([1])
    assert "b" not in m and len(m) == 4 and m.ids() == ["a", "d", "x", "y"]
    assert m.items() == [(0, "a"), (3, "d"), (5, "x"), (6, "y")] and m.labels().tolist() == [0, 3, 5, 6]
    with pytest.raises(ValueError, match="overlap"):
        m.add(["z"], 6)
    with pytest.raises(ValueError, match="duplicate"):
        IdMap([0, 1], ["a", "a"])
    with pytest.raises(ValueError, match="duplicate"):
        IdMap([0, 0], ["a", "b"])


def test_many_catch_ups_coalesce_and_merge(monkeypatch):
    monkeypatch.setattr(idmap, "MERGE_MIN", 10)
    m = IdMap(list(range(100)), [f"c{i}" for i in range(100)])
    for i in range(idmap.MAX_CHUNKS + 10):
        m.add([f"n{i}"], 100 + 2 * i)
    assert len(m._chunks) <= idmap.MAX_CHUNKS + 1  # coalesced
    assert len(m._recent) <= 11 and len(m._hash) > 100  # merged into the sorted hashes as they came
    assert all(m.label(f"n{i}") == 100 + 2 * i for i in range(idmap.MAX_CHUNKS + 10))
    assert m.id_of(100 + 2 * 40) == "n40" and m.label("c7") == 7 and len(m) == 100 + idmap.MAX_CHUNKS + 10


def test_hash_collisions_never_give_a_wrong_label(monkeypatch):
    monkeypatch.setattr(idmap, "hash", lambda c: len(c), raising=False)  # every 2-letter id collides
    m = IdMap([0, 1, 2], ["ab", "cd", "ef"])
    assert [m.label(c) for c in ("ab", "cd", "ef", "gh")] == [0, 1, 2, None]
    m.remove([1])
    m.add(["cd"], 3)  # the same id again, at a new label
    m._merge()
    assert m.label("cd") == 3 and m.label("ab") == 0 and len(m) == 3
