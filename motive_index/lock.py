"""One writer at a time per index: a write lock across processes and threads.

Every write to an index (build, add, remove, purge, compaction, repair) holds the lock of its index directory,
``INDEX_DIR/write.lock``. Across processes it is the OS's advisory lock (``fcntl.flock``): the kernel drops it
when the holding process exits, however it exits (``kill -9`` included), so a lock left by a killed process is
never stale: the next writer simply gets it. Inside one process, one :class:`WriteLock` per directory is
shared by every store and thread (:func:`write_lock`): the same thread may take it again (it nests), other
threads wait.

The holder writes who it is into the lock file (pid, host, command, since), so a writer that has to wait can
say whom it waits for. Searches never take the lock (LanceDB reads are snapshots).

An index on object storage has no shared kernel: its lock is a lease, :class:`LeaseLock`, the object
``PREFIX/write.lock`` taken and renewed with conditional writes (create-if-absent, replace-if-unchanged by
ETag: S3, MinIO and moto support both). The holder renews it every third of its term from a background
thread; one whose holder died is taken over when its term has run out (``MOTIVE_INDEX_LEASE_SECONDS``,
default 30 s: machines' clocks must agree to well within it). Before each commit a writer renews the lease
once more (:meth:`LeaseLock.fence`), so a writer that lost its lease (paused past its term, cut off) raises
instead of committing beside the new holder.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import IndexBusyError

LOCK_FILE = "write.lock"
#: seconds between two tries while waiting for another process's lock
POLL_SECONDS = 0.1

_log = logging.getLogger(__name__)


def _command() -> str:
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    return " ".join(argv)[:300]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def describe_holder(holder: dict) -> str:
    """``pid 123 on host (motive-index add m.csv --index idx), since 2026-12-01T12:00:00+00:00``."""
    if not holder:
        return "another process (it did not say which)"
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('command') or '?'}), "
            f"since {holder.get('since', '?')}")


def _me(command: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command or _command(),
            "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


class _Lock:
    """What both locks share: one holding thread at a time in this process, nested holds free."""

    where = ""  # the index, for messages

    def __init__(self):
        self._threads = threading.RLock()  # other threads of this process wait here
        self._depth = 0                    # nesting depth of the holding thread

    def acquire(self, command: str = "", wait: bool = True, timeout: float | None = None) -> None:
        """Take the lock. ``wait=False``: raise :class:`IndexBusyError` (naming the holder) at once if another
        process holds it; else wait (logging one WARNING that names the holder), at most ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._threads.acquire(blocking=wait, timeout=-1 if not wait or timeout is None else timeout):
            raise IndexBusyError(self.where, "another thread of this process is writing to it")
        try:
            if self._depth == 0:
                self._acquire_outer(command, wait, deadline)
            else:
                self.fence()  # a write nested in a long hold (a build's): the lock must still be ours
            self._depth += 1
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        if self._depth <= 0:
            raise RuntimeError(f"{self.where}: release() without acquire()")
        self._depth -= 1
        try:
            if self._depth == 0:
                self._release_outer()
        finally:
            self._threads.release()

    @contextmanager
    def hold(self, command: str = "", wait: bool = True, timeout: float | None = None) -> Iterator["_Lock"]:
        """``with lock.hold("add"):`` the lock for the block (nested holds in the same thread are free)."""
        self.acquire(command, wait=wait, timeout=timeout)
        try:
            yield self
        finally:
            self.release()

    def fence(self) -> None:
        """Just before a commit: make sure the lock is still this process's (a no-op for the local lock)."""

    def _waiting(self, holder: dict, wait: bool, deadline: float | None, told: bool) -> bool:
        """Raise :class:`IndexBusyError` if not waiting (any more); log once whom we wait for."""
        if not wait or (deadline is not None and time.monotonic() >= deadline):
            raise IndexBusyError(self.where, f"held by {describe_holder(holder)}") from None
        if not told:
            _log.warning("index %s: waiting for the write lock, held by %s (Ctrl-C to stop; "
                         "--no-wait fails at once instead)", self.where, describe_holder(holder))
        return True

    def _acquire_outer(self, command: str, wait: bool, deadline: float | None) -> None:
        raise NotImplementedError

    def _release_outer(self) -> None:
        raise NotImplementedError


class WriteLock(_Lock):
    """The write lock of one index directory (use :func:`write_lock` to get the process's shared one)."""

    def __init__(self, index_dir: str | os.PathLike):
        super().__init__()
        self.path = Path(index_dir) / LOCK_FILE
        self.where = str(self.path.parent)
        self._fd: int | None = None

    # ---- state ----------------------------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (in any thread)."""
        return self._fd is not None

    def holder(self) -> dict:
        """Who holds (or last held) the lock, as written into the lock file; ``{}`` if unknown."""
        try:
            text = self.path.read_text(encoding="utf-8")
            holder = json.loads(text) if text.strip() else {}
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    # ---- acquire / release ----------------------------------------------------------------------------------

    def _acquire_outer(self, command: str, wait: bool, deadline: float | None) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            told = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    told = self._waiting(self.holder(), wait, deadline, told)
                    time.sleep(POLL_SECONDS)
            previous = self.holder()
            if previous.get("pid") and previous.get("host") == socket.gethostname() \
                    and int(previous["pid"]) != os.getpid() and not _pid_alive(int(previous["pid"])):
                _log.info("index %s: took over the write lock of pid %s, which is no longer running",
                          self.where, previous["pid"])
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_me(command)).encode("utf-8"), 0)
        except BaseException:
            os.close(fd)  # closing drops the flock too
            raise
        self._fd = fd

    def _release_outer(self) -> None:
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # nobody holds it now
        except OSError:
            pass
        os.close(fd)  # drops the flock


