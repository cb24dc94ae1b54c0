"""Small shared helpers: atomic file writes, and values made plain for JSON."""

from __future__ import annotations

import datetime as _dt
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    with _UMASK_GUARD:  # reading the umask means setting it: no other thread may see the 0 in between
        mask = os.umask(0)
        os.umask(mask)
    return mask


_UMASK_GUARD = threading.Lock()


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a synced temp file in the same folder and ``os.replace``: readers see the
    old file or the new one, never a half-written one. The file gets the mode a plain ``open(path, "w")``
    would give it (0666 less the umask), not the temp file's private 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def plain(v: Any) -> Any:
    """A pandas/numpy/pyarrow value as plain Python for JSON: str/int/float/bool/None, lists and dicts of those.
    Missing and non-finite numbers become None; dates become ISO text."""
    import pandas as pd

    if v is None or v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (pd.Timestamp, _dt.datetime, _dt.date)):
        return v.isoformat()
    return v
