"""Lazy, disk-cached access to the IUV → SMPL-UV lookup tables.

A table is built on first use (well under two seconds) and saved as ``.npy`` under
``retarget.paths.cache_dir() / "uvmap"``, named by a hash of the UV data files, the table name and
:data:`TABLE_FORMAT_VERSION`; a later process loads it in milliseconds. Within a process each table is
kept in memory after its first use.
"""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import numpy as np

from retarget import paths
from retarget.io.atomic import write_bytes_atomic
from retarget.uvmap.data import data_hash, default_data_dir, load_atlas
from retarget.uvmap.tables import GRID, TABLES, build_lookup, without_strays

# Bump when the build rule changes so that stale cached tables are not reused.
TABLE_FORMAT_VERSION = "1"
LOOKUP_SHAPE = (25, GRID, GRID, 2)

_memory: dict[tuple[str, str], np.ndarray] = {}
_lock = threading.Lock()


def table_cache_path(table: str, data_dir: Path | None = None) -> Path:
    """Where the cached ``table`` built from ``data_dir`` (default: the installed data) lives."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    key = hashlib.sha256(f"{data_hash(data_dir)}:{table}:{TABLE_FORMAT_VERSION}".encode()).hexdigest()[:16]
    return paths.cache_dir() / "uvmap" / f"iuv_to_smpluv_{table}_{key}.npy"


def _read_cached(path: Path) -> np.ndarray | None:
    """The cached table, or ``None`` for anything else at ``path`` (missing, a folder, a FIFO, damaged, of
    another size): such an entry is removed and rebuilt, never trusted; nothing larger than a table is read."""
    from retarget.io.atomic import remove_unless_regular

    expected = 4 * int(np.prod(LOOKUP_SHAPE))
    try:
        if remove_unless_regular(path) or not path.exists():
            return None
        if not expected <= path.stat().st_size <= expected + 4096:
            return None
        lookup = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if lookup.shape != LOOKUP_SHAPE or lookup.dtype != np.float32:
        return None
    return lookup


def _write_cached(path: Path, lookup: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, lookup)
    try:
        write_bytes_atomic(path, buffer.getvalue(), make_parents=True)
    except OSError:
        pass  # an unwritable cache only costs a rebuild next time


def get_lookup(table: str = "training", data_dir: Path | None = None) -> np.ndarray:
    """The ``(25, 256, 256, 2) float32`` lookup of ``table`` (see :func:`~retarget.uvmap.tables.build_lookup`).

    Order of sources: this process's memory, the disk cache, a fresh build (then cached). The returned
    array is read-only and shared; do not modify it.

    Raises:
        ValueError: unknown ``table``.
        retarget.uvmap.data.UVDataError: the UV data files are missing or unreadable.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    training = get_lookup("training", data_dir) if table == "clean" else None  # derived from it, not rebuilt
    key = (table, str(data_dir.resolve()))
    with _lock:
        lookup = _memory.get(key)
        if lookup is not None:
            return lookup
        path = table_cache_path(table, data_dir)
        lookup = _read_cached(path)
        if lookup is None:
            lookup = without_strays(training) if training is not None else build_lookup(load_atlas(data_dir), table)
            _write_cached(path, lookup)
        lookup.setflags(write=False)
        _memory[key] = lookup
        return lookup


def clear_memory_cache() -> None:
    """Forget the tables held in memory (the disk cache stays)."""
    with _lock:
        _memory.clear()
