"""Errors raised by motive-index.

Every error derives from a built-in exception (so callers can catch ``ValueError`` or ``FileNotFoundError``)
and from :class:`MotiveIndexError` (so the CLI can turn any of them into a clear message and exit code).
Messages name the argument, the value seen and, where there is one, the fix.
"""

from __future__ import annotations


class MotiveIndexError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class VideoError(MotiveIndexError, ValueError):
    """A video could not be used: unreadable, empty, too short. Names the file and the reason."""

    exit_code = 3

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"video {self.path!r}: {reason}")


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The video file does not exist."""

    def __init__(self, path: str):
        super().__init__(path, "file not found; check the path (relative paths in a manifest are resolved "
                               "against the manifest's folder)")


class VideoTooShortError(VideoError):
    """The video has too few frames or too short a duration for the standard shape."""


class ManifestError(MotiveIndexError, ValueError):
    """A manifest could not be read: names the file, the line (or row) and the column."""

    exit_code = 2

    def __init__(self, path: str, reason: str, line: int | None = None, column: str | None = None):
        self.path = str(path)
        self.line = line
        self.column = column
        self.reason = reason
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"manifest {where}: {reason}")


class ModelLoadError(MotiveIndexError, ValueError):
    """A model directory could not be loaded."""

    exit_code = 2


class SettingsError(MotiveIndexError, ValueError):
    """Settings that do not fit the model (e.g. parameter patterns that match none of its parameters)."""

    exit_code = 2


class FingerprintMismatchError(MotiveIndexError, ValueError):
    """Vectors made under one fingerprint were about to be mixed with vectors made under another."""

    exit_code = 2

    def __init__(self, field: str, stored, given):
        self.field = field
        self.stored = stored
        self.given = given
        super().__init__(
            f"fingerprint mismatch in field {field!r}: the index was built with {stored!r}, this run uses "
            f"{given!r}. Vectors made under different settings are not comparable; use the index's settings "
            f"or build a new index."
        )


class IndexNotFoundError(MotiveIndexError, FileNotFoundError):
    """No motive-index store at the given path."""

    exit_code = 2

    def __init__(self, path: str):
        self.path = str(path)
        super().__init__(f"no motive-index at {self.path!r}; create one with `motive-index build MANIFEST "
                         f"--model MODEL_DIR --index {self.path}`")


class GradientError(MotiveIndexError, FloatingPointError):
    """A gradient was not finite (NaN or inf) or was exactly zero."""

    exit_code = 4

    def __init__(self, clip: str, reason: str):
        self.clip = clip
        self.reason = reason
        super().__init__(f"clip {clip!r}: {reason}")


class IndexStateError(MotiveIndexError, ValueError):
    """The index (or other input) cannot answer this request as it is: no model recorded, no motion channel,
    empty, corrupt settings. Says what is missing and how to get it."""

    exit_code = 2


class IndexBusyError(MotiveIndexError, BlockingIOError):
    """Another writer holds the index's write lock (and this one was asked not to wait)."""

    exit_code = 6

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"index {self.path!r} is being written to: {reason}; wait for it to finish, or run "
                         f"again without --no-wait to wait for it")
