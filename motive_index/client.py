"""A client of the HTTP service (``service.py``): ask a warm ``motive-index serve`` instead of loading the model.

    from motive_index.client import ServiceClient
    result = ServiceClient("http://127.0.0.1:8750", token="...").query("generated.mp4", prompt="...", k=10)

It returns the same :class:`~motive_index.api.QueryResult` as :meth:`MotiveIndex.query` (each hit with its
percentile), and raises the same errors for the same causes: the service's error codes map back to this
package's exceptions, so ``motive-index query --server URL`` exits with the codes a local query would. It needs
only ``httpx`` (in the ``serve`` extra), not torch, diffusers or LanceDB: a cold query costs the upload and the
warm service's work.
"""

from __future__ import annotations

from pathlib import Path

from .errors import (FingerprintMismatchError, IndexBusyError, IndexStateError, MotiveIndexError, VideoError,
                     VideoNotFoundError)


class ServiceError(MotiveIndexError):
    """The service refused or failed a request: ``status`` and ``code`` are its answer's."""

    exit_code = 1

    def __init__(self, status: int, code: str, message: str):
        self.status, self.code = status, code
        super().__init__(f"the service answered {status} {code}: {message}")


class ServiceUsageError(ServiceError, ValueError):
    """A request the service refused as invalid (4xx other than the cases below)."""

    exit_code = 2


class ServiceUnavailableError(ServiceError, ConnectionError):
    """No answer, or 503 (loading, busy, queue full) / 504: try again later."""

    exit_code = 6


def _raise_for(status: int, body, video: str = "") -> None:
    err = body.get("error", {}) if isinstance(body, dict) else {}
    code, message = str(err.get("code", "http_error")), str(err.get("message", body))
    if code == "bad_video":
        raise VideoError(video or "upload", message.split("': ", 1)[-1] if message.startswith("video ") else message)
    if code == "fingerprint_mismatch":
        e = FingerprintMismatchError("fingerprint", "?", "?")
        e.args = (message,)
        raise e
    if code == "index_state":
        raise IndexStateError(message)
    if code == "index_busy":
        raise IndexBusyError("service", message)
    if status in (503, 504):
        raise ServiceUnavailableError(status, code, message)
    if 400 <= status < 500:
        raise ServiceUsageError(status, code, message)
    raise ServiceError(status, code, message)


class ServiceClient:
    """Talks to one ``motive-index serve``. ``token``: the read (or curator) token, if the service has one."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 120.0):
        try:
            import httpx
        except ImportError as e:  # pragma: no cover - httpx comes with the serve and test extras
            raise ImportError("the service client needs httpx: pip install 'motive-index[serve]'") from e
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self._httpx = httpx

    def _request(self, method: str, path: str, video: str = "", **kw):
        try:
            r = self._http.request(method, path, **kw)
        except self._httpx.HTTPError as e:
            raise ServiceUnavailableError(0, "unreachable", f"{self._http.base_url}{path}: {e}") from None
        try:
            body = r.json()
        except ValueError:
            body = {"error": {"code": "http_error", "message": r.text[:300]}}
        if r.status_code >= 400:
            _raise_for(r.status_code, body, video)
        return body

    def query(self, video: str | Path, prompt: str = "", k: int = 10, negative: bool = False,
              similar: int | None = None, combined: bool = False):
        """As :meth:`MotiveIndex.query`, answered by the service (the video is uploaded)."""
        from .api import QueryResult
        from .types import Hit

        path = Path(video)
        if not path.is_file():
            raise VideoNotFoundError(str(path))
        fields = {"prompt": prompt, "k": str(k), "negative": str(bool(negative)).lower(),
                  "combined": str(bool(combined)).lower()}
        if similar is not None:
            fields["similar"] = str(similar)
        with open(path, "rb") as f:
            doc = self._request("POST", "/v1/query", video=str(video), files={"video": (path.name, f, "application/octet-stream")},
                                data=fields)
        doc["query"]["video"] = str(video)

        def hits(rows):
            return [Hit(**h) for h in rows]

        return QueryResult(hits=hits(doc["hits"]), timings=doc["timings"], query=doc["query"],
                           similar=hits(doc["similar"]), combined=hits(doc["combined"]))

    def status(self) -> dict:
        return self._request("GET", "/v1/status")

    def close(self) -> None:
        self._http.close()
