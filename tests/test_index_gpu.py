"""GPU search backends: exact torch search (tested on the CPU here, the same code runs on CUDA), device errors,
and, where this machine has one, the real GPU paths. Real LanceDB store and real FAISS in tmp_path."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest

from motive_index.index import (SearchDeviceError, VectorIndex, _faiss_gpus, open_index,
                                resolve_backend)
from motive_index.store import ClipStore

DIM = 32


def _unit(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)  # (n, dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n, dim=DIM, clusters=30, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = (centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _records(ids, vecs):
    return [{"clip_id": c, "path": "", "caption": "", "metadata": {}, "vector": v} for c, v in zip(ids, vecs)]


def _filled(path, vecs, prefix="c"):
    store = ClipStore.create(path, {"projection": {"kind": "identity", "dim": vecs.shape[1], "seed": 0}},
                             vecs.shape[1])
    store.add(_records([f"{prefix}{i}" for i in range(len(vecs))], vecs))
    return store


def _brute(ids, vecs, q, k, negative=False):
    s = vecs @ q  # (n,)
    order = np.argsort(s if negative else -s, kind="stable")[:k]
    return [ids[i] for i in order], s[order]


def _same(a, b, atol=1e-5):
    """Two result lists (one per query) have the same ids in the same order and scores within ``atol``."""
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert [c for c, _ in ra] == [c for c, _ in rb]
        np.testing.assert_allclose([s for _, s in ra], [s for _, s in rb], atol=atol, rtol=0)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _no_cuda(monkeypatch):
    """Make this process look like a machine without CUDA, whatever it is."""
    import faiss
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    if hasattr(faiss, "get_num_gpus"):
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)


# ---- torch exact search (torch-cpu here) against FAISS flat ------------------------------------------------


@pytest.mark.parametrize("negative", [False, True])
def test_torch_backend_equals_faiss_flat(tmp_path, negative):
    vecs = _unit(500)
    store = _filled(tmp_path, vecs)
    flat = open_index(store, tmp_path, kind="flat")
    assert flat.backend == "faiss-cpu" and flat.stats["backend"] == "faiss-cpu"
    torch_ix = open_index(ClipStore.open(tmp_path), tmp_path, kind="flat", backend="torch")
    assert torch_ix is not flat and torch_ix.backend == "torch-cpu" and torch_ix.device == "cpu"
    assert torch_ix.stats["backend"] == "torch-cpu" and torch_ix.stats["kind"] == "flat"
    queries = _unit(20, seed=1)  # (20, dim)
    got = torch_ix.search(queries, 10, negative=negative)
    _same(got, flat.search(queries, 10, negative=negative))
    ids = [f"c{i}" for i in range(500)]
    for q, hits in zip(queries, got):  # and both equal brute force
        want_ids, want_scores = _brute(ids, vecs, q, 10, negative=negative)
        assert [c for c, _ in hits] == want_ids
        np.testing.assert_allclose([s for _, s in hits], want_scores, atol=1e-5)
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=not negative)
        assert all(s < 0 for s in scores) if negative else scores[0] > 0
    # one query as (dim,) float64, k above N, an empty index
    one = torch_ix.search(queries[0].astype(np.float64), 3, negative=negative)
    assert len(one) == 1 and [c for c, _ in one[0]] == [c for c, _ in got[0][:3]]
    assert len(torch_ix.search(queries[:2], 10_000)[0]) == 500
    empty = VectorIndex.build([], np.zeros((0, DIM), np.float32), 1).use_device("cpu", backend="torch")
    assert empty.backend == "torch-cpu" and empty.search(queries[:2], 5) == [[], []]


def test_torch_backend_reads_an_ivf_index_and_searches_exactly(tmp_path):
    vecs = _clustered(3000, seed=2)
    store = _filled(tmp_path, vecs)
    ivf = open_index(store, tmp_path, kind="ivf")
    assert ivf.kind == "ivf"
    exact = VectorIndex.build([f"c{i}" for i in range(3000)], vecs, store.version, kind="flat")
    t = open_index(ClipStore.open(tmp_path), tmp_path, kind="ivf", backend="torch")
    assert t.kind == "ivf" and t.backend == "torch-cpu"  # the saved index is IVF; the torch search is exact
    queries = _clustered(30, seed=7)
    for negative in (False, True):
        _same(t.search(queries, 10, negative=negative), exact.search(queries, 10, negative=negative))


def test_use_device_switches_backends_and_back(tmp_path):
    vecs = _unit(300, seed=3)
    index = VectorIndex.build([f"c{i}" for i in range(300)], vecs, 1)
    q = _unit(4, seed=4)
    before = index.search(q, 7)
    assert index.use_device("cpu", backend="torch") is index and index.backend == "torch-cpu"
    _same(index.search(q, 7), before)
    index.use_device("cpu")  # backend auto on the CPU: the FAISS index again
    assert index.backend == "faiss-cpu" and index.search(q, 7) == before
    with pytest.raises(ValueError, match="backend"):
        index.use_device("cpu", backend="cupy")


# ---- catch-up: removed clips never come back from the torch path, added ones appear -----------------------


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_torch_backend_follows_removes_and_adds(tmp_path, caplog, kind):
    vecs = _clustered(2000, seed=5)
    store = _filled(tmp_path, vecs)
    index = open_index(store, tmp_path, kind=kind, backend="torch")
    assert index.backend == "torch-cpu" and index.kind == kind
    gone = ["c3", "c10", "c11", "c500"]
    assert index.search(vecs[3], 1)[0][0][0] == "c3"
    store.remove(gone)
    new = _clustered(3, seed=6)
    store.add(_records(["n0", "n1", "n2"], new))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        same = open_index(store, tmp_path, kind=kind, current=index, backend="torch")
    assert same is index and "caught up: +3 -4" in caplog.text and "torch-cpu" in caplog.text
    assert index.backend == "torch-cpu" and len(index._copy.row_labels) == len(index) == len(store) == 1999
    # each removed clip's own vector as the query, positive and negative, k = everything: never returned
    for negative in (False, True):
        res = index.search(vecs[[3, 10, 11, 500]], 2500, negative=negative)
        found = {c for row in res for c, _ in row}
        assert not found & set(gone)
        assert len(found) == 1999
    for i in range(3):
        hits = index.search(new[i], 3)[0]
        assert hits[0][0] == f"n{i}" and abs(hits[0][1] - 1.0) < 1e-5
    # agrees with exact FAISS over the same store snapshot
    ids, vs = store.vectors()
    exact = VectorIndex.build(ids, vs, store.version, kind="flat")
    queries = _clustered(10, seed=8)
    for negative in (False, True):
        _same(index.search(queries, 8, negative=negative), exact.search(queries, 8, negative=negative))
    # the device copy is not saved: the files stay the CPU index, without this process's backend
    meta = json.loads((tmp_path / "faiss.json").read_text())
    assert "backend" not in meta["stats"] and "device" not in meta["stats"]
    assert VectorIndex.load(tmp_path).backend == "faiss-cpu"


def test_torch_backend_after_a_loaded_index_catches_up(tmp_path):
    vecs = _unit(400, seed=9)
    store = _filled(tmp_path, vecs)
    open_index(store, tmp_path)  # saved on the CPU
    store.remove(["c7"])
    store.add(_records(["late"], _unit(1, seed=10)))
    index = open_index(ClipStore.open(tmp_path), tmp_path, backend="torch")  # load, catch up, then the copy
    assert index.backend == "torch-cpu" and "c7" not in index and "late" in index
    assert index.search(vecs[7], 1)[0][0][0] != "c7"
    assert index.search(_unit(1, seed=10)[0], 1)[0][0][0] == "late"
    assert "c7" not in {c for c, _ in index.search(vecs[7], 500)[0]}


def test_search_while_catching_up_on_the_torch_backend(tmp_path):
    vecs = _clustered(1500, seed=12)
    store = _filled(tmp_path, vecs)
    index = open_index(store, tmp_path, backend="torch")
    errors, stop, removed = [], threading.Event(), set()
    queries = vecs[:40]

    def reader():
        try:
            while not stop.is_set():
                snapshot = set(removed)  # removed before this search began: must never be returned
                for row in index.search(queries, 5):
                    assert len(row) == 5
                    assert not {c for c, _ in row} & snapshot
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    ids = [f"c{i}" for i in range(1500)]
    try:
        for step in range(4):
            out = ids[:10]
            all_ids = ids[10:] + [f"t{step}_{i}" for i in range(10)]
            all_vecs = np.concatenate([vecs[10:], _clustered(10, seed=100 + step)])
            assert index.catch_up(all_ids, all_vecs, 100 + step) == (10, 10)
            removed.update(out)
            ids, vecs = all_ids, all_vecs
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert sorted(index.ids) == sorted(ids) and sorted(index._copy.row_labels.tolist()) == index._ids.labels().tolist()


# ---- device errors ------------------------------------------------------------------------------------------


def test_cuda_without_cuda_is_a_clear_error(tmp_path, monkeypatch, caplog):
    _no_cuda(monkeypatch)
    store = _filled(tmp_path, _unit(50))
    with caplog.at_level(logging.INFO, logger="motive_index.index"):
        for backend in ("auto", "torch", "faiss"):
            with pytest.raises(SearchDeviceError) as e:
                open_index(store, tmp_path, device="cuda", backend=backend)
            assert "cuda" in str(e.value) and isinstance(e.value, ValueError)
            assert ("device='cpu'" in str(e.value)) or ("faiss" in str(e.value))
    assert not (tmp_path / "faiss.index").exists()  # refused before any work
    index = VectorIndex.build(["a"], _unit(1), 1)
    with pytest.raises(SearchDeviceError, match="no GPU|CPU build|no usable CUDA"):
        index.use_device("cuda:0")
    assert index.backend == "faiss-cpu" and index.search(_unit(1)[0], 1)[0][0][0] == "a"  # still usable


def test_bad_device_strings(monkeypatch):
    _no_cuda(monkeypatch)
    for bad in ("gpu", "cuda:x", "", "tpu:0"):
        with pytest.raises(SearchDeviceError, match="invalid"):
            resolve_backend(bad)
    assert resolve_backend("CPU") == ("faiss-cpu", "cpu")
    assert resolve_backend("cpu", "torch") == ("torch-cpu", "cpu")


def test_api_passes_the_device_to_the_index(tmp_path, monkeypatch):
    from motive_index.api import MotiveIndex

    store = _filled(tmp_path, _unit(40, seed=13))
    assert MotiveIndex(store, device="cpu")._ensure_index().backend == "faiss-cpu"
    _no_cuda(monkeypatch)
    with pytest.raises(SearchDeviceError, match="cuda"):
        MotiveIndex(ClipStore.open(tmp_path), device="cuda").search(_unit(1)[0], k=3)


# ---- the real GPU paths, where this machine has a GPU --------------------------------------------------------


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device for torch here")
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_torch_cuda_equals_faiss_flat_and_follows_catch_up(tmp_path, kind):
    vecs = _clustered(3000, seed=14)
    store = _filled(tmp_path, vecs)
    index = open_index(store, tmp_path, kind=kind, device="cuda", backend="torch")
    assert index.backend == "torch-cuda" and index.device == "cuda:0"
    queries = _clustered(20, seed=15)
    exact = VectorIndex.build([f"c{i}" for i in range(3000)], vecs, 1, kind="flat")
    for negative in (False, True):
        _same(index.search(queries, 10, negative=negative), exact.search(queries, 10, negative=negative))
    store.remove(["c0", "c1"])
    store.add(_records(["n0"], _clustered(1, seed=16)))
    open_index(store, tmp_path, kind=kind, current=index, device="cuda", backend="torch")
    assert not {c for c, _ in index.search(vecs[0], 3000)[0]} & {"c0", "c1"}
    assert index.search(_clustered(1, seed=16)[0], 1)[0][0][0] == "n0"


@pytest.mark.skipif(not _cuda_available(), reason="no CUDA device for torch here")
def test_torch_cuda_scores_stay_exact_under_tf32(tmp_path):
    import torch

    vecs = _unit(5000, dim=512, seed=17)
    index = VectorIndex.build([f"c{i}" for i in range(5000)], vecs, 1, kind="flat")
    queries = _unit(8, dim=512, seed=18)
    want = index.search(queries, 10)
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # TF32 matmuls
    try:
        index.use_device("cuda", backend="torch")
        _same(index.search(queries, 10), want)
    finally:
        torch.set_float32_matmul_precision(prev)


def _faiss_gpu() -> bool:
    import faiss

    return _faiss_gpus(faiss) > 0


@pytest.mark.skipif(not _faiss_gpu(), reason="the installed faiss has no GPU support or sees no GPU")
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_faiss_gpu_matches_cpu_and_follows_catch_up(tmp_path, kind):
    vecs = _clustered(3000, seed=19)
    store = _filled(tmp_path, vecs)
    cpu = open_index(store, tmp_path, kind=kind)
    gpu = open_index(ClipStore.open(tmp_path), tmp_path, kind=kind, device="cuda")
    assert gpu.backend == "faiss-gpu" and gpu.stats["backend"] == "faiss-gpu"
    queries = _clustered(20, seed=20)
    for negative in (False, True):
        a, b = gpu.search(queries, 10, negative=negative), cpu.search(queries, 10, negative=negative)
        if kind == "flat":
            _same(a, b)
        else:  # same nprobe: the same lists are visited; scores of common hits are the same products
            overlap = np.mean([len({c for c, _ in x} & {c for c, _ in y}) / 10 for x, y in zip(a, b)])
            assert overlap >= 0.95
    big = gpu.search(queries[0], 2100)[0]  # above the GPU's k limit: answered by the CPU index
    assert big[:10] == cpu.search(queries[0], 2100)[0][:10] and (kind != "flat" or len(big) == 2100)
    store.remove(["c0", "c1"])
    store.add(_records(["n0"], _clustered(1, seed=21)))
    open_index(store, tmp_path, kind=kind, current=gpu, device="cuda")
    assert gpu.backend == "faiss-gpu"
    assert not {c for c, _ in gpu.search(vecs[:2], 50)[0]} & {"c0", "c1"}
    assert gpu.search(_clustered(1, seed=21)[0], 1)[0][0][0] == "n0"


def test_reduced_matmul_precision_rescores_to_exact_scores():
    import torch

    vecs = _unit(2000, dim=128, seed=22)
    index = VectorIndex.build([f"c{i}" for i in range(2000)], vecs, 1, kind="flat")
    queries = _unit(6, dim=128, seed=23)
    want = index.search(queries, 10)
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # the rescoring path (TF32 on CUDA, bf16 passes on some CPUs)
    try:
        index.use_device("cpu", backend="torch")
        _same(index.search(queries, 10), want)
        _same(index.search(queries, 10, negative=True), VectorIndex.build(
            [f"c{i}" for i in range(2000)], vecs, 1, kind="flat").search(queries, 10, negative=True))
    finally:
        torch.set_float32_matmul_precision(prev)
