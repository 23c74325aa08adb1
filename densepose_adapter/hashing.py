"""Content hashes of files (cache keys, report fingerprints, weights digests)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_MEMO: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
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
