"""An index on object storage (``s3://bucket/prefix``), against a real S3-compatible server (moto's server mode)
started by the test on loopback: the whole life of an index, two writers on two "machines" at once, and the
lease lock that keeps them apart (a killed holder is taken over; a paused one that lost its lease commits
nothing)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import zlib

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer  # moto[server] is part of the test install: missing, this fails

from motive_index.api import MotiveIndex
from motive_index.errors import IndexBusyError
from motive_index.lock import LeaseLock, write_lock
from motive_index.location import Location
from motive_index.manifest import read_manifest
from motive_index.store import ClipStore
from motive_index.summary import fast_info

BUCKET = "motive-test"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with one bucket; the environment points LanceDB and obstore at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT": url, "AWS_ALLOW_HTTP": "true",
           "MOTIVE_INDEX_CACHE": str(tmp_path_factory.mktemp("cache"))}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield {"url": url, "client": client, "env": env}
    server.stop()


def _uri(name: str = "idx") -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}/{name}"


def _keys(s3, uri: str) -> list[str]:
    prefix = uri.split(f"{BUCKET}/", 1)[1] + "/"
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"][len(prefix):] for page in pages for o in page.get("Contents", []))


def test_an_index_on_s3_builds_adds_removes_queries_and_purges_like_a_local_one(s3, dataset, model_dir,
                                                                                 built_index, tmp_path):
    clips = read_manifest(dataset)
    local = MotiveIndex.open(built_index)
    uri = _uri()
    idx, report = MotiveIndex.build(clips[:8], model_dir, uri, dim=64)
    assert report.added == 8 and not report.failed
    assert idx.add(clips).added == 4 and len(idx.store) == 12

    # the same vectors as the local build of the same manifest, in both channels
    ids = [c.clip_id for c in clips]
    for mine, theirs in ((idx.store, local.store), (idx.features_store, local.features_store)):
        a, b = mine.get_vectors(ids), theirs.get_vectors(ids)
        assert set(a) == set(b) == set(ids)
        assert max(float(np.abs(a[c] - b[c]).max()) for c in ids) <= 1e-5

    # the store and what describes it live on the server; the derived files in the local cache only
    keys = _keys(s3, uri)
    assert {"settings.json", "fingerprint.json", "motion/fingerprint.json", "write.lock"} <= set(keys)
    assert any(k.startswith("lancedb/clips.lance/") for k in keys)
    assert not any("faiss" in k or "null.json" in k for k in keys)
    assert idx.path.is_relative_to(os.environ["MOTIVE_INDEX_CACHE"])

    query = clips[0]
    mine = idx.query(query.path, prompt=query.caption, k=5)
    theirs = local.query(query.path, prompt=query.caption, k=5)
    assert [h.clip_id for h in mine.hits] == [h.clip_id for h in theirs.hits]
    np.testing.assert_allclose([h.score for h in mine.hits], [h.score for h in theirs.hits], atol=1e-5)
    assert mine.hits[0].clip_id == query.clip_id

    # another machine (its own empty cache) opening the URI sees the same index
    other_cache = tmp_path / "other-machine"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTIVE_INDEX_CACHE", str(other_cache))
        other = MotiveIndex.open(uri)
        assert other.path.is_relative_to(other_cache)
        assert [h.clip_id for h in other.query(query.path, prompt=query.caption, k=5).hits] == \
               [h.clip_id for h in mine.hits]

        # a removal there is seen here; the clip never comes back, not even by adding it again
        gone = mine.hits[1].clip_id
        assert other.remove([gone]) == 1
    assert gone not in [h.clip_id for h in idx.query(query.path, prompt=query.caption, k=12).hits]
    assert idx.add([c for c in clips if c.clip_id == gone]).removed == 1
    assert len(idx.store) == len(idx.features_store) == 11

    deleted = idx.purge()
    assert deleted["clips"] >= 1 and deleted["motion/clips"] >= 1
    after = MotiveIndex.open(uri)
    assert len(after.store) == 11 and gone not in after.store.ids()
    info = after.info()
    assert info["size"] == 11 and info["index"] == uri
    assert fast_info(uri)["size"] == 11  # the summary kept in the cache, checked against the server's versions


def test_cli_takes_an_s3_index_and_refuses_other_schemes(s3, dataset, model_dir):
    from click.testing import CliRunner

    from motive_index.cli import main

    clips = read_manifest(dataset)[:2]
    uri = _uri()
    MotiveIndex.build(clips, model_dir, uri, dim=64, features=False)
    out = CliRunner().invoke(main, ["info", "--index", uri, "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["size"] == 2
    bad = CliRunner().invoke(main, ["info", "--index", "gs://bucket/idx"])
    assert bad.exit_code == 2 and "gs:// is not supported" in bad.output
    missing = CliRunner().invoke(main, ["info", "--index", f"s3://{BUCKET}/nothing-here/idx"])
    assert missing.exit_code != 0 and "nothing-here" in missing.output


def _fingerprint() -> dict:
    return {"model": {"family": "test"}, "projection": {"dim": 8}}


def _vector(clip_id: str) -> list[float]:
    v = np.random.default_rng(zlib.crc32(clip_id.encode())).standard_normal(8).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


_WRITER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from motive_index.store import ClipStore
    uri, who, order = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    store = ClipStore.open(uri)
    added = 0
    go = float(sys.argv[4])
    while time.time() < go:
        time.sleep(0.005)
    for batch in order:
        recs = [{"clip_id": c, "path": f"/{c}.mp4", "caption": who, "metadata": {"by": who},
                 "vector": np.asarray(json.loads(sys.argv[5])[c], np.float32)} for c in batch]
        added += store.add(recs)
    print(json.dumps({"who": who, "added": added}))
""")


