"""The vectors a compressed index re-ranks with, by label, memory-mapped from disk (float32, or float16).

A compressed kind keeps only short codes in memory; its candidates are re-scored against these vectors, so the
scores it returns are exact inner products (of the float16-rounded vectors for a ``float16`` copy: within
about 1e-4 of the float32 ones for unit vectors of dim 512; half the bytes, so a 10 M x 512 copy, 10 GB instead
of 20, can stay in the page cache of a 24 GB machine). They are a copy of the store's vectors (derived, like the
FAISS index), held as *segments*: each covers a contiguous range of labels (a build writes one, each catch-up
that adds clips one more) and is an immutable file ``INDEX_DIR/vectors/seg-<random>.f32`` (raw little-endian
float32, ``count x dim``; ``.f16``: float16), written to a temp file and renamed. A label's row is ``label -
start`` of the segment whose range holds it; removed labels keep their rows until the next rebuild (they are
never returned: the compressed index no longer holds them).

Segment files are never rewritten, so two processes that each caught up the same saved index (and so gave the
same new labels to different clips) never overwrite each other's rows: each writes its own segment, and the
``faiss.json`` saved last names the segments its index uses. Files no saved index names are deleted on save
(a process still mapping one keeps reading it: unlinking does not unmap). Until an index is saved, segments of
an index built in memory (no folder given) stay in RAM, and so do a catch-up's small segments (at most
:data:`APPEND_IN_RAM_BYTES`: written, and synced, by the next save rather than on the catch-up's clock).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import _umask

FOLDER = "vectors"
#: tail segments merged into one when an index has more than this many (each catch-up that adds writes one)
MAX_SEGMENTS = 32
#: an appended segment of at most this many bytes stays in RAM until the next save (a catch-up's few rows: a
#: file written and synced for each would cost the catch-up ~30 ms on this disk)
APPEND_IN_RAM_BYTES = 4 << 20
#: a float copy of at most this share of the machine's available memory (which counts the page cache it may
#: evict) is read into the page cache in the background when its index is loaded or built
#: (:meth:`FloatCopy.warm`): a re-rank's rows then come from RAM, not one disk read each
WARM_MAX_SHARE = 0.75
WARM_CHUNK = 64 << 20
#: rows written to a segment file per write (a memory-mapped source is never read whole)
WRITE_CHUNK = 65536
#: an unused segment file is deleted only once this old (another process may have written it for an index it is
#: about to save)
UNUSED_GRACE_S = 3600.0


@dataclass
class _Segment:
    start: int            # first label
    count: int            # rows
    array: np.ndarray     # (count, dim) float32: a memmap of ``name``, or in RAM (name None)
    name: str | None = None
    fd: int | None = None  # the file, open for read-ahead hints (closed when the segment is collected)

    def __post_init__(self):
        self._closer = weakref.finalize(self, os.close, self.fd) if self.fd is not None else None

    def use_file(self, name: str, array: np.ndarray, fd: int | None) -> None:
        """Read from file ``name`` from now on (its map and descriptor); the previous descriptor is closed."""
        if self._closer is not None:
            self._closer()  # closes the old descriptor once
        self.name, self.array, self.fd = name, array, fd
        self._closer = weakref.finalize(self, os.close, fd) if fd is not None else None


DTYPES = {"float32": ("<f4", ".f32"), "float16": ("<f2", ".f16")}


def _write_rows(path: Path, chunks, dtype: str = "<f4") -> int:
    """Write row chunks to ``path`` as ``dtype`` via a synced temp file and rename; returns rows written."""
    tmp = path.with_name(f".{path.name}.tmp")
    rows = 0
    with open(tmp, "wb") as f:
        os.fchmod(f.fileno(), 0o666 & ~_umask())
        for c in chunks:
            c = np.ascontiguousarray(c, dtype=dtype)
            f.write(memoryview(c).cast("B"))
            rows += len(c)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return rows


_FADVISE = hasattr(os, "posix_fadvise")


def _prefetch(fd: int, rows: np.ndarray, row_bytes: int) -> None:
    """Ask the kernel to read these rows now, all at once: a re-rank's candidates are scattered over a file
    that may not be in the page cache, and read one page fault at a time they would wait one disk read each."""
    for r in rows.tolist():
        os.posix_fadvise(fd, r * row_bytes, row_bytes, os.POSIX_FADV_WILLNEED)


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


class FloatCopy:
    """Vectors by label: :meth:`rows` gathers them (as float32), :meth:`append` adds a segment of new labels.
    ``dtype``: how they are kept, ``float32`` or ``float16``."""

    def __init__(self, dim: int, folder: str | os.PathLike | None = None, dtype: str = "float32"):
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r} is invalid: one of {', '.join(DTYPES)}")
        self.dtype = dtype
        self._np, self._ext = DTYPES[dtype]
        self.dim = int(dim)
        self.folder = Path(folder) / FOLDER if folder is not None else None
        self._segments: list[_Segment] = []
        self._starts = np.zeros(0, np.int64)
        self.warming: threading.Thread | None = None  # the last :meth:`warm`'s thread

    # ---- writing ----------------------------------------------------------------------------------------

    def append(self, start: int, vectors) -> None:
        """Add rows for labels ``start .. start + len - 1`` (after every label held so far). ``vectors`` is an
        ``(n, dim)`` array or an iterable of such chunks (streamed to the file when the copy has a folder)."""
        if self._segments and start < self._segments[-1].start + self._segments[-1].count:
            raise ValueError(f"labels from {start} overlap the copy's (up to "
                             f"{self._segments[-1].start + self._segments[-1].count - 1})")
        if isinstance(vectors, np.ndarray):
            vectors = vectors.reshape(-1, self.dim)
            chunks = (vectors[a:a + WRITE_CHUNK] for a in range(0, len(vectors), WRITE_CHUNK))
        else:
            chunks = vectors
        small = isinstance(vectors, np.ndarray) and vectors.nbytes <= APPEND_IN_RAM_BYTES
        if self.folder is None or (small and self._segments):
            array = (np.array(vectors, self._np) if isinstance(vectors, np.ndarray)
                     else np.concatenate([np.asarray(c, self._np).reshape(-1, self.dim) for c in chunks]))
            seg = _Segment(int(start), len(array), array)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"seg-{secrets.token_hex(8)}{self._ext}"
            count = _write_rows(self.folder / name, chunks, self._np)
            array, fd = self._map(self.folder / name, count)
            seg = _Segment(int(start), count, array, name, fd)
        if seg.count:
            self._segments.append(seg)
            self._starts = np.array([s.start for s in self._segments], np.int64)
        self._merge_tail()

    def _map(self, path: Path, count: int) -> tuple[np.ndarray, int | None]:
        """``(rows, fd)``: the file memory-mapped, and a descriptor of it for read-ahead hints."""
        if count == 0:
            return np.zeros((0, self.dim), self._np), None
        fd = os.open(path, os.O_RDONLY) if _FADVISE else None
        return np.memmap(path, dtype=self._np, mode="r", shape=(count, self.dim)), fd

    def _merge_tail(self) -> None:
        """Keep at most :data:`MAX_SEGMENTS`: merge every segment after the first into one (small: catch-ups)."""
        if len(self._segments) <= MAX_SEGMENTS:
            return
        head, tail = self._segments[0], self._segments[1:]
        start, end = tail[0].start, tail[-1].start + tail[-1].count
        merged = np.zeros((end - start, self.dim), self._np)
        for s in tail:
            merged[s.start - start:s.start - start + s.count] = s.array
        self._segments = [head]
        self._starts = self._starts[:1]
        self.append(start, merged)

    def save_to(self, index_dir: str | os.PathLike) -> list[dict]:
        """Make every segment a file under ``index_dir`` (written now if held in RAM or in another folder);
        returns the segment list for ``faiss.json``."""
        folder = Path(index_dir) / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        moved = self.folder != folder
        for s in self._segments:
            # held in RAM, in another folder, or deleted by another process's save (still mapped here): write it
            if moved or s.name is None or not (folder / s.name).exists():
                name = f"seg-{secrets.token_hex(8)}{self._ext}"
                _write_rows(folder / name, [s.array], self._np)
                s.use_file(name, *self._map(folder / name, s.count))
        self.folder = folder
        return self.to_meta()

    def to_meta(self) -> list[dict]:
        return [{"name": s.name, "start": s.start, "count": s.count} for s in self._segments]

    def remove_unused(self, grace_s: float | None = None, also_used: set[str] = frozenset()) -> int:
        """Delete segment files in the folder that neither this copy nor ``also_used`` names (after its index
        was saved) and that are older than ``grace_s`` (default :data:`UNUSED_GRACE_S`)."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        used = {s.name for s in self._segments} | set(also_used)
        cutoff = time.time() - (UNUSED_GRACE_S if grace_s is None else grace_s)
        gone = 0
        for p in self.folder.iterdir():
            if p.name.startswith("seg-") and p.name.endswith((".f32", ".f16")) and p.name not in used:
                try:
                    if p.stat().st_mtime > cutoff:
                        continue
                    p.unlink()
                    gone += 1
                except OSError:
                    pass
        return gone

    @classmethod
    def load(cls, index_dir: str | os.PathLike, dim: int, meta: list[dict], dtype: str = "float32"
             ) -> "FloatCopy":
        """Map the segments ``meta`` names (``ValueError`` if one is missing or has the wrong size)."""
        copy = cls(dim, index_dir, dtype)
        width = np.dtype(copy._np).itemsize
        for m in meta:
            path = copy.folder / str(m["name"])
            count = int(m["count"])
            size = path.stat().st_size if path.exists() else None
            if size != count * copy.dim * width:
                raise ValueError(f"{str(path)!r}: {size} bytes, expected {count} x {dim} {dtype}")
            array, fd = copy._map(path, count)
            copy._segments.append(_Segment(int(m["start"]), count, array, str(m["name"]), fd))
        copy._starts = np.array([s.start for s in copy._segments], np.int64)
        return copy

    def warm(self) -> bool:
        """Ask the kernel, from a background thread, to read every segment file into the page cache, when the
        copy is at most :data:`WARM_MAX_SHARE` of the available memory. Returns whether it started (join
        :attr:`warming` to wait until every read was asked for: the kernel reads ahead asynchronously). Searches
        go on meanwhile; a row not yet read is read on demand."""
        files = [(s.fd, s.count * self.dim * np.dtype(self._np).itemsize) for s in self._segments
                 if s.fd is not None]
        avail = _available_bytes()
        if not files or avail is None or self.nbytes > WARM_MAX_SHARE * avail:
            return False

        def run():
            for fd, size in files:
                for off in range(0, size, WARM_CHUNK):
                    try:
                        os.posix_fadvise(fd, off, min(WARM_CHUNK, size - off), os.POSIX_FADV_WILLNEED)
                    except OSError:  # the segment was dropped (and its file closed) meanwhile
                        break

        self.warming = threading.Thread(target=run, name="motive-floatcopy-warm", daemon=True)
        self.warming.start()
        return True

    # ---- reading ----------------------------------------------------------------------------------------

    def rows(self, labels: np.ndarray) -> np.ndarray:
        """``(len(labels), dim)`` float32: the vector of each label (every label must be held)."""
        labels = np.asarray(labels, np.int64).reshape(-1)
        out = np.empty((len(labels), self.dim), np.float32)
        if not len(labels):
            return out
        seg = np.searchsorted(self._starts, labels, side="right") - 1  # (n,)
        for si in np.unique(seg):
            if si < 0:
                raise KeyError(f"label {int(labels[seg == si][0])} is not in the float copy")
            s = self._segments[si]
            pick = seg == si
            rows = labels[pick] - s.start
            if rows.max() >= s.count:
                raise KeyError(f"label {int(labels[pick][rows.argmax()])} is not in the float copy")
            if s.fd is not None and len(rows) > 1:
                _prefetch(s.fd, rows, self.dim * np.dtype(self._np).itemsize)
            out[pick] = s.array[rows]
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of vectors held (on disk, mapped; or in RAM before the first save)."""
        return sum(s.count for s in self._segments) * self.dim * np.dtype(self._np).itemsize

    @property
    def in_ram(self) -> bool:
        return any(s.name is None for s in self._segments)
