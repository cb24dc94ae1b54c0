"""The HTTP service: a warm :class:`MotiveIndex` behind a small versioned JSON API, for moderation tools.

    motive-index serve --index runs/idx [--host 127.0.0.1] [--port 8750] [--token T] [--curator-token C]

The only module that imports the HTTP stack (FastAPI + uvicorn, the ``serve`` extra); it only calls
:class:`MotiveIndex`. The model and the FAISS indexes load once, in the background, at start (``/readyz`` says
503 until they have); every request then reuses them. Routes (one error shape everywhere:
``{"error": {"code", "message"}}``):

- ``POST /v1/query`` (multipart ``video``; ``prompt``, ``k``, ``negative``, ``similar``, ``combined``;
  ``?format=html`` for the evidence page) the ``query --json`` document, each hit with its ``percentile``;
- ``POST /v1/embed`` (multipart ``video``, ``prompt``) the query vector and the fingerprint id, and
  ``POST /v1/lookup`` (JSON ``{"vector", "fingerprint", "k", "negative"}``) its hits: embed on one box, match
  on another;
- ``GET /v1/clips/{clip_id}``; ``DELETE /v1/clips/{clip_id}`` and ``POST /v1/clips`` (curator token);
- ``GET /v1/status``, ``GET /healthz`` (liveness), ``GET /readyz`` (readiness), ``/openapi.json``, ``/docs``.

Auth: with a read token or a curator token set, every route but ``/healthz`` needs ``Authorization: Bearer
<token>`` (either token reads); the curator routes need the curator token always (without one configured they
are refused). Tokens are compared in constant time. :func:`serve` refuses to bind a non-loopback address with
no token.

Limits: uploads over ``max_upload_mb`` are refused (413) before they are read whole; the model's work runs on
``workers`` threads behind a queue of at most ``queue`` requests (503 with ``Retry-After`` when full); a
request that takes more than ``timeout_s`` gets 504 (its work finishes in the background and is dropped); ``k``
and ``similar`` are bounded by ``max_k`` (422). Uploads go to a private temporary folder and are deleted when
their request's work is done; no request names a server-side path. One log line per request (route, status,
ms, stage times), JSON lines with ``json_logs``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import (FingerprintMismatchError, GradientError, IndexBusyError, IndexNotFoundError, IndexStateError,
                     MotiveIndexError, VideoError)

try:
    import uvicorn
    from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as e:  # the serve extra is not installed
    raise ImportError(f"the HTTP service needs the serve extra ({e.name or e} is missing): "
                      f"pip install 'motive-index[serve]'") from e

log = logging.getLogger("motive_index.service")
access_log = logging.getLogger("motive_index.service.access")

API = "/v1"
OPEN_PATHS = ("/healthz",)          # no token ever needed
UPLOAD_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".gif"}


@dataclass
class ServiceConfig:
    """How the service runs. ``token``/``curator_token``: None for none. ``uploads``: where clips added over
    HTTP are kept (they are the store's training clips; default ``INDEX/uploads``)."""

    index: Path | str
    device: str = "cpu"
    model: str | None = None
    token: str | None = None
    curator_token: str | None = None
    max_upload_mb: float = 64.0
    timeout_s: float = 60.0
    queue: int = 16
    workers: int = 2
    max_k: int = 100
    uploads: Path | None = None
    json_logs: bool = False

    def __post_init__(self):
        from .location import is_uri

        self.index = self.index if is_uri(self.index) else Path(self.index)  # a folder, or s3://bucket/prefix
        for name in ("queue", "workers", "max_k"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid: at least 1")
        if self.max_upload_mb <= 0 or self.timeout_s <= 0:
            raise ValueError("max_upload_mb and timeout_s must be positive")
        self.token = self.token or None
        self.curator_token = self.curator_token or None
        if self.token is not None and self.token == self.curator_token:
            raise ValueError("the read token and the curator token must differ")


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status`` (and extra headers)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


# the first matching class decides (subclasses before the built-ins they derive from)
_STATUS = ((IndexBusyError, 503, "index_busy"), (FingerprintMismatchError, 409, "fingerprint_mismatch"),
           (IndexStateError, 409, "index_state"), (IndexNotFoundError, 503, "index_missing"),
           (VideoError, 422, "bad_video"), (GradientError, 422, "bad_gradient"),
           ((ValueError, TypeError), 422, "bad_request"))  # MotiveIndex's argument checks, manifests


def error_status(e: BaseException) -> tuple[int, str]:
    """The HTTP status and error code of an exception a request caused: every user error is one 4xx."""
    if isinstance(e, ApiError):
        return e.status, e.code
    for kinds, status, code in _STATUS:
        if isinstance(e, kinds):
            return status, code
    return 500, "internal"


def _body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _TooLarge(Exception):
    pass


class Service:
    """The state behind the routes: the index, its loading, the model-work queue, tokens and counters."""

    def __init__(self, cfg: ServiceConfig, index=None):
        from .api import MotiveIndex

        self.cfg = cfg
        self.idx = index if index is not None else MotiveIndex.open(cfg.index, device=cfg.device, model=cfg.model)
        self.uploads = Path(cfg.uploads) if cfg.uploads is not None else self.idx.path / "uploads"
        self.started = time.time()
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.load_seconds: float | None = None
        self._pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="motive-work")
        self._pending = 0
        self._pending_lock = threading.Lock()
        self.requests = {"total": 0, "failed_5xx": 0}
        self.tmp = Path(tempfile.mkdtemp(prefix="motive-serve-"))
        self._loader: threading.Thread | None = None

    # ---- life cycle -----------------------------------------------------------------------------------------
    def start_loading(self) -> None:
        """Load the model and the indexes on a background thread (``/readyz`` is 503 until done)."""
        def load():
            try:
                self.load_seconds = self.idx.warm()
                log.info("ready: model and indexes of %s loaded in %.1f s", self.idx.location, self.load_seconds)
                self.ready.set()
            except Exception as e:  # noqa: BLE001 - reported by /readyz and the log; the process stays up
                self.load_error = f"{type(e).__name__}: {e}"
                log.error("loading %s failed: %s", self.idx.location, self.load_error)

        self._loader = threading.Thread(target=load, name="motive-load", daemon=True)
        self._loader.start()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- auth -----------------------------------------------------------------------------------------------
    @staticmethod
    def _bearer(headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    @staticmethod
    def _same(a: str | None, b: str | None) -> bool:
        return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())

    def check_read(self, headers: dict[str, str]) -> None:
        """Any token set: the request must carry the read or the curator token."""
        if self.cfg.token is None and self.cfg.curator_token is None:
            return
        given = self._bearer(headers)
        if given is None:
            raise ApiError(401, "unauthorized", "this service needs a token: send 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": "Bearer"})
        if not (self._same(given, self.cfg.token) | self._same(given, self.cfg.curator_token)):
            raise ApiError(401, "unauthorized", "the token is not valid for this service",
                           {"WWW-Authenticate": "Bearer"})

    def check_curator(self, headers: dict[str, str]) -> None:
        if self.cfg.curator_token is None:
            raise ApiError(403, "forbidden", "curator routes are disabled: start the service with --curator-token "
                                             "(or MOTIVE_INDEX_CURATOR_TOKEN) to add or withdraw clips")
        given = self._bearer(headers)
        if given is None:
            raise ApiError(401, "unauthorized", "this route needs the curator token: 'Authorization: Bearer <token>'",
                           {"WWW-Authenticate": "Bearer"})
        if not self._same(given, self.cfg.curator_token):
            raise ApiError(403, "forbidden", "this route needs the curator token; the token given is not it")

    # ---- model work -----------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self._pending

    def require_ready(self) -> None:
        if self.load_error is not None:
            raise ApiError(503, "load_failed", f"the index or model failed to load: {self.load_error}")
        if not self.ready.is_set():
            raise ApiError(503, "not_ready", "the model and index are still loading", {"Retry-After": "2"})

    async def run(self, fn: Callable[[], Any], cleanup: Path | None = None, model: bool = True) -> Any:
        """Run ``fn`` on a worker thread, within the queue bound and the request timeout; ``cleanup`` (an
        upload) is deleted when the work is done, even after a timeout."""
        if model:
            try:
                self.require_ready()
            except ApiError:
                if cleanup is not None:
                    cleanup.unlink(missing_ok=True)
                raise
        with self._pending_lock:
            if self._pending >= self.cfg.queue:
                if cleanup is not None:
                    cleanup.unlink(missing_ok=True)
                raise ApiError(503, "queue_full", f"{self._pending} requests are queued or running (the limit is "
                                                  f"{self.cfg.queue}); retry shortly",
                               {"Retry-After": str(max(1, self._pending // max(self.cfg.workers, 1)))})
            self._pending += 1

        def done(_):
            with self._pending_lock:
                self._pending -= 1
            if cleanup is not None:
                cleanup.unlink(missing_ok=True)

        fut = self._pool.submit(fn)
        fut.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout=self.cfg.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"the request took more than {self.cfg.timeout_s:g} s") from None

    async def run_upload(self, fn: Callable[[], Any], path: Path, name: str, model: bool = True) -> Any:
        """:meth:`run` on an uploaded video at ``path``; its errors name the upload (``name``), never our path."""
        try:
            return await self.run(fn, cleanup=path, model=model)
        except VideoError as e:
            raise ApiError(422, "bad_video", f"video {name!r}: {e.reason.replace(str(path), name)}") from None

    async def save_upload(self, upload: UploadFile, folder: Path | None = None) -> Path:
        """The uploaded video in a file of ours (``folder``: the temp folder); never a path from the request."""
        suffix = Path(upload.filename or "").suffix.lower()
        suffix = suffix if suffix in UPLOAD_SUFFIXES else ".bin"
        folder = folder or self.tmp
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{uuid.uuid4().hex}{suffix}"

        def copy():
            upload.file.seek(0)
            with open(dest, "wb") as f:
                shutil.copyfileobj(upload.file, f, 1 << 20)
            return dest.stat().st_size

        size = await asyncio.to_thread(copy)
        if size == 0:
            dest.unlink(missing_ok=True)
            raise ApiError(422, "bad_video", "the uploaded video is empty")
        return dest

    def check_k(self, name: str, value: int | None, low: int = 1) -> None:
        if value is not None and not low <= value <= self.cfg.max_k:
            raise ApiError(422, "bad_request", f"{name}={value} is invalid: between {low} and {self.cfg.max_k}")


class _Front:
    """ASGI middleware in front of the app: the read-token check, the upload size cap (from Content-Length
    and while the body streams in) and the one access-log line per request."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        state = scope.setdefault("state", {})
        state["stages"], state["t0"] = {}, t0
        status: list[int] = [0]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        limit = int(self.service.cfg.max_upload_mb * 1024 * 1024)

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if scope["path"] not in OPEN_PATHS:
                self.service.check_read(headers)
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise ApiError(413, "too_large", f"the request body is {int(length) / 2**20:.1f} MB; the limit is "
                                                 f"{self.service.cfg.max_upload_mb:g} MB (--max-upload-mb)")
            seen = [0]

            async def receive_capped():
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > limit:
                        state["too_large"] = True
                        raise _TooLarge()
                return message

            await self.app(scope, receive_capped, send_logged)
        except ApiError as e:
            await _send_json(send_logged, e.status, _body(e.code, e.message), e.headers)
        except Exception:  # a bug: answered 500 by the app's handler already, or here; logged, not re-raised
            log.exception("%s %s failed", scope.get("method", ""), scope.get("path", ""))
            if not status[0]:
                await _send_json(send_logged, 500, _body("internal", "unexpected error"))
        finally:
            self.service.requests["total"] += 1
            if status[0] >= 500:
                self.service.requests["failed_5xx"] += 1
            self._log(scope, status[0], (time.perf_counter() - t0) * 1000, state.get("stages", {}))

    def _log(self, scope, status: int, ms: float, stages: dict) -> None:
        method, path = scope.get("method", ""), scope.get("path", "")
        if self.service.cfg.json_logs:
            access_log.info(json.dumps({"ts": round(time.time(), 3), "method": method, "path": path,
                                        "status": status, "ms": round(ms, 1),
                                        "stages_ms": {k: round(v * 1000, 1) for k, v in stages.items()}}))
        else:
            st = " ".join(f"{k}={v * 1000:.0f}ms" for k, v in stages.items())
            access_log.info("%s %s %d %.0fms%s", method, path, status, ms, f" {st}" if st else "")


async def _send_json(send, status: int, body: dict, headers: dict | None = None) -> None:
    raw = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hdrs += [(k.lower().encode(), str(v).encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": raw})


class LookupRequest(BaseModel):
    vector: list[float] = Field(..., description="The query vector, from POST /v1/embed (any length-1 scale)")
    fingerprint: str = Field(..., description="The fingerprint id it was embedded under")
    k: int = 10
    negative: bool = False


def create_app(cfg: ServiceConfig, index=None, load: bool = True):
    """The ASGI app (FastAPI behind :class:`_Front`). ``index``: a :class:`MotiveIndex` already open (else
    ``cfg.index`` is opened). ``load``: start loading the model and indexes at once."""
    service = Service(cfg, index)

    @asynccontextmanager
    async def lifespan(app):
        yield
        service.close()

    api = FastAPI(title="motive-index", version="1", lifespan=lifespan,
                  description="Which training clips most influenced the motion of a generated video.")
    api.state.service = service

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return JSONResponse(_body(e.code, e.message), status_code=e.status, headers=e.headers)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        parts = []
        for err in e.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse(_body("bad_request", "; ".join(parts) or "invalid request"), status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        if request.scope.get("state", {}).get("too_large"):
            return JSONResponse(_body("too_large", f"the upload is over the {cfg.max_upload_mb:g} MB limit "
                                                   f"(--max-upload-mb)"), status_code=413)
        codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
        return JSONResponse(_body(codes.get(e.status_code, "http_error"), str(e.detail)), status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @api.exception_handler(MotiveIndexError)
    async def _ours(request: Request, e: MotiveIndexError):
        status, code = error_status(e)
        headers = {"Retry-After": "5"} if status == 503 else None
        if status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, e)
        return JSONResponse(_body(code, str(e)), status_code=status, headers=headers)

    @api.exception_handler(ValueError)
    @api.exception_handler(TypeError)
    async def _invalid_value(request: Request, e: Exception):  # MotiveIndex's argument checks
        return JSONResponse(_body("bad_request", str(e)), status_code=422)

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):  # a bug (logged by _Front, with its traceback)
        return JSONResponse(_body("internal", f"unexpected error: {type(e).__name__}"), status_code=500)

    def curator(request: Request) -> None:
        service.check_curator({k.lower(): v for k, v in request.headers.items()})

    def stages(request: Request, timings: dict[str, float]) -> None:
        request.scope.setdefault("state", {}).setdefault("stages", {}).update(
            {k: float(v) for k, v in timings.items() if isinstance(v, (int, float))})

    # ---- routes ---------------------------------------------------------------------------------------------
    @api.get("/healthz", tags=["service"])
    def healthz():
        """Liveness: the process answers."""
        return {"ok": True}

    @api.get("/readyz", tags=["service"])
    def readyz():
        """Readiness: 503 until the model and the indexes are loaded."""
        service.require_ready()
        return {"ready": True, "load_seconds": service.load_seconds}

    @api.get(f"{API}/status", tags=["service"])
    def status():
        """Size, store version, fingerprint, model, search index (kind, recall, staleness), calibration,
        uptime and queue depth."""
        return {**service.idx.status(), "ready": service.ready.is_set(), "load_error": service.load_error,
                "uptime_s": round(time.time() - service.started, 1),
                "queue": {"pending": service.pending, "limit": cfg.queue, "workers": cfg.workers},
                "requests": dict(service.requests)}

    @api.post(f"{API}/query", tags=["attribution"])
    async def query(request: Request, video: UploadFile = File(..., description="The generated video"),
                    prompt: str = Form(""), k: int = Form(10), negative: bool = Form(False),
                    similar: int | None = Form(None), combined: bool = Form(False),
                    format: str = Query("json", pattern="^(json|html)$")):
        """The training clips that most influenced (``negative``: most opposed) the motion of the video, with
        percentiles, and the motion-similar clips beside them. ``?format=html``: the evidence page."""
        service.require_ready()
        service.check_k("k", k)
        service.check_k("similar", similar, low=0)
        t_up = time.perf_counter() - _t0(request)
        path = await service.save_upload(video)
        name = video.filename or "upload"

        def work():
            res = service.idx.query(path, prompt=prompt, k=k, negative=negative, similar=similar, combined=combined)
            page = None
            if format == "html":
                from .report import render_report

                page = render_report(service.idx, res, path, video_name=name)
            return res, page

        res, page = await service.run_upload(work, path, name)
        stages(request, {"upload": t_up, **{s: v for s, v in res.timings.items() if s != "total"}})
        if page is not None:
            return HTMLResponse(page)
        doc = res.to_dict()
        doc["query"]["video"] = name  # the client's name for it; never our temp path
        doc["query"]["warnings"] = [str(w).replace(str(path), name) for w in doc["query"].get("warnings", [])]
        doc["index"] = {"fingerprint": service.idx.fingerprint_id, "store_version": service.idx.store.version}
        return doc

    @api.post(f"{API}/embed", tags=["attribution"])
    async def embed(request: Request, video: UploadFile = File(...), prompt: str = Form("")):
        """The video's query vector under the index's fingerprint, for ``POST /v1/lookup`` (here or on
        another box serving an index with the same fingerprint)."""
        service.require_ready()
        t_up = time.perf_counter() - _t0(request)
        path = await service.save_upload(video)
        vec, prep = await service.run_upload(lambda: service.idx.embed(path, prompt), path, video.filename or "upload")
        stages(request, {"upload": t_up, **prep.timings})
        return {"vector": [float(x) for x in vec], "fingerprint": service.idx.fingerprint_id, "dim": int(len(vec)),
                "static": bool(prep.metadata.get("static", False)),
                "warnings": [str(w).replace(str(path), video.filename or "upload")
                             for w in prep.metadata.get("warnings", [])],
                "timings": prep.timings}

    @api.post(f"{API}/lookup", tags=["attribution"])
    async def lookup(request: Request, body: LookupRequest):
        """Hits for a vector from ``POST /v1/embed``; a vector of another fingerprint or dimension is 409."""
        service.check_k("k", body.k)
        t0 = time.perf_counter()
        hits = await service.run(lambda: service.idx.lookup(body.vector, body.fingerprint, k=body.k,
                                                            negative=body.negative), model=False)
        stages(request, {"search": time.perf_counter() - t0})
        return {"hits": [h.to_dict() for h in hits], "fingerprint": service.idx.fingerprint_id,
                "store_version": service.idx.store.version}

    @api.get(f"{API}/clips/{{clip_id}}", tags=["clips"])
    def get_clip(clip_id: str):
        """A stored clip's metadata (404 if it is not stored or was withdrawn)."""
        row = service.idx.clip(clip_id)
        if row is None:
            raise ApiError(404, "not_found", f"clip {clip_id!r} is not in the index")
        return row

    @api.delete(f"{API}/clips/{{clip_id}}", tags=["clips"], dependencies=[Depends(curator)])
    async def delete_clip(clip_id: str, reason: str = Query("withdrawn over HTTP")):
        """Withdraw a clip (curator): once this answers, the clip is in no result, here or in any process;
        it is never stored again. A clip uploaded through this service has its file deleted too."""
        row = service.idx.clip(clip_id)

        def work():
            try:
                n = service.idx.remove([clip_id], reason=reason, wait=False)
                deleted = True
            except IndexBusyError:  # the tombstone is written: hidden already; the next write deletes the rows
                n, deleted = int(row is not None), False
            if row is not None:
                _drop_upload(service.uploads, row.get("path", ""))
            return n, deleted

        n, deleted = await service.run(work, model=False)
        return {"clip_id": clip_id, "removed": n, "rows_deleted": deleted, "hidden": True}

    @api.post(f"{API}/clips", tags=["clips"], status_code=201, dependencies=[Depends(curator)])
    async def add_clip(request: Request, video: UploadFile = File(...), clip_id: str = Form(...),
                       caption: str = Form(""), metadata: str = Form("{}")):
        """Add an uploaded training clip (curator): embedded under the index's fingerprint, then found by
        queries. 409 if the clip id is stored already or was withdrawn; 422 if the video cannot be used."""
        from .types import Clip

        service.require_ready()
        if not clip_id.strip() or len(clip_id) > 256:
            raise ApiError(422, "bad_request", f"clip_id={clip_id[:40]!r} is invalid: 1 to 256 characters")
        try:
            meta = json.loads(metadata or "{}")
        except ValueError as e:
            raise ApiError(422, "bad_request", f"metadata is not JSON: {e}") from None
        if not isinstance(meta, dict):
            raise ApiError(422, "bad_request", "metadata is invalid: a JSON object")
        if service.idx.clip(clip_id) is not None:
            raise ApiError(409, "exists", f"clip {clip_id!r} is stored already; DELETE it first to replace it")
        folder = service.uploads / hashlib.sha256(clip_id.encode()).hexdigest()[:2]
        path = await service.save_upload(video, folder)

        def work():  # the file stays only if the clip was stored, even when the request timed out meanwhile
            try:
                report = service.idx.add([Clip(clip_id=clip_id, path=str(path), caption=caption, metadata=meta)],
                                         wait=False)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
            if report.added != 1:
                path.unlink(missing_ok=True)
            return report

        try:
            report = await service.run(work)
        except ApiError as e:
            if e.code != "timeout":  # never started (queue full, not ready): the work will not clean up
                path.unlink(missing_ok=True)
            raise
        if report.added != 1:
            if report.removed:
                raise ApiError(409, "withdrawn", f"clip {clip_id!r} was withdrawn from this index; it is never "
                                                 f"stored again")
            if report.skipped:
                raise ApiError(409, "exists", f"clip {clip_id!r} is stored already")
            why = report.failed.get(clip_id, "unknown reason").replace(str(path), video.filename or "upload")
            raise ApiError(422, "bad_video", f"clip {clip_id!r} could not be embedded: {why}")
        stages(request, report.stage_seconds)
        return {"clip_id": clip_id, "added": True, "size": report.size,
                "store_version": service.idx.store.version}

    if load:
        service.start_loading()
    return _Front(api, service)


def _t0(request: Request) -> float:
    return request.scope.get("state", {}).get("t0", time.perf_counter())


def _drop_upload(uploads: Path, path: str) -> None:
    """Delete a withdrawn clip's file if this service stored it (inside ``uploads``); never anything else."""
    try:
        p = Path(path).resolve()
        if p.is_file() and Path(uploads).resolve() in p.parents:
            p.unlink()
    except OSError as e:
        log.warning("could not delete the withdrawn clip's file %s: %s", path, e)


def serve(cfg: ServiceConfig, host: str = "127.0.0.1", port: int = 8750) -> None:
    """Run the service until interrupted. Refuses a non-loopback ``host`` without a token."""
    if not is_loopback(host) and cfg.token is None and cfg.curator_token is None:
        raise ValueError(f"host={host!r} is not a loopback address: set a token (--token or MOTIVE_INDEX_TOKEN) "
                         f"before serving beyond this machine, and put a TLS proxy in front")
    app = create_app(cfg)
    log.info("serving %s on http://%s:%d (tokens: read %s, curator %s)", cfg.index, host, port,
             "set" if cfg.token else "none", "set" if cfg.curator_token else "none")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
