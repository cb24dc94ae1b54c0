"""Concurrent writers, atomic removal, and the repair of what an interrupted writer leaves: each mechanism
tested directly (real LanceDB, FAISS, processes and flock), not by timing luck."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from motive_index.api import FEATURES_DIR, MotiveIndex
from motive_index.cli import main
from motive_index.errors import IndexBusyError, IndexStateError
from motive_index.lock import LOCK_FILE, WriteLock, write_lock
from motive_index.manifest import read_manifest
from motive_index.store import ClipStore

ROOT = Path(__file__).resolve().parents[1]
DIM = 8


def _records(ids, seed=0):
    rng = np.random.default_rng(seed)
    return [{"clip_id": c, "path": f"/v/{c}.mp4", "caption": "", "metadata": {},
             "vector": rng.standard_normal(DIM).astype(np.float32)} for c in ids]


def _store(path) -> ClipStore:
    return ClipStore.create(path, {"kind": "test"}, DIM)


def _raw_insert(store: ClipStore, ids, vectors) -> None:
    """Rows written straight through LanceDB, without the lock or any check: what a racing (or older)
    writer's insert amounts to."""
    import pyarrow as pa
    from motive_index.store import clips_schema

    n, dim = len(ids), store.dim
    store._clips.add(pa.table({
        "clip_id": list(ids), "path": [""] * n, "caption": [""] * n, "metadata": ["{}"] * n,
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(vectors, np.float32).reshape(-1)), dim),
        "added_at": pa.array([None] * n, pa.timestamp("us", tz="UTC"))}, schema=clips_schema(dim)))


class Holder:
    """Another process that takes the index's write lock and keeps it until stopped (or killed)."""

    def __init__(self, index_dir: Path):
        code = textwrap.dedent(f"""
            import sys, time
            from motive_index.lock import write_lock
            write_lock({str(index_dir)!r}).acquire("holder-test build")
            print("held", flush=True)
            sys.stdin.readline()
        """)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        assert self.proc.stdout.readline().strip() == "held"

    def release(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=30)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def index_copy(built_index, tmp_path):
    """A private copy of the session's real index (12 clips, both channels), free to change."""
    dst = tmp_path / "index"
    shutil.copytree(built_index, dst)
    return dst


# ---- the lock -----------------------------------------------------------------------------------------------


def test_lock_names_its_holder_and_no_wait_fails_at_once(tmp_path):
    holder = Holder(tmp_path)
    try:
        lock = WriteLock(tmp_path)
        t0 = time.perf_counter()
        with pytest.raises(IndexBusyError, match=rf"pid {holder.proc.pid} .*holder-test build") as e:
            lock.acquire("second", wait=False)
        assert time.perf_counter() - t0 < 1.0
        assert isinstance(e.value, BlockingIOError) and e.value.exit_code == 6
        with pytest.raises(IndexBusyError):
            lock.acquire("second", timeout=0.3)  # waits, then gives up
    finally:
        holder.release()
    with lock.hold("second"):  # free again
        assert lock.holder()["pid"] == os.getpid() and lock.holder()["command"] == "second"
    assert lock.holder() == {}


def test_lock_of_a_killed_process_is_taken_over_at_once(tmp_path):
    holder = Holder(tmp_path)
    holder.kill()  # kill -9: the kernel drops its flock; its note in the file is stale
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.proc.pid
    lock = WriteLock(tmp_path)
    t0 = time.perf_counter()
    lock.acquire("after", wait=False)
    try:
        assert time.perf_counter() - t0 < 1.0
        assert lock.holder()["pid"] == os.getpid()
    finally:
        lock.release()


def test_lock_nests_in_a_thread_and_serializes_threads(tmp_path):
    lock = write_lock(tmp_path)
    assert write_lock(tmp_path / ".") is lock  # one per directory in a process
    order = []
    with lock.hold("outer"):
        with lock.hold("inner"):  # same thread: free
            pass
        t = threading.Thread(target=lambda: (lock.acquire("other"), order.append("other"), lock.release()))
        t.start()
        time.sleep(0.3)
        order.append("outer done")
    t.join(10)
    assert order == ["outer done", "other"]


# ---- store-level inserts -------------------------------------------------------------------------------------


def test_add_waits_for_another_writer_and_then_skips_what_it_stored(tmp_path):
    store = _store(tmp_path)
    holder = Holder(tmp_path)
    done = threading.Event()
    result = {}

    def add():
        result["added"] = store.add(_records([f"c{i}" for i in range(10)]))
        done.set()

    t = threading.Thread(target=add)
    t.start()
    assert not done.wait(0.5)  # blocked on the other process's lock
    # meanwhile the lock's holder stores 4 of the same clips
    _raw_insert(ClipStore.open(tmp_path), [f"c{i}" for i in range(4)], np.ones((4, DIM)))
    holder.release()
    assert done.wait(30)
    t.join()
    assert result["added"] == 6
    ids = store.ids()
    assert len(ids) == len(set(ids)) == len(store) == 10


