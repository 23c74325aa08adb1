"""Reading ``.npz`` members within a byte budget, judged from their declared sizes before decompressing.

A small ``.npz`` can hold a member that inflates to gigabytes (4.7 MB → 4.8 GB). Here each member's
zip entry (its declared uncompressed ``file_size``) and its ``.npy`` header (shape x item size) are
read first, and the member is decompressed only when both are within the caller's budget and agree
with each other; ``zipfile`` never inflates more than the declared ``file_size``. Object arrays
(pickles) are refused. Every problem is a :class:`NpzError` (a ``ValueError``) with a short reason;
callers turn it into their own one-line error, or treat the file as a damaged cache entry.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["NpzError", "NpzMember", "load_npz", "npz_members"]

#: Largest ``.npy`` header numpy writes (format 2/3 allow more; real headers are ~128 bytes).
_MAX_HEADER = 1 << 16


class NpzError(ValueError):
    """The ``.npz`` (or one member) is damaged, not what was expected, or above the budget."""


@dataclass(frozen=True)
class NpzMember:
    """One array of an ``.npz`` as declared: its ``.npy`` header and its zip entry's sizes."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    file_size: int  # declared uncompressed bytes of the .npy (header + data)
    compress_size: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _header(handle) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle, max_header_size=_MAX_HEADER)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle, max_header_size=_MAX_HEADER)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise NpzError(f"damaged member ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - numpy parses the header as Python text: it fails in many ways
        raise NpzError(f"damaged .npy header ({type(exc).__name__})") from None
    return tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran)


def _open_regular(path: Path):
    """Open ``path`` for reading only if it is a regular file (a FIFO would block, a device never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise NpzError(f"cannot open ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NpzError("not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def npz_members(archive: zipfile.ZipFile) -> dict[str, NpzMember]:
    """The declared members of an open ``.npz`` (``name`` without ``.npy``); reads headers only."""
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy") or info.is_dir():
            continue
        try:
            with archive.open(info) as handle:
                shape, dtype, fortran = _header(handle)
                header_end = handle.tell()
        except NpzError:
            raise
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
            raise NpzError(f"damaged member {info.filename} ({type(exc).__name__})") from None
        member = NpzMember(info.filename[:-4], shape, dtype, fortran, info.file_size, info.compress_size)
        if dtype.hasobject:
            raise NpzError(f"member {member.name!r} holds Python objects (a pickle); refused")
        if member.nbytes != info.file_size - header_end:
            raise NpzError(f"member {member.name!r} declares {shape} {dtype} ({member.nbytes} bytes) but holds "
                           f"{info.file_size - header_end} bytes")
        members[member.name] = member
    return members


def load_npz(path: str | Path, budget: dict[str, int] | int, *, names=None, required=()) -> dict[str, np.ndarray]:
    """Read members of the ``.npz`` at ``path``, each only if its declared size is within ``budget``.

    Args:
        path: a regular file (anything else is refused unopened).
        budget: largest accepted bytes per member (``{name: bytes}``, a missing name gets ``budget.get("*", 0)``),
            or one number for every member.
        names: members to read (default: all); absent ones are skipped unless ``required``.
        required: names that must be present.

    Returns:
        ``{name: array}``.

    Raises:
        NpzError: not a regular file, not a zip, a damaged member, a missing required member, an object
            array, or a member whose declared size exceeds its budget or disagrees with its header.
    """
    path = Path(path)
    with _open_regular(path) as handle:
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise NpzError(f"not a zip archive ({type(exc).__name__})") from None
        with archive:
            members = npz_members(archive)
            for name in required:
                if name not in members:
                    raise NpzError(f"no {name!r} array")
            wanted = [n for n in (names if names is not None else members) if n in members]
            out = {}
            for name in wanted:
                member = members[name]
                limit = budget if isinstance(budget, int) else budget.get(name, budget.get("*", 0))
                if member.file_size > limit + _MAX_HEADER or member.nbytes > limit:
                    raise NpzError(f"{name!r}: {_size(max(member.file_size, member.nbytes))} declared, above the "
                                   f"{_size(limit)} expected (a decompression bomb?)")
                try:
                    with archive.open(name + ".npy") as stream:
                        out[name] = np.lib.format.read_array(stream, allow_pickle=False,
                                                             max_header_size=_MAX_HEADER)
                except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError,
                        RuntimeError) as exc:
                    raise NpzError(f"damaged member {name!r} ({type(exc).__name__})") from None
            return out