def test_two_writers_on_two_machines_never_lose_or_duplicate_a_clip(s3, tmp_path):
    uri = _uri()
    ClipStore.create(uri, _fingerprint(), 8)
    shared = [f"shared-{i}" for i in range(30)]  # both writers add these, in opposite orders
    own = {w: [f"{w}-{i}" for i in range(10)] for w in "AB"}  # and ten each of their own
    orders = {"A": [shared[i:i + 3] + [own["A"][i // 3]] for i in range(0, 30, 3)],
              "B": [shared[::-1][i:i + 3] + [own["B"][i // 3]] for i in range(0, 30, 3)]}
    wanted = set(shared) | set(own["A"]) | set(own["B"])
    vectors = json.dumps({c: _vector(c) for c in wanted})
    go = time.time() + 6  # both start writing at this moment, after their imports
    procs = []
    for w in "AB":  # each its own process and its own cache: two machines sharing only the server
        env = {**os.environ, "MOTIVE_INDEX_CACHE": str(tmp_path / f"machine-{w}")}
        procs.append(subprocess.Popen([sys.executable, "-c", _WRITER, uri, w, json.dumps(orders[w]), str(go), vectors],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))

    # every clip stored exactly once, in the raw table (not through the store's de-duplicating reads)
    raw = Location.of(uri).connect("lancedb").open_table("clips").to_arrow()
    ids = raw.column("clip_id").to_pylist()
    assert len(ids) == len(set(ids)) == len(wanted) and set(ids) == wanted
    assert sum(r["added"] for r in results) == len(wanted)  # each clip added by exactly one of them
    store = ClipStore.open(uri)
    got = store.get_vectors(sorted(wanted))
    assert all(np.allclose(got[c], _vector(c)) for c in wanted)


_HOLDER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from motive_index.lock import write_lock
    from motive_index.store import ClipStore
    store = ClipStore.open(sys.argv[1])
    with write_lock(sys.argv[1]).hold("holder-test"):
        print("held", flush=True)
        sys.stdin.readline()  # the test stops (SIGSTOP) or kills this process here
        try:
            v = np.ones(8, np.float32) / np.sqrt(8)
            store.add([{"clip_id": "late", "path": "/late.mp4", "caption": "", "metadata": {}, "vector": v}])
            print("committed", flush=True)
        except Exception as e:
            print("refused", type(e).__name__, e, flush=True)
""")


def _start_holder(uri: str, lease: float) -> subprocess.Popen:
    env = {**os.environ, "MOTIVE_INDEX_LEASE_SECONDS": str(lease)}
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, uri], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.strip() == "held", p.stderr.read()[-3000:]
    return p


def test_the_lease_of_a_killed_writer_is_taken_over_once_its_term_runs_out(s3):
    uri = _uri()
    ClipStore.create(uri, _fingerprint(), 8)
    p = _start_holder(uri, lease=2.0)
    mine = LeaseLock(Location.of(uri), lease_seconds=2.0)
    with pytest.raises(IndexBusyError) as busy:
        mine.acquire("test", wait=False)
    assert f"pid {p.pid}" in str(busy.value) and "holder-test" in str(busy.value)
    time.sleep(1.5)  # its heartbeat renews the lease meanwhile: still held past the first term
    with pytest.raises(IndexBusyError):
        mine.acquire("test", wait=False)
    p.kill()
    p.wait()
    t0 = time.monotonic()
    with mine.hold("after the kill", timeout=20):
        waited = time.monotonic() - t0
        assert mine.holder()["pid"] == os.getpid() and mine.holder()["command"] == "after the kill"
    assert waited <= 6.0
    assert mine.holder() == {}  # released: free for the next writer


def test_a_paused_writer_that_lost_its_lease_commits_nothing(s3):
    uri = _uri()
    ClipStore.create(uri, _fingerprint(), 8)
    p = _start_holder(uri, lease=1.0)
    os.kill(p.pid, signal.SIGSTOP)  # paused (a long GC, a VM migration) past its lease's term
    try:
        lock = write_lock(uri)
        with lock.hold("taker", timeout=20):
            os.kill(p.pid, signal.SIGCONT)
            p.stdin.write("go\n")
            p.stdin.flush()
            answer = p.stdout.readline().strip()
            assert answer.startswith("refused IndexBusyError") and "lost its write lock" in answer, answer
            assert lock.held
    finally:
        os.kill(p.pid, signal.SIGCONT)
        p.kill()
        p.wait()
    assert "late" not in ClipStore.open(uri).ids()


def test_locations_parse_and_refuse_what_they_cannot_hold(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("MOTIVE_INDEX_CACHE", str(tmp_path / "cache"))
    local = Location.of(tmp_path / "idx")
    assert not local.remote and local.local == tmp_path / "idx"
    a = Location.of("s3://bucket/indexes/idx/", {"aws_endpoint": "http://a:9000"})
    b = Location.of("s3://bucket/indexes/idx", {"aws_endpoint": "http://b:9000"})
    assert a.remote and a.uri == "s3://bucket/indexes/idx" and a.local.is_relative_to(tmp_path / "cache")
    assert a.local != b.local  # the same URI on two servers: two caches
    assert a.child("motion").local == a.local / "motion" and a.child("motion").uri.endswith("/idx/motion")
    for bad, why in (("gs://bucket/idx", "not supported"), ("s3://bucket", "prefix inside the bucket"),
                     (Path("s3://bucket/idx"), "went through pathlib.Path")):
        with pytest.raises(ValueError, match=why):
            Location.of(bad)
    with pytest.raises(ValueError, match="storage_options"):
        Location.of(tmp_path / "idx", {"aws_region": "x"})
