"""Turning any exception that reaches the command line into one ``error: ...`` line and an exit code.

This is the single place where the error model of docs/errors.md is applied, for every command:
library code raises :class:`retarget.errors.RetargetError` subclasses with a message naming the file,
and everything else that can legitimately happen outside our control (a full disk, a folder without
write permission, a video-library failure, running out of memory, CUDA missing) is described here
instead of being caught in each command.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from retarget.errors import RetargetError, UsageError

#: Extra advice per errno, appended to the system's description.
_OS_HINTS = {
    errno.ENOSPC: "free some space or write the output elsewhere; nothing was kept",
    errno.EDQUOT: "disk quota exceeded; free some space or write the output elsewhere; nothing was kept",
    errno.EFBIG: "the file system (or a ulimit) does not allow a file this large; write it elsewhere",
    errno.EACCES: "check the permissions, or choose another output folder",
    errno.EPERM: "check the permissions, or choose another output folder",
    errno.EROFS: "choose an output folder on a writable file system",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "give a file name, not a folder",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or process fewer files at once",
    errno.EIO: "the storage device reported an I/O error",
}


@dataclass(frozen=True)
class Described:
    """How :func:`retarget.cli.app.main` reports an exception.

    Attributes:
        text: the line to print on stderr (``None``: print nothing more).
        exit_code: 1 input/processing error, 2 usage error, 130 interrupted.
        traceback_in_debug: ``--debug`` re-raises it (parse errors have no useful traceback).
    """

    text: str | None
    exit_code: int
    traceback_in_debug: bool = True


def one_line(text: str) -> str:
    """Collapse a message to one line (messages from libraries sometimes span several)."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _name(value) -> str | None:
    if value is None or isinstance(value, int):
        return None
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    return str(value)


def os_error_message(exc: OSError) -> str:
    """``<file>: <what the system says>; <what to do>`` for an ``OSError`` (PyAV's included)."""
    name = _name(getattr(exc, "filename", None))
    target = _name(getattr(exc, "filename2", None))
    reason = exc.strerror or one_line(str(exc)) or type(exc).__name__
    reason = reason[0].lower() + reason[1:] if reason[:1].isupper() and reason[1:2].islower() else reason
    hint = _OS_HINTS.get(exc.errno or -1)
    where = f"{name} -> {target}" if name and target else (name or "")
    parts = [f"{where}: {reason}" if where else reason]
    if hint:
        parts.append(hint)
    return "; ".join(parts)


def _is_av_error(exc: BaseException) -> bool:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        return False
    return isinstance(exc, av.FFmpegError)


def _cuda_missing(exc: BaseException) -> bool:
    if not isinstance(exc, (RuntimeError, AssertionError)):
        return False
    text = str(exc)
    if "CUDA" not in text and "NVIDIA" not in text:
        return False
    try:
        import torch

        return not torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken torch cannot tell us more
        return False


def describe_exception(exc: BaseException) -> Described | None:
    """The report for ``exc``; ``None`` for exceptions that must propagate (``SystemExit`` & co)."""
    from typer import exceptions as typer_exc
    from typer._click import exceptions as click_exc

    if isinstance(exc, (SystemExit, GeneratorExit)):
        return None
    if isinstance(exc, click_exc.NoArgsIsHelpError):
        help_text = exc.format_message().strip()  # typer's rich help prints itself and leaves ""
        return Described(help_text or None, exc.exit_code, traceback_in_debug=False)
    if isinstance(exc, click_exc.UsageError):
        ctx = exc.ctx
        hint = f" (see `{ctx.command_path} -h`)" if ctx is not None else ""
        return Described(f"error: {one_line(exc.format_message()).rstrip('.')}{hint}", exc.exit_code or 2,
                         traceback_in_debug=False)
    if isinstance(exc, click_exc.ClickException):
        return Described(f"error: {one_line(exc.format_message())}", exc.exit_code, traceback_in_debug=False)
    if isinstance(exc, typer_exc.Abort):
        return Described("error: aborted", 130, traceback_in_debug=False)
    if isinstance(exc, RetargetError):
        return Described(f"error: {one_line(str(exc))}", exc.exit_code)
    if isinstance(exc, MemoryError):
        return Described("error: out of memory; use a smaller input, batch size or DensePose input size", 1)
    if isinstance(exc, OSError):
        return Described(f"error: {one_line(os_error_message(exc))}", 1)
    if _is_av_error(exc):
        name = _name(getattr(exc, "filename", None))
        reason = one_line(getattr(exc, "strerror", None) or str(exc)) or type(exc).__name__
        where = f"{name}: " if name else ""
        return Described(f"error: {where}video processing failed ({reason}); re-encode the file or report "
                         "this with `retarget --debug ...`", 1)
    if _cuda_missing(exc):
        return Described(f"error: {UsageError('CUDA is not available on this machine; use --device cpu')}",
                         UsageError.exit_code)
    if isinstance(exc, Exception):
        text = one_line(str(exc))[:200]
        return Described(f"error: internal error ({type(exc).__name__}{': ' + text if text else ''}); this is a "
                         "bug: rerun with `retarget --debug ...` for the traceback and report it", 1)
    return None

