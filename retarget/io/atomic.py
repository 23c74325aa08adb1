"""Atomic output files: write to a temporary file beside the target, rename only on success."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

from retarget.errors import InputError, UsageError


def check_output_path(path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Validate an output path before any work starts (:class:`retarget.io.guard.PathPlan` for one output).

    Inputs that do not exist are ignored here (their own check reports them).

    Raises:
        UsageError: ``path`` is one of ``inputs`` (never overwrite an input, whatever ``overwrite``),
            or exists without ``overwrite``.
        InputError: its folder does not exist / is not writable, or ``path`` is a folder, a device
            node, a FIFO or a socket (only regular files are replaced).
    """
    from retarget.io.guard import PathPlan, real_path

    plan = PathPlan()
    for item in inputs:
        if item is not None and os.path.lexists(item):
            plan.inputs.setdefault(real_path(item), Path(item))
    plan.output(path, overwrite=overwrite)
    return Path(path)


def _remove_unless(path: str | Path, keep) -> bool:
    """Remove whatever is at ``path`` unless ``keep(st_mode)`` (or nothing is there); a folder goes with its
    contents. Returns whether it removed."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    import stat

    if keep(st.st_mode):
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
    return True


def remove_unless_regular(path: str | Path) -> bool:
    """Remove whatever is at ``path`` unless it is a regular file (or nothing): a cache entry that is a
    folder, a FIFO, a socket or a dangling link is recomputed, never trusted. Returns whether it removed."""
    import stat

    return _remove_unless(path, stat.S_ISREG)


def remove_unless_folder(path: str | Path) -> bool:
    """Remove whatever is at ``path`` unless it is a real folder (or nothing): a cache folder that became a
    file or a link is made again. Returns whether it removed."""
    import stat

    return _remove_unless(path, stat.S_ISDIR)


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


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path``; without ``overwrite`` never replace a file that appeared meanwhile.

    ``os.link`` fails with ``EEXIST`` atomically when ``path`` exists, so of two runs writing the same new
    output exactly one succeeds; the other fails with one line and its file is removed.
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise UsageError(f"{path}: the output appeared while this run was writing it (another run?); it was left "
                         "as it is and this run's result discarded; pass --overwrite to replace it") from None
    except OSError as exc:  # no hard links on this file system: check, then rename (a small race remains)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(path):
            raise UsageError(f"{path}: the output appeared while this run was writing it (another run?); it was "
                             "left as it is; pass --overwrite to replace it") from None
        os.replace(tmp, path)
        return
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is renamed to ``path``.

    With ``overwrite=False`` the final step refuses (:class:`UsageError`) when ``path`` exists by then,
    e.g. written by a concurrent run since the output was checked; the default replaces it (caches,
    outputs checked with ``--overwrite``).

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
        _publish(tmp, path, overwrite)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        replacement = _blame_final_path(exc, tmp, path)
        if replacement is not None:
            raise replacement from exc
        raise


def write_bytes_atomic(path: str | Path, data: bytes | str, *, make_parents: bool = False,
                       overwrite: bool = True) -> Path:
    """Write ``data`` (``str`` is UTF-8 encoded) to ``path`` through :func:`atomic_output`.

    Args:
        path: destination; readers see either the old file or the complete new one.
        data: content.
        make_parents: create missing parent folders first (caches); otherwise a missing folder is an
            ``OSError`` naming ``path``.
        overwrite: ``False``: never replace a file that appeared meanwhile (:func:`atomic_output`).
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@contextlib.contextmanager
def atomic_outputs(paths: Iterable[str | Path], *, overwrite: bool = True) -> Iterator[list[Path]]:
    """All-or-nothing :func:`atomic_output` for a group of files (an image and its sidecars).

    Yields one temporary path per output. Only when the block succeeds and every temporary file is
    non-empty are they renamed into place, one after the other; on any error every temporary file is
    removed and no output is touched. Should a rename itself fail (rare: same folder, same file
    system), the outputs this call already put in place are removed again if they did not exist before,
    so a failure leaves at most files that existed before the run.
    """
    paths = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for path in paths:
            folder = path.parent if str(path.parent) else Path(".")
            _sweep_once(folder)
            fd, tmp_name = tempfile.mkstemp(prefix=temporary_prefix(path.stem), suffix=f".part{path.suffix}",
                                            dir=folder)
            os.close(fd)
            temps.append(Path(tmp_name))
        yield list(temps)
        for tmp, path in zip(temps, paths):
            if not tmp.exists() or tmp.stat().st_size == 0:
                raise InputError(f"{path}: nothing was written")
            os.chmod(tmp, 0o666 & ~_UMASK)
        existed = [os.path.lexists(p) for p in paths]
        done: list[Path] = []
        try:
            for tmp, path in zip(temps, paths):
                _publish(tmp, path, overwrite)
                done.append(path)
        except BaseException:
            for path, was_there in zip(done, existed):
                if not was_there:
                    with contextlib.suppress(OSError):
                        path.unlink()
            raise
    except BaseException as exc:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        index = next((i for i, t in enumerate(temps) if str(getattr(exc, "filename", None)) == str(t)), None)
        replacement = _blame_final_path(exc, temps[index] if index is not None else None,
                                        paths[index] if index is not None else paths[min(len(temps), len(paths) - 1)])
        if replacement is not None:
            raise replacement from exc
        raise
