"""Content hashes of files (cache keys, report fingerprints, weights digests)."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

from densepose_adapter.errors import InputError

_MEMO: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def _open_regular(path: str | Path):
    """Open ``path`` for reading, refusing anything but a regular file without blocking on it.

    A FIFO would block ``open`` until a writer appears, ``/dev/zero`` or ``/dev/urandom`` never end: they
    raise :class:`~densepose_adapter.errors.InputError` (one line) instead.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a folder" if stat.S_ISDIR(mode) else "a FIFO, a device or a socket"
            raise InputError(f"{path}: is {what}, not a regular file; only regular files are read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a regular file's content, read in 1 MiB chunks.

    Raises:
        InputError: ``path`` is not a regular file (a FIFO, a device such as ``/dev/zero``, a folder).
    """
    digest = hashlib.sha256()
    with _open_regular(path) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cached_file_sha256(path: str | Path) -> str:
    """:func:`file_sha256`, memoised per process on (resolved path, size, mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
    value = file_sha256(path)
    with _LOCK:
        _MEMO[key] = value
    return value
