"""Growing and shrinking an index: add, remove, purge, and a build killed with SIGKILL, on real parts."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner

from motive_index.api import MotiveIndex
from motive_index.cli import main
from motive_index.manifest import read_manifest
from motive_index.store import ClipStore


def run(*args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return r


def test_add_is_idempotent_and_new_clips_are_searchable_at_once(dataset, model_dir, tmp_path):
    clips = read_manifest(dataset)
    index = tmp_path / "idx"
    MotiveIndex.build(clips[:6], model_dir, index, dim=32)
    r = run("add", dataset, "--index", index, "--json", "--quiet")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert (rep["added"], rep["skipped"], rep["size"]) == (6, 6, 12)
    rep = json.loads(run("add", dataset, "--index", index, "--json", "--quiet").output)
    assert (rep["added"], rep["skipped"], rep["size"]) == (0, 12, 12)
    new = clips[9]
    hits = MotiveIndex.open(index).query(new.path, prompt=new.caption, k=1).hits
    assert hits[0].clip_id == new.clip_id


def test_removed_clips_never_come_back(dataset, model_dir, tmp_path):
    clips = read_manifest(dataset)
    index = tmp_path / "idx"
    MotiveIndex.build(clips, model_dir, index, dim=32)
    reader = MotiveIndex.open(index)  # a long-running process, e.g. the service
    gone = clips[3]
    assert reader.query(gone.path, prompt=gone.caption, k=1).hits[0].clip_id == gone.clip_id

    r = run("remove", gone.clip_id, "nonexistent", "--index", index, "--reason", "licence withdrawn", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"removed": 1, "requested": 2, "size": 11}

    def ids(idx):
        return [h.clip_id for h in idx.query(gone.path, prompt=gone.caption, k=20).hits]

    assert gone.clip_id not in ids(reader)                            # the running process, at once
    assert len(ids(reader)) == 11
    rep = json.loads(run("add", dataset, "--index", index, "--json", "--quiet").output)
    assert rep["removed"] == 1 and rep["added"] == 0                  # a later add does not undo it
    _, rep = MotiveIndex.build(clips, model_dir, index, dim=32)       # nor a rebuild with the same manifest
    assert rep.removed == 1 and rep.added == 0
    fresh = MotiveIndex.open(index)                                   # nor a restart
    assert gone.clip_id not in ids(fresh) and fresh.info()["removed"] == 2  # "nonexistent" is refused too
    assert gone.clip_id not in ClipStore.open(index).ids()


def test_purge_erases_removed_vectors_from_disk(tmp_path):
    store = ClipStore.create(tmp_path / "idx", {"t": 1}, 8)
    marker = np.array([0.1234567, -7.654321, 3.1415927, 2.7182817, -1.4142135, 0.5772157, 1.6180339, -0.6931472],
                      np.float32)
    store.add([{"clip_id": "secret", "path": "", "caption": "", "metadata": {}, "vector": marker},
               {"clip_id": "kept", "path": "", "caption": "", "metadata": {}, "vector": np.ones(8, np.float32)}])

    def on_disk() -> bool:
        needle = marker.tobytes()
        return any(needle in p.read_bytes() for p in (tmp_path / "idx" / "lancedb").rglob("*") if p.is_file())

    assert on_disk()
    assert store.remove(["secret"]) == 1
    assert on_disk()  # LanceDB keeps old versions: removed is not yet erased
    r = run("purge", "--index", tmp_path / "idx", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["versions_deleted"]["clips"] >= 1
    assert not on_disk()
    assert ClipStore.open(tmp_path / "idx").ids() == ["kept"]


def test_remove_needs_ids(tmp_path, built_index):
    r = CliRunner().invoke(main, ["remove", "--index", str(built_index)])
    assert r.exit_code == 2 and "CLIP_IDs" in r.output


def test_build_killed_with_sigkill_resumes_to_the_exact_count(dataset, model_dir, tmp_path):
    index = tmp_path / "idx"
    cmd = [sys.executable, "-m", "motive_index.cli", "build", str(dataset), "--model", str(model_dir),
           "--index", str(index), "--dim", "32", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        stored = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                stored = len(ClipStore.open(index)) if ClipStore.exists(index) else 0
            except Exception:  # the store is being created right now
                stored = 0
            if stored >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the build finished before it could be killed; use more clips"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_at = len(ClipStore.open(index))
    assert 3 <= killed_at < 12  # every clip finished before the kill is there
    _, report = MotiveIndex.build(dataset, model_dir, index, dim=32)
    assert report.skipped == killed_at and report.added == 12 - killed_at
    ids = ClipStore.open(index).ids()
    assert len(ids) == 12 and len(set(ids)) == 12


def test_queries_keep_answering_during_an_add(dataset, model_dir, tmp_path):
    import threading

    clips = read_manifest(dataset)
    index = tmp_path / "idx"
    MotiveIndex.build(clips[:6], model_dir, index, dim=32)
    reader = MotiveIndex.open(index)
    probe = clips[0]
    vec, _ = reader.embed(probe.path, probe.caption)
    errors, answers = [], []

    def add():
        try:
            MotiveIndex.open(index).add(clips)
        except Exception as e:  # surfaced below
            errors.append(e)

    writer = threading.Thread(target=add)
    writer.start()
    while writer.is_alive() or not answers:
        hits = reader.search(vec, k=12)
        answers.append([h.clip_id for h in hits])
    writer.join()
    assert not errors
    assert all(a[0] == probe.clip_id for a in answers)          # a consistent answer every time
    assert all(6 <= len(a) <= 12 and len(set(a)) == len(a) for a in answers)
    assert len(reader.search(vec, k=12)) == 12                   # and the new clips once the add returned
