"""One MotiveIndex serving many threads: queries in 8 threads give the vectors and hits of the same queries run
one by one, while another thread adds and removes clips (removed ones never returned, added ones found)."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np

from motive_index.api import MotiveIndex
from motive_index.manifest import read_manifest
from motive_index.types import Clip

THREADS = 8
ROUNDS = 2


def test_eight_threads_query_while_another_adds_and_removes(built_index, dataset, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(built_index, index)
    clips = read_manifest(dataset)
    probes = clips[:3]
    idx = MotiveIndex.open(index)
    k = len(clips) + 3  # every clip, the added ones too: the lists can be compared whole

    serial = {}
    for p in probes:  # one by one, before any churn
        vec, _ = idx.embed(p.path, p.caption)
        serial[p.clip_id] = (vec, [(h.clip_id, h.score) for h in idx.search(vec, k=k)])

    # churn: copies of stored clips under new ids, added then removed again
    extra = [Clip(clip_id=f"extra-{i}", path=c.path, caption=c.caption) for i, c in enumerate(clips[3:6])]
    removed_at: dict[str, float] = {}
    errors: list[BaseException] = []
    seen: list[tuple[float, str, list[str]]] = []  # (query start, probe, returned ids)
    start = threading.Barrier(THREADS + 1)

    def churn():
        try:
            start.wait()
            rep = idx.add(extra)
            assert rep.added == len(extra)
            for c in extra[:2]:
                idx.remove([c.clip_id])
                removed_at[c.clip_id] = time.monotonic()
        except BaseException as e:  # reported below
            errors.append(e)

    def ask(t: int):
        try:
            start.wait()
            for r in range(ROUNDS):
                p = probes[(t + r) % len(probes)]
                t0 = time.monotonic()
                res = idx.query(p.path, prompt=p.caption, k=k, similar=0)
                vec, want = serial[p.clip_id]
                got_vec, _ = idx.embed(p.path, p.caption)
                np.testing.assert_allclose(got_vec, vec, atol=1e-6)
                ids = [h.clip_id for h in res.hits]
                seen.append((t0, p.clip_id, ids))
                ours = [(h.clip_id, h.score) for h in res.hits if not h.clip_id.startswith("extra-")]
                assert [c for c, _ in ours] == [c for c, _ in want]
                np.testing.assert_allclose([s for _, s in ours], [s for _, s in want], atol=1e-5)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(t,)) for t in range(THREADS)] + [threading.Thread(target=churn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors[0]
    assert len(seen) == THREADS * ROUNDS
    for t0, _, ids in seen:  # a query that started after a removal returned never saw the clip
        for cid, at in removed_at.items():
            if t0 > at:
                assert cid not in ids
    assert set(removed_at) == {"extra-0", "extra-1"}
    kept = extra[2]
    vec = idx.store.get_vectors([kept.clip_id])[kept.clip_id]
    ids = [h.clip_id for h in idx.search(vec, k=k)]
    assert kept.clip_id in ids and "extra-0" not in ids and "extra-1" not in ids
