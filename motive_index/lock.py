"""One writer at a time per index: a write lock across processes and threads.

Every write to an index (build, add, remove, purge, compaction, repair) holds the lock of its index directory,
``INDEX_DIR/write.lock``. Across processes it is the OS's advisory lock (``fcntl.flock``): the kernel drops it
when the holding process exits, however it exits (``kill -9`` included), so a lock left by a killed process is
never stale: the next writer simply gets it. Inside one process, one :class:`WriteLock` per directory is
shared by every store and thread (:func:`write_lock`): the same thread may take it again (it nests), other
threads wait.

The holder writes who it is into the lock file (pid, host, command, since), so a writer that has to wait can
say whom it waits for. Searches never take the lock (LanceDB reads are snapshots).
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


class WriteLock:
    """The write lock of one index directory (use :func:`write_lock` to get the process's shared one)."""

    def __init__(self, index_dir: str | os.PathLike):
        self.path = Path(index_dir) / LOCK_FILE
        self._threads = threading.RLock()  # other threads of this process wait here
        self._depth = 0                    # nesting depth of the holding thread
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

    def acquire(self, command: str = "", wait: bool = True, timeout: float | None = None) -> None:
        """Take the lock. ``wait=False``: raise :class:`IndexBusyError` (naming the holder) at once if another
        process holds it; else wait (logging one WARNING that names the holder), at most ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._threads.acquire(blocking=wait, timeout=-1 if not wait or timeout is None else timeout):
            raise IndexBusyError(str(self.path.parent), "another thread of this process is writing to it")
        try:
            if self._depth == 0:
                self._acquire_file(command, wait, deadline)
            self._depth += 1
        except BaseException:
            self._threads.release()
            raise

    def _acquire_file(self, command: str, wait: bool, deadline: float | None) -> None:
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
                    holder = self.holder()
                    if not wait or (deadline is not None and time.monotonic() >= deadline):
                        raise IndexBusyError(str(self.path.parent), f"held by {describe_holder(holder)}") from None
                    if not told:
                        _log.warning("index %s: waiting for the write lock, held by %s (Ctrl-C to stop; "
                                     "--no-wait fails at once instead)", self.path.parent, describe_holder(holder))
                        told = True
                    time.sleep(POLL_SECONDS)
            previous = self.holder()
            if previous.get("pid") and previous.get("host") == socket.gethostname() \
                    and int(previous["pid"]) != os.getpid() and not _pid_alive(int(previous["pid"])):
                _log.info("index %s: took over the write lock of pid %s, which is no longer running",
                          self.path.parent, previous["pid"])
            me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or _command(),
                  "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
        except BaseException:
            os.close(fd)  # closing drops the flock too
            raise
        self._fd = fd

    def release(self) -> None:
        if self._depth <= 0:
            raise RuntimeError(f"{self.path}: release() without acquire()")
        self._depth -= 1
        if self._depth == 0:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)  # nobody holds it now
            except OSError:
                pass
            os.close(fd)  # drops the flock
        self._threads.release()

    @contextmanager
    def hold(self, command: str = "", wait: bool = True, timeout: float | None = None) -> Iterator["WriteLock"]:
        """``with lock.hold("add"):`` the lock for the block (nested holds in the same thread are free)."""
        self.acquire(command, wait=wait, timeout=timeout)
        try:
            yield self
        finally:
            self.release()


_LOCKS: dict[str, WriteLock] = {}
_LOCKS_GUARD = threading.Lock()


def write_lock(index_dir: str | os.PathLike) -> WriteLock:
    """The one :class:`WriteLock` of ``index_dir`` in this process (shared by every store and thread)."""
    key = os.path.realpath(os.fspath(index_dir))
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = WriteLock(key)
        return lock