_RACE = textwrap.dedent("""
    import sys, numpy as np
    from motive_index.store import ClipStore
    store = ClipStore.open(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    recs = [{"clip_id": f"c{i}", "path": "", "vector": rng.standard_normal(8).astype(np.float32)}
            for i in range(300)]
    sys.stdin.readline()  # start together
    print(store.add(recs), flush=True)
""")


def test_two_processes_adding_the_same_ids_store_each_once(tmp_path):
    """Before the lock, this left 575 rows for 300 ids (and len() said 575)."""
    _store(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(tmp_path), str(s)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=ROOT) for s in (1, 2)]
    time.sleep(3)  # both have imported lancedb and opened the store
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    added = [int(p.communicate(timeout=120)[0].strip()) for p in procs]
    store = ClipStore.open(tmp_path)
    ids = store.ids()
    assert sorted(added) == [0, 300]
    assert len(ids) == len(set(ids)) == len(store) == 300


def test_repair_deletes_duplicate_rows_and_rows_of_removed_clips(tmp_path):
    store = _store(tmp_path)
    store.add(_records(["a", "b", "c"]))
    # what a writer without the lock could leave: a second copy of "a", and "c" stored after its tombstone
    store.tombstones.add(["c"])
    _raw_insert(store, ["a"], np.ones((1, DIM)))
    assert len(store) == 4
    assert store.repair() == {"removed": 1, "duplicates": 1}
    assert sorted(store.ids()) == ["a", "b"] and len(store) == 2
    first = _records(["a"])[0]["vector"]
    np.testing.assert_array_equal(store.get_vectors(["a"])["a"], first)  # the first copy is kept
    assert store.repair() == {"removed": 0, "duplicates": 0}


# ---- removal that no race can undo ---------------------------------------------------------------------------


def _vector(index_dir, clip_id):
    return ClipStore.open(index_dir).get_vectors([clip_id])[clip_id]


def test_a_tombstoned_clip_is_never_returned_even_before_its_rows_are_deleted(index_copy):
    """A remove killed between its tombstone and its delete (it once left the channels split: motion gone,
    influence still returned): the tombstone alone hides the clip in both channels, and the next search that
    can take the lock deletes the rows."""
    idx = MotiveIndex.open(index_copy)
    target = idx.store.ids()[0]
    vec = _vector(index_copy, target)
    assert idx.search(vec, k=1)[0].clip_id == target
    fvec = idx.features_store.get_vectors([target])[target]

    idx.store.tombstones.add([target], "licence withdrawn")  # the first write of remove(), and nothing else
    holder = Holder(index_copy)  # another writer holds the lock: no repair possible now
    try:
        reader = MotiveIndex.open(index_copy)
        hits = reader.search(vec, k=12)
        assert target not in [h.clip_id for h in hits] and len(hits) == 11  # k still filled from the rest
        from motive_index.attribution import rank
        sim = rank(reader._ensure_index("motion"), reader.features_store, fvec, k=12, kind="similarity",
                   rows_from=reader.store)
        assert target not in [h.clip_id for h in sim] and len(sim) == 11
        assert reader.store.has([target]) == {target}  # rows still there: the lock was busy
    finally:
        holder.release()
    fresh = MotiveIndex.open(index_copy)
    assert target not in [h.clip_id for h in fresh.search(vec, k=12)]
    assert not fresh.store.has([target]) and not fresh.features_store.has([target])  # repaired
    assert fresh.info()["removed"] == 1 and fresh.info()["size"] == 11


def test_a_row_that_raced_in_after_its_tombstone_is_filtered_then_deleted_by_the_next_write(index_copy):
    """The race that resurrected 3 of 30 clips: add checked the tombstones, remove wrote its tombstone and
    deleted (nothing yet), then add inserted. Here the late insert is made directly."""
    idx = MotiveIndex.open(index_copy)
    target = idx.store.ids()[1]
    vec = _vector(index_copy, target)
    assert idx.remove([target]) == 1
    _raw_insert(idx.store, [target], vec[None])  # the late insert of the racing add
    holder = Holder(index_copy)  # a writer holds the lock: searches cannot repair, only filter
    try:
        reader = MotiveIndex.open(index_copy)
        hits = reader.search(vec, k=12)
        assert reader._indexes["influence"].count_held(reader.store.tombstones.ids()) == 1  # indexed again...
        assert target not in [h.clip_id for h in hits] and len(hits) == 11                 # ...never returned
        assert reader.store.has([target]) == {target}
    finally:
        holder.release()
    MotiveIndex.open(index_copy).purge()  # the next write repairs first
    assert not ClipStore.open(index_copy).has([target])


