"""Where an index lives: a local folder, or a prefix on object storage (``s3://bucket/prefix``).

The LanceDB store and the small files that describe it (``settings.json``, ``fingerprint.json``, the write
lock) live at the location itself, so every machine that opens it sees the same index. What is derived from
the store and rebuilt from it at will (the FAISS index, the null distributions, the ``info`` summary) lives in
:attr:`Location.local`: the index folder itself for a local index; for one on object storage a local cache
folder (``$MOTIVE_INDEX_CACHE``, default ``~/.cache/motive-index``) named by a hash of the endpoint and the
URI, and emptied when the store there is a new one (:meth:`Location.claim_cache`). The FAISS index records
the store version it was built from and catches up from there as it does locally.

Object storage is reached through LanceDB (the store) and ``obstore`` (the small files and the lock: the same
Rust ``object_store`` crate LanceDB uses, so one set of options serves both). Credentials, region and endpoint
come from the environment as LanceDB reads them (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP``, ...), or from ``storage_options`` given in Python, with
LanceDB's key names (``aws_endpoint``, ``aws_region``, ``allow_http``, ...). ``obstore`` is the ``s3`` extra
(``pip install 'motive-index[s3]'``), imported only for an index on object storage.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ._io import atomic_write

#: URI schemes an index may live under (S3 and S3-compatible servers: MinIO, moto, R2, Ceph, ...)
SCHEMES = ("s3",)
CACHE_ENV = "MOTIVE_INDEX_CACHE"
_STORE_ID_FILE = "store.json"
# obstore takes these as client options; every other storage option is a store config key
_CLIENT_KEYS = {"allow_http", "allow_invalid_certificates", "timeout", "connect_timeout", "proxy_url",
                "user_agent", "pool_idle_timeout", "pool_max_idle_per_host", "http1_only", "http2_only"}


def is_uri(index: Any) -> bool:
    """Whether ``index`` names object storage (``s3://...``) rather than a local folder."""
    return isinstance(index, str) and "://" in index


def _obstore():
    try:
        import obstore
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("an index on object storage needs the s3 extra: pip install 'motive-index[s3]'") from e
    return obstore


class Location:
    """A local folder or an object-storage prefix holding one index (or one channel of it: :meth:`child`).

    Use :meth:`of`; ``str(location)`` is the path or URI a user gave."""

    def __init__(self, uri: str, storage_options: Mapping[str, str] | None = None, *, local: Path | None = None):
        self.uri = uri.rstrip("/") if is_uri(uri) else uri
        self.storage_options = {str(k): str(v) for k, v in (storage_options or {}).items()}
        self.remote = is_uri(uri)
        if self.remote:
            scheme, _, rest = self.uri.partition("://")
            if scheme not in SCHEMES:
                raise ValueError(f"index {uri!r}: {scheme}:// is not supported; an index lives in a local folder "
                                 f"or under {' or '.join(s + '://' for s in SCHEMES)}")
            bucket, _, prefix = rest.partition("/")
            if not bucket or not prefix.strip("/"):
                raise ValueError(f"index {uri!r}: name a prefix inside the bucket, e.g. {scheme}://bucket/indexes/idx")
        #: where derived files live: the folder itself, or this location's local cache folder
        self.local = Path(local) if local is not None else (self._cache_dir() if self.remote else Path(uri))
        self._objects = None

    @classmethod
    def of(cls, index: "str | os.PathLike | Location", storage_options: Mapping[str, str] | None = None
           ) -> "Location":
        """The location of ``index``: a Location (returned as is), an ``s3://`` URI, or a local path."""
        if isinstance(index, Location):
            if storage_options and dict(storage_options) != index.storage_options:
                return cls(index.uri, storage_options)
            return index
        if is_uri(os.fspath(index)):
            return cls(os.fspath(index), storage_options)
        if any(os.fspath(index).startswith(f"{scheme}:/") for scheme in SCHEMES):
            raise ValueError(f"index {os.fspath(index)!r} looks like a URI that went through pathlib.Path (which "
                             f"folds '//' into '/'): pass it as a string, e.g. 's3://bucket/prefix'")
        if storage_options:
            raise ValueError("storage_options are for an index on object storage (s3://...), not a local folder")
        return cls(os.fspath(Path(index)))

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    @property
    def key(self) -> str:
        """One string per place in the world: the real path of a folder, or the endpoint and the URI."""
        if not self.remote:
            return os.path.realpath(self.uri)
        endpoint = self.storage_options.get("aws_endpoint") or self.storage_options.get("endpoint") \
            or os.environ.get("AWS_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or ""
        return f"{endpoint}|{self.uri}"

    def _cache_dir(self) -> Path:
        root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "motive-index")
        digest = hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:16]
        return root / f"{self.uri.rsplit('/', 1)[-1]}-{digest}"

    def child(self, name: str) -> "Location":
        """The location of a part of this index (the motion channel's ``motion/``)."""
        if self.remote:
            return Location(f"{self.uri}/{name}", self.storage_options, local=self.local / name)
        return Location(os.path.join(self.uri, name))

    def join(self, name: str) -> str:
        """The path or URI of ``name`` here (for messages, and for LanceDB)."""
        return f"{self.uri}/{name}" if self.remote else os.path.join(self.uri, name)

    # ---- LanceDB --------------------------------------------------------------------------------------------

    def connect(self, name: str):
        """A LanceDB connection to the database ``name`` here."""
        import lancedb

        if self.remote:
            return lancedb.connect(self.join(name), storage_options=self.storage_options or None)
        return lancedb.connect(self.join(name))

    # ---- small files ----------------------------------------------------------------------------------------

    @property
    def objects(self):
        """The obstore store rooted at this prefix (object storage only)."""
        if not self.remote:
            raise TypeError(f"{self.uri!r} is a local folder")
        if self._objects is None:
            from obstore.store import from_url

            _obstore()
            config = {k: v for k, v in self.storage_options.items() if k not in _CLIENT_KEYS}
            client = {k: v for k, v in self.storage_options.items() if k in _CLIENT_KEYS}
            self._objects = from_url(self.uri, config=config or None, client_options=client or None)
        return self._objects

    def read_text(self, name: str) -> str | None:
        """The text of ``name`` here, or None if there is none."""
        if not self.remote:
            try:
                return Path(self.join(name)).read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
        try:
            return bytes(_obstore().get(self.objects, name).bytes()).decode("utf-8")
        except FileNotFoundError:
            return None

    def write_text(self, name: str, text: str) -> None:
        """Replace ``name`` here with ``text`` at once (a reader sees the old text or the new, never part)."""
        if not self.remote:
            atomic_write(Path(self.join(name)), text)
            return
        _obstore().put(self.objects, name, text.encode("utf-8"))

    def list_names(self, folder: str) -> list[str] | None:
        """The names directly inside ``folder`` here (None if there is no such folder)."""
        if not self.remote:
            try:
                return os.listdir(self.join(folder))
            except (FileNotFoundError, NotADirectoryError):
                return None
        found = _obstore().list_with_delimiter(self.objects, folder.rstrip("/") + "/")
        names = [o["path"].rsplit("/", 1)[-1] for o in found["objects"]]
        names += [p.rstrip("/").rsplit("/", 1)[-1] for p in found["common_prefixes"]]
        return names or None

    def has_folder(self, folder: str) -> bool:
        """Whether anything is stored under ``folder`` here (never creates anything)."""
        if not self.remote:
            return Path(self.join(folder)).is_dir()
        return self.list_names(folder) is not None

    # ---- the local cache ------------------------------------------------------------------------------------

    def claim_cache(self, store_id: str | None) -> None:
        """Empty the local cache when it was made for another store than ``store_id`` (one deleted and made
        again at the same URI): derived files of another store must never be taken for this one's."""
        if not self.remote or store_id is None:
            return
        marker = self.local / _STORE_ID_FILE
        try:
            seen = json.loads(marker.read_text(encoding="utf-8")).get("store_id")
        except (OSError, ValueError, AttributeError):
            seen = None
        if seen == store_id:
            return
        if self.local.is_dir():
            for entry in self.local.iterdir():  # the channel folders inside are claimed by their own stores
                if entry.is_file():
                    entry.unlink(missing_ok=True)
        self.local.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, json.dumps({"store_id": store_id, "uri": self.uri}))

