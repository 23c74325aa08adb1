"""Atomic output files: write to a temporary file beside the target, rename only on success."""

from __future__ import annotations

import contextlib
import os
import tempfile
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
        raise InputError(f"{parent}: output folder does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{parent}: output folder is not writable")
    return path


def _blame_final_path(exc: BaseException, tmp: str | Path | None, path: Path) -> None:
    """Make an ``OSError`` about the temporary file name the real output instead (messages show it)."""
    if not isinstance(exc, OSError):
        return
    name = getattr(exc, "filename", None)
    if name is None or (tmp is not None and str(name) == str(tmp)) or Path(str(name)).name.startswith(f".{path.stem}."):
        with contextlib.suppress(AttributeError, TypeError):
            exc.filename = str(path)
            exc.filename2 = None


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is renamed to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched; an ``OSError``
    (disk full, permission denied, ...) is re-raised naming ``path`` rather than the temporary file.
    The temporary name keeps ``path``'s suffix so that writers that look at the extension (OpenCV,
    PyAV) still work.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}",
                                        dir=path.parent or ".")
        os.close(fd)
    except OSError as exc:
        _blame_final_path(exc, None, path)
        raise
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise InputError(f"{path}: nothing was written")
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _blame_final_path(exc, tmp, path)
        raise