def test_remove_without_the_lock_hides_at_once_and_says_so(index_copy):
    idx = MotiveIndex.open(index_copy)
    target = idx.store.ids()[2]
    vec = _vector(index_copy, target)
    holder = Holder(index_copy)
    try:
        with pytest.raises(IndexBusyError, match="already hidden from every result"):
            idx.remove([target], wait=False)
        assert target not in [h.clip_id for h in MotiveIndex.open(index_copy).search(vec, k=12)]
    finally:
        holder.release()
    assert idx.remove([target]) == 1  # now it deletes the rows (stored until now)


def test_legacy_motion_tombstones_count(index_copy):
    """Indexes made before the channels shared one tombstone table kept a second one in motion/."""
    import lancedb
    import pyarrow as pa
    from motive_index.store import REMOVED_SCHEMA

    idx = MotiveIndex.open(index_copy)
    target = idx.store.ids()[3]
    db = lancedb.connect(str(index_copy / FEATURES_DIR / "lancedb"))
    db.create_table("removed", pa.table({"clip_id": [target], "reason": [""], "at": pa.array(
        [None], pa.timestamp("us", tz="UTC"))}, schema=REMOVED_SCHEMA))
    fresh = MotiveIndex.open(index_copy)
    assert target in fresh.store.removed()
    assert target not in [h.clip_id for h in fresh.search(_vector(index_copy, target), k=12)]


# ---- whole writers -------------------------------------------------------------------------------------------


def test_two_adds_at_once_do_the_work_once_and_their_reports_add_up(dataset, model_dir, tmp_path):
    clips = read_manifest(dataset)
    index = tmp_path / "idx"
    MotiveIndex.build(clips[:2], model_dir, index, dim=16, features=False)
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(MotiveIndex.open(index).add(clips[:6])))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(r.added for r in reports) == [0, 4]  # one did the work, the other found it done
    for r in reports:
        assert r.added + r.skipped + r.removed + len(r.failed) == 6
    ids = ClipStore.open(index).ids()
    assert len(ids) == len(set(ids)) == 6


def test_a_report_adds_up_with_stored_removed_failed_and_new_clips(dataset, model_dir, tmp_path):
    clips = read_manifest(dataset)
    index = tmp_path / "idx"
    idx, _ = MotiveIndex.build(clips[:3], model_dir, index, dim=16, features=False)
    idx.remove([clips[3].clip_id, clips[0].clip_id])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    from motive_index.types import Clip

    manifest = clips[:6] + [Clip(clip_id="broken", path=str(bad))]
    rep = idx.add(manifest)
    assert (rep.added, rep.skipped, rep.removed, sorted(rep.failed)) == (2, 2, 2, ["broken"])
    assert rep.added + rep.skipped + rep.removed + len(rep.failed) == len(manifest)


def test_cli_no_wait_exits_6_naming_the_holder(index_copy):
    holder = Holder(index_copy)
    try:
        r = CliRunner().invoke(main, ["remove", "x", "--index", str(index_copy), "--no-wait"])
        assert r.exit_code == 6, r.output
        assert f"pid {holder.proc.pid}" in r.output and "holder-test build" in r.output
        r = CliRunner().invoke(main, ["purge", "--index", str(index_copy), "--no-wait"])
        assert r.exit_code == 6, r.output
    finally:
        holder.release()


# ---- small things --------------------------------------------------------------------------------------------


def test_files_get_the_umask_mode(index_copy, tmp_path):
    from motive_index._io import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "f.json", "{}")
        assert stat.S_IMODE(os.stat(tmp_path / "f.json").st_mode) == 0o644
        os.umask(0o002)
        atomic_write(tmp_path / "g.json", "{}")
        assert stat.S_IMODE(os.stat(tmp_path / "g.json").st_mode) == 0o664
    finally:
        os.umask(old)


def test_corrupt_settings_is_a_clear_user_error(index_copy):
    (index_copy / "settings.json").write_text("{not json")
    with pytest.raises(IndexStateError, match="settings.json.*corrupt.*--model") as e:
        MotiveIndex.open(index_copy)
    assert isinstance(e.value, ValueError) and e.value.exit_code == 2
    assert MotiveIndex.open(index_copy, model="tiny").model_ref == "tiny"  # a model given: usable


@pytest.mark.parametrize("text", ['{"model": 123}', '["tiny"]', '{"model": "tiny", "checkpointing": "yes"}'])
def test_settings_of_the_wrong_shape_are_a_clear_user_error(index_copy, text):
    (index_copy / "settings.json").write_text(text)
    with pytest.raises(IndexStateError, match="settings.json.*corrupt"):
        MotiveIndex.open(index_copy)


def test_missing_settings_names_the_file(index_copy):
    (index_copy / "settings.json").unlink()
    with pytest.raises(IndexStateError, match="settings.json is missing.*--model"):
        MotiveIndex.open(index_copy).embed("any.mp4")