LEASE_ENV = "MOTIVE_INDEX_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 30.0
#: seconds between two tries while waiting for another machine's lease
LEASE_POLL_SECONDS = 0.5


class LeaseLock(_Lock):
    """The write lock of an index on object storage: a lease kept in the object ``write.lock`` beside its
    store, taken and renewed only by conditional writes. ``{}`` in the object means nobody holds it."""

    def __init__(self, location, lease_seconds: float | None = None):
        super().__init__()
        self.location = location
        self.where = str(location)
        self.lease_seconds = float(lease_seconds if lease_seconds is not None
                                   else os.environ.get(LEASE_ENV) or DEFAULT_LEASE_SECONDS)
        if not self.lease_seconds > 0:
            raise ValueError(f"lease of {self.lease_seconds} s is invalid: more than 0 ({LEASE_ENV})")
        self._etag: str | None = None     # of our lease object, while we hold it
        self._body: dict = {}
        self._lost: str | None = None     # why we lost a lease we held
        self._state = threading.Lock()    # the heartbeat and the holding thread
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._etag is not None and self._lost is None

    def _get(self) -> tuple[dict, str | None]:
        """The lease object's holder and ETag, ``({}, None)`` if there is none."""
        import obstore

        try:
            got = obstore.get(self.location.objects, LOCK_FILE)
        except FileNotFoundError:
            return {}, None
        try:
            body = json.loads(bytes(got.bytes()).decode("utf-8") or "{}")
        except ValueError:
            body = {}
        return (body if isinstance(body, dict) else {}), got.meta["e_tag"]

    def holder(self) -> dict:
        return self._get()[0]

    def _put(self, body: dict, mode) -> str:
        import obstore

        return obstore.put(self.location.objects, LOCK_FILE, json.dumps(body).encode("utf-8"), mode=mode)["e_tag"]

    def _acquire_outer(self, command: str, wait: bool, deadline: float | None) -> None:
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        told = False
        while True:
            body = {**_me(command), "expires": time.time() + self.lease_seconds}
            try:
                etag = self._put(body, "create")
                break
            except AlreadyExistsError:
                pass
            holder, etag = self._get()
            if etag is not None and (not holder or float(holder.get("expires", 0)) < time.time()):
                try:  # free, or its holder's term ran out: take it, unless someone else did first
                    etag = self._put(body, {"e_tag": etag})
                    if holder:
                        _log.info("index %s: took over the write lock of %s, whose lease ran out",
                                  self.where, describe_holder(holder))
                    break
                except PreconditionError:
                    continue
            told = self._waiting(holder, wait, deadline, told)
            time.sleep(LEASE_POLL_SECONDS)
        with self._state:
            self._etag, self._body, self._lost = etag, body, None
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="motive-index-lease", daemon=True)
        self._beat.start()

    def _renew(self) -> None:
        """Extend the lease by a full term (one conditional write); marks it lost if someone else has it."""
        from obstore.exceptions import PreconditionError

        with self._state:
            if self._etag is None or self._lost is not None:
                return
            body = {**self._body, "expires": time.time() + self.lease_seconds}
            try:
                self._etag, self._body = self._put(body, {"e_tag": self._etag}), body
            except (PreconditionError, FileNotFoundError):
                self._lost = f"the lease was taken over by {describe_holder(self.holder())}"
                _log.error("index %s: lost the write lock: %s", self.where, self._lost)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self._renew()
            except Exception as e:  # a network error: try again next beat; the fence checks before commits
                _log.warning("index %s: could not renew the write lock's lease: %s", self.where, e)

    def fence(self) -> None:
        """Renew the lease now; :class:`IndexBusyError` if it was lost (nothing must be committed then)."""
        self._renew()
        if self._lost is not None:
            raise IndexBusyError(self.where, f"this writer lost its write lock: {self._lost}")

    def _release_outer(self) -> None:
        from obstore.exceptions import PreconditionError

        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with self._state:
            etag, lost, self._etag, self._lost = self._etag, self._lost, None, None
        if etag is None or lost is not None:
            return
        try:
            self._put({}, {"e_tag": etag})  # free again, unless someone took it over meanwhile
        except PreconditionError:
            pass


_LOCKS: dict[str, _Lock] = {}
_LOCKS_GUARD = threading.Lock()


def write_lock(index) -> _Lock:
    """The one write lock of ``index`` (a folder, an ``s3://`` URI or a :class:`~motive_index.location.Location`)
    in this process, shared by every store and thread: a :class:`WriteLock`, or a :class:`LeaseLock` on
    object storage."""
    from .location import Location

    location = Location.of(index)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(location.key)
        if lock is None:
            lock = _LOCKS[location.key] = (LeaseLock(location) if location.remote else WriteLock(location.key))
        return lock
