"""The HTTP service, driven over real HTTP on loopback: a real uvicorn server in a thread, a real httpx client,
the real index (LanceDB on disk, FAISS) and the tiny Wan model of the session fixtures."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from motive_index.api import MotiveIndex
from motive_index.manifest import read_manifest
from motive_index.service import ServiceConfig, create_app, serve

READ, CURATOR = "read-token-1", "curator-token-2"


class Server:
    """uvicorn serving ``app`` on a free loopback port, in a thread."""

    def __init__(self, app):
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def service(self):
        return self.app.service

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def wait_ready(self, client, timeout=120):
        deadline = time.time() + timeout
        while client.get("/readyz").status_code != 200:
            assert time.time() < deadline, "the service never became ready"
            time.sleep(0.1)

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _upload(path, **fields):
    return {"files": {"video": (Path(path).name, Path(path).read_bytes(), "video/mp4")},
            "data": {k: str(v) for k, v in fields.items()}}


@pytest.fixture(scope="module")
def index_copy(tmp_path_factory, built_index):
    dest = tmp_path_factory.mktemp("served") / "index"
    shutil.copytree(built_index, dest)
    return dest


@pytest.fixture(scope="module")
def served(index_copy):
    """The service with a read and a curator token, loaded and ready."""
    app = create_app(ServiceConfig(index=index_copy, token=READ, curator_token=CURATOR, max_upload_mb=2))
    with Server(app) as srv:
        client = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {READ}"}, timeout=120)
        srv.wait_ready(client)
        yield srv, client
        client.close()


def test_readiness_before_load_and_liveness(index_copy):
    app = create_app(ServiceConfig(index=index_copy), load=False)
    with Server(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        assert client.get("/healthz").json() == {"ok": True}
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready" and "Retry-After" in r.headers
        status = client.get("/v1/status").json()
        assert status["ready"] is False and status["size"] == 12
        srv.service.start_loading()
        srv.wait_ready(client)
        assert client.get("/readyz").json()["ready"] is True
        assert client.get("/openapi.json").json()["info"]["title"] == "motive-index"


def test_query_over_http_equals_in_process(served, index_copy, dataset):
    srv, client = served
    clips = read_manifest(dataset)
    probe = clips[2]
    r = client.post("/v1/query", **_upload(probe.path, prompt=probe.caption, k=5, similar=3))
    assert r.status_code == 200, r.text
    doc = r.json()
    local = MotiveIndex.open(index_copy).query(probe.path, prompt=probe.caption, k=5, similar=3)
    assert [h["clip_id"] for h in doc["hits"]] == [h.clip_id for h in local.hits]
    np.testing.assert_allclose([h["score"] for h in doc["hits"]], [h.score for h in local.hits], atol=1e-5)
    assert [h["clip_id"] for h in doc["similar"]] == [h.clip_id for h in local.similar]
    assert all(0 <= h["percentile"] <= 100 for h in doc["hits"] + doc["similar"])
    assert doc["hits"][0]["clip_id"] == probe.clip_id and doc["hits"][0]["percentile"] > 99
    assert doc["query"]["video"] == Path(probe.path).name  # the client's name, never a server path
    assert doc["index"]["fingerprint"] == srv.service.idx.fingerprint_id
    assert {"decode", "vae", "search"} <= set(doc["timings"])
    assert list(srv.service.tmp.iterdir()) == []  # the upload is deleted once the work is done
    page = client.post("/v1/query?format=html", **_upload(probe.path, prompt=probe.caption, k=3))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("data:image/png;base64,") >= 4 and probe.clip_id in page.text
    assert str(srv.service.tmp) not in page.text


def test_embed_then_lookup_gives_the_same_hits(served, dataset):
    srv, client = served
    probe = read_manifest(dataset)[4]
    e = client.post("/v1/embed", **_upload(probe.path, prompt=probe.caption))
    assert e.status_code == 200, e.text
    emb = e.json()
    assert emb["dim"] == len(emb["vector"]) == 64 and abs(np.linalg.norm(emb["vector"]) - 1) < 1e-4
    q = client.post("/v1/query", **_upload(probe.path, prompt=probe.caption, k=4, similar=0)).json()
    lk = client.post("/v1/lookup", json={"vector": emb["vector"], "fingerprint": emb["fingerprint"], "k": 4})
    assert lk.status_code == 200, lk.text
    assert [h["clip_id"] for h in lk.json()["hits"]] == [h["clip_id"] for h in q["hits"]]
    neg = client.post("/v1/lookup", json={"vector": emb["vector"], "fingerprint": emb["fingerprint"], "k": 4,
                                          "negative": True}).json()["hits"]
    assert [h["score"] for h in neg] == sorted(h["score"] for h in neg)
    # another fingerprint, or another dimension: refused, the field named
    bad = client.post("/v1/lookup", json={"vector": emb["vector"], "fingerprint": "0" * 16})
    assert bad.status_code == 409 and "'fingerprint'" in bad.json()["error"]["message"]
    short = client.post("/v1/lookup", json={"vector": emb["vector"][:10], "fingerprint": emb["fingerprint"]})
    assert short.status_code == 409 and "vector.dim" in short.json()["error"]["message"]
    zero = client.post("/v1/lookup", json={"vector": [0.0] * 64, "fingerprint": emb["fingerprint"]})
    assert zero.status_code == 422 and zero.json()["error"]["code"] == "bad_request"


def test_auth_refusals(served, dataset):
    srv, client = served
    anon = httpx.Client(base_url=srv.url, timeout=30)
    assert anon.get("/healthz").status_code == 200  # liveness needs no token
    for path in ("/v1/status", "/readyz", "/openapi.json", "/v1/clips/x"):
        r = anon.get(path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", path
    wrong = anon.get("/v1/status", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    # the read token on a curator route: 403; the curator token reads too
    r = client.delete("/v1/clips/anything")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = client.post("/v1/clips", **_upload(read_manifest(dataset)[0].path, clip_id="x"))
    assert r.status_code == 403
    assert anon.get("/v1/status", headers={"Authorization": f"Bearer {CURATOR}"}).status_code == 200
    anon.close()


def test_bad_requests_are_one_4xx_each(served, dataset, tmp_path):
    srv, client = served
    probe = read_manifest(dataset)[0]
    junk = tmp_path / "not-a-video.mp4"
    junk.write_bytes(b"this is not a video " * 100)
    r = client.post("/v1/query", **_upload(junk))
    assert r.status_code == 422 and r.json()["error"]["code"] == "bad_video", r.text
    for k in (0, 1000):
        r = client.post("/v1/query", **_upload(probe.path, k=k))
        assert r.status_code == 422 and "k=" in r.json()["error"]["message"]
    r = client.post("/v1/query", data={"prompt": "no video"})
    assert r.status_code == 422 and "video" in r.json()["error"]["message"]
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (3 * 2**20))  # over the 2 MB limit
    r = client.post("/v1/query", **_upload(big))
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"

    def chunks():  # a valid multipart body without Content-Length: the cap holds while it streams in
        yield (b'--b\r\nContent-Disposition: form-data; name="video"; filename="v.mp4"\r\n'
               b"Content-Type: video/mp4\r\n\r\n")
        for _ in range(40):
            yield b"x" * 100_000
        yield b"\r\n--b--\r\n"

    r = client.post("/v1/query", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413, r.text
    assert client.get("/v1/nowhere").json()["error"]["code"] == "not_found"
    assert list(srv.service.tmp.iterdir()) == []


def test_delete_then_never_returned_and_add_then_found(served, dataset):
    srv, client = served
    curator = {"Authorization": f"Bearer {CURATOR}"}
    clips = read_manifest(dataset)
    probe = clips[6]
    first = client.post("/v1/query", **_upload(probe.path, prompt=probe.caption, k=12)).json()
    gone = first["hits"][0]["clip_id"]
    assert client.get(f"/v1/clips/{gone}").json()["clip_id"] == gone
    d = client.delete(f"/v1/clips/{gone}", headers=curator)
    assert d.status_code == 200 and d.json()["hidden"] is True and d.json()["removed"] == 1
    again = client.post("/v1/query", **_upload(probe.path, prompt=probe.caption, k=12, similar=12)).json()
    returned = {h["clip_id"] for h in again["hits"] + again["similar"] + again["combined"]}
    assert gone not in returned and len(again["hits"]) == 11
    assert client.get(f"/v1/clips/{gone}").status_code == 404
    before = client.get("/v1/status").json()

    # add: the uploaded clip is embedded and found; its id withdrawn or stored already is a 409
    r = client.post("/v1/clips", headers=curator,
                    **_upload(probe.path, clip_id="uploaded-1", caption=probe.caption, metadata='{"source": "t"}'))
    assert r.status_code == 201, r.text
    assert r.json()["size"] == before["size"] + 1
    found = client.post("/v1/query", **_upload(probe.path, prompt=probe.caption, k=3)).json()
    assert found["hits"][0]["clip_id"] == "uploaded-1"
    row = client.get("/v1/clips/uploaded-1").json()
    assert row["metadata"]["source"] == "t" and Path(row["path"]).is_file()
    status = client.get("/v1/status").json()
    assert status["size"] == before["size"] + 1 and status["store_version"] > before["store_version"]
    assert status["search"]["stale"] is False and status["calibration"]["influence"]["size"] == status["size"]
    assert status["queue"] == {"pending": 0, "limit": 16, "workers": 2}
    assert client.post("/v1/clips", headers=curator, **_upload(probe.path, clip_id="uploaded-1")).status_code == 409
    r = client.post("/v1/clips", headers=curator, **_upload(probe.path, clip_id=gone))
    assert r.status_code == 409 and r.json()["error"]["code"] == "withdrawn"
    r = client.post("/v1/clips", headers=curator, **_upload(probe.path, clip_id="m", metadata="[1]"))
    assert r.status_code == 422
    # withdrawing an uploaded clip deletes its file too
    assert client.delete("/v1/clips/uploaded-1", headers=curator).status_code == 200
    assert not Path(row["path"]).exists()


def test_full_queue_is_503_with_retry_after_and_slow_is_504(index_copy, dataset):
    probe = read_manifest(dataset)[1]
    app = create_app(ServiceConfig(index=index_copy, queue=1, workers=1))
    with Server(app) as srv, httpx.Client(base_url=srv.url, timeout=120) as client:
        srv.wait_ready(client)
        with ThreadPoolExecutor(4) as pool:
            rs = list(pool.map(lambda _: client.post("/v1/query", **_upload(probe.path, k=3)), range(4)))
        codes = sorted(r.status_code for r in rs)
        assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
        assert all(r.headers.get("Retry-After") for r in rs if r.status_code == 503)
        assert all(r.json()["error"]["code"] == "queue_full" for r in rs if r.status_code == 503)
        srv.service.cfg.timeout_s = 0.01
        r = client.post("/v1/query", **_upload(probe.path, k=3))
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        deadline = time.time() + 60
        while srv.service.pending or list(srv.service.tmp.iterdir()):  # the work finishes, its upload goes
            assert time.time() < deadline
            time.sleep(0.1)


def test_no_curator_token_means_no_writes_and_no_open_bind(index_copy):
    with pytest.raises(ValueError, match="loopback"):
        serve(ServiceConfig(index=index_copy), host="0.0.0.0", port=0)
    app = create_app(ServiceConfig(index=index_copy), load=False)
    with Server(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        r = client.delete("/v1/clips/x")
        assert r.status_code == 403 and "--curator-token" in r.json()["error"]["message"]


def test_cli_query_through_the_server_matches_and_needs_no_torch(served, dataset, tmp_path):
    import json
    import subprocess
    import sys

    srv, client = served
    probe = read_manifest(dataset)[5]
    direct = client.post("/v1/query", **_upload(probe.path, prompt=probe.caption, k=4, similar=2)).json()
    code = ("import sys, json; from click.testing import CliRunner; from motive_index.cli import main; "
            f"r = CliRunner().invoke(main, ['query', {probe.path!r}, '--server', {srv.url!r}, '-k', '4', "
            f"'--similar', '2', '--prompt', {probe.caption!r}, '--json']); "
            "print(json.dumps({'rc': r.exit_code, 'out': r.output, 'torch': 'torch' in sys.modules, "
            "'lancedb': 'lancedb' in sys.modules}))")
    env = {**__import__("os").environ, "MOTIVE_INDEX_TOKEN": READ}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout.strip().splitlines()[-1])
    assert d["rc"] == 0, d["out"]
    assert d["torch"] is False and d["lancedb"] is False
    doc = json.loads(d["out"])
    assert [h["clip_id"] for h in doc["hits"]] == [h["clip_id"] for h in direct["hits"]]
    assert [h["percentile"] for h in doc["hits"]] == [h["percentile"] for h in direct["hits"]]
    assert doc["query"]["video"] == probe.path

    from click.testing import CliRunner

    from motive_index.cli import main

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    r = CliRunner().invoke(main, ["query", str(junk), "--server", srv.url], env={"MOTIVE_INDEX_TOKEN": READ})
    assert r.exit_code == 3 and "junk.mp4" in r.output and "motive-serve" not in r.output
    r = CliRunner().invoke(main, ["query", str(junk), "--server", srv.url], env={"MOTIVE_INDEX_TOKEN": "wrong"})
    assert r.exit_code == 2 and "401" in r.output
    r = CliRunner().invoke(main, ["query", probe.path, "--server", "http://127.0.0.1:9"])
    assert r.exit_code == 6 and "unreachable" in r.output
