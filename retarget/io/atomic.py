"""Atomic output files: write to a temporary file beside the target, rename only on success."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

from retarget.errors import InputError, UsageError


def check_output_path(path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Validate an output path before any work starts.

    Raises:
        UsageError: ``path`` is one of ``inputs`` (never overwrite an input), or exists without
            ``overwrite``.
        InputError: its folder does not exist / is not writable, or ``path`` is a folder.
    """
    path = Path(path)
    resolved = path.resolve()
    for item in inputs:
        if item is not None and Path(item).exists() and Path(item).resolve() == resolved:
            raise UsageError(f"{path}: output would overwrite an input file; choose another output path")
    if path.is_dir():
        raise InputError(f"{path}: output path is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: output exists; pass --overwrite to replace it")
    parent = resolved.parent
    if not parent.is_dir():
        raise InputError(f"{parent}: output folder does not exist; create it first or choose another")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{parent}: output folder is not writable; choose another output folder")
    return path


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else, or the check is not possible here
        return True
    return True


def temporary_prefix(name: str) -> str:
    """Prefix of the temporary files this process writes for ``name``: ``.<name>.<pid>-``."""
    return f".{name}.{os.getpid()}-"


def remove_stale_temporaries(folder: str | Path, name: str) -> int:
    """Delete temporary files (or folders) for ``name`` in ``folder`` left by processes that no longer run.

    Temporaries are named ``.<name>.<pid>-...`` (:func:`temporary_prefix`). A process killed while
    writing (``kill -9``, power loss) cannot remove its temporary file or scratch folder; the next
    run does, but never one whose writer is still alive (a concurrent job). Returns how many entries
    were removed.
    """
    removed = 0
    head = f".{name}."
    try:
        candidates = [p for p in Path(folder).iterdir() if p.name.startswith(head)]
    except OSError:
        return 0
    for candidate in candidates:
        pid_text = candidate.name[len(head):].split("-", 1)[0]
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
            removed += 1
    return removed


_STALE = re.compile(r"^\..*\.(\d+)-\w+\.part")
_swept_folders: set[str] = set()
_swept_lock = threading.Lock()


def _sweep_once(folder: Path) -> None:
    """Remove temporaries of dead writers in ``folder``, once per process and folder.

    One listing per folder (not per file) keeps writing thousands of files into one folder linear.
    """
    key = str(folder.resolve())
    with _swept_lock:
        if key in _swept_folders:
            return
        _swept_folders.add(key)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _STALE.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _blame_final_path(exc: BaseException, tmp: str | Path | None, path: Path) -> BaseException | None:
    """Make an ``OSError`` about the temporary file name the real output instead (messages show it).

    Returns a replacement exception when ``exc`` cannot be changed (PyAV's errors have a read-only
    ``filename``), else ``None``.
    """
    if not isinstance(exc, OSError):
        return None
    name = getattr(exc, "filename", None)
    if not (name is None or (tmp is not None and str(name) == str(tmp))
            or Path(str(name)).name.startswith(f".{path.stem}.")):
        return None
    try:
        exc.filename = str(path)
        exc.filename2 = None
        return None
    except (AttributeError, TypeError):
        return OSError(exc.errno, exc.strerror or str(exc), str(path))  # errno picks the subclass


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import (os.umask can only be read by setting it, which is not thread-safe later).
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is renamed to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched; temporary files
    of earlier writers of ``path`` that were killed are removed first; an ``OSError``
    (disk full, permission denied, ...) is re-raised naming ``path`` rather than the temporary file.
    The temporary name keeps ``path``'s suffix so that writers that look at the extension (OpenCV,
    PyAV) still work.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    _sweep_once(folder)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(path.stem), suffix=f".part{path.suffix}",
                                        dir=folder)
        os.close(fd)
    except OSError as exc:
        replacement = _blame_final_path(exc, None, path)
        if replacement is not None:
            raise replacement from exc
        raise
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise InputError(f"{path}: nothing was written")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        replacement = _blame_final_path(exc, tmp, path)
        if replacement is not None:
            raise replacement from exc
        raise


def write_bytes_atomic(path: str | Path, data: bytes | str, *, make_parents: bool = False) -> Path:
    """Write ``data`` (``str`` is UTF-8 encoded) to ``path`` through :func:`atomic_output`.

    Args:
        path: destination; readers see either the old file or the complete new one.
        data: content.
        make_parents: create missing parent folders first (caches); otherwise a missing folder is an
            ``OSError`` naming ``path``.
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path
