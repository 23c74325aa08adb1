"""Every input and output path of a command, resolved and checked in one place, before any work.

Conventions (docs/errors.md, "Inputs and outputs"):

- paths are compared by their real path (``os.path.realpath``: symlinks and ``..`` resolved), so a
  symlink or another spelling of an input is still that input;
- an input must exist and be a **regular file** (or a folder where a folder is expected, e.g. a
  folder of IUV PNGs). A FIFO, a socket, a device (``/dev/zero``, ``/dev/urandom``), a folder where a
  file is expected, a symlink loop or a path through a file is refused with one line
  (:class:`~retarget.errors.InputError`, exit 1), without opening it (a FIFO would block);
- an output must be new or an existing **regular file** (a device node such as ``/dev/null``, a FIFO
  or a folder is never replaced, whatever ``--overwrite`` says, even as root); an existing one needs
  ``overwrite`` (:class:`~retarget.errors.UsageError`, exit 2);
- the set of outputs is disjoint from the set of inputs, sidecars included (an IUV sidecar found
  beside a photo is an input like any other), whatever the flags: an output that is an input, or an
  output folder that holds an input, is refused (exit 2). Two outputs naming the same file are refused
  too.

Pure path logic: no typer, nothing is created or written. :class:`PathPlan` collects one command's
paths; :func:`check_input` / :func:`check_output` are the single-path checks it uses.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from retarget.errors import InputError, UsageError

__all__ = ["PathPlan", "check_input", "check_output", "check_output_folder", "is_regular_file", "real_path"]

_KINDS = ("file", "folder", "file_or_folder")


def _describe_mode(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _stat(path: Path, label: str) -> os.stat_result | None:
    """``os.stat`` (symlinks followed); ``None`` when nothing is there; one-line errors otherwise."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path}: {label}is a symlink loop (a link that points back to itself); "
                             "fix the link") from None
        if exc.errno == errno.ENOTDIR:
            raise InputError(f"{path}: {label}cannot exist: a part of the path is a file, not a folder") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise InputError(f"{path}: {label}path is too long") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise InputError(f"{path}: {label}cannot be reached (permission denied on a folder of the "
                             "path); check the permissions") from None
        raise


def real_path(path: str | Path) -> Path:
    """The real path of ``path`` (absolute, symlinks and ``..`` resolved; a missing tail is kept as given).

    Raises:
        InputError: a symlink loop on the way.
    """
    path = Path(path)
    if path.is_symlink() or any(p.is_symlink() for p in path.parents if str(p) not in ("", ".")):
        _stat(path, "")  # ELOOP becomes one line; realpath would silently stop at the loop
    return Path(os.path.realpath(path))


def is_regular_file(path: str | Path) -> bool:
    """Whether ``path`` (symlinks followed) is a regular file; never opens it, never raises."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def check_input(path: str | Path, *, role: str = "", noun: str = "a file", kind: str = "file") -> Path:
    """Check that ``path`` is an input that can be read without blocking; returns its real path.

    Args:
        path: as the user gave it.
        role: what it is, for the message (``"garment photo"``, ``"texture"``); empty: ``"file"``.
        noun: what was expected (``"an image file"``, ``"a video file"``).
        kind: ``file`` (a regular file), ``folder`` or ``file_or_folder``.

    Raises:
        InputError: missing, a folder where a file is expected (or the reverse), a FIFO/socket/device,
            a symlink loop, a path through a file, or not readable.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    path = Path(path)
    label = f"{role} " if role else ""
    st = _stat(path, label)
    if st is None:
        raise InputError(f"{path}: {role or 'file'} not found; check the path")
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        if kind == "file":
            raise InputError(f"{path}: {label}is a folder, expected {noun}")
    elif stat.S_ISREG(mode):
        if kind == "folder":
            raise InputError(f"{path}: {label}is a file, expected a folder")
    else:
        raise InputError(f"{path}: {label}is {_describe_mode(mode)}, not a regular file; expected {noun} "
                         "(only regular files are read)")
    if not os.access(path, os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)):
        raise InputError(f"{path}: {label}is not readable (permission denied); check the permissions")
    return real_path(path)


def check_output(path: str | Path, *, overwrite: bool = False, make_parents: bool = False) -> Path:
    """Check that ``path`` can be written as a new file or replace a regular file; returns its real path.

    ``make_parents``: a missing parent folder will be created by the caller (not an error here).

    Raises:
        InputError: a folder, a device node, a FIFO or socket (never replaced, whatever ``overwrite``),
            a symlink loop, a missing or unwritable parent folder.
        UsageError: an existing file without ``overwrite``.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        st = _stat(path, "output ")  # a loop raises; a dangling link would create its target
        raise InputError(f"{path}: output is a symbolic link to a missing file; remove the link or choose "
                         "another output path")
    st = _stat(path, "output ")
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{path}: output path is a folder; give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: output is {_describe_mode(st.st_mode)}; only regular files are replaced, "
                             "choose another output path")
        if not overwrite:
            raise UsageError(f"{path}: output exists; pass --overwrite to replace it")
    resolved = real_path(path)
    parent = resolved.parent
    if make_parents and not os.path.lexists(parent):
        return resolved
    if not parent.is_dir():
        raise InputError(f"{parent}: output folder does not exist; create it first or choose another")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{parent}: output folder is not writable; choose another output folder")
    return resolved


def check_output_folder(path: str | Path, *, make_parents: bool = False) -> Path:
    """Check that ``path`` is an existing folder or can be created as one; returns its real path.

    Args:
        make_parents: missing parent folders will be created (otherwise the parent must exist).

    Raises:
        InputError: it is a file, a device or a FIFO; its parent folder does not exist.
    """
    path = Path(path)
    st = _stat(path, "output folder ")
    if st is not None and not stat.S_ISDIR(st.st_mode):
        what = "a file" if stat.S_ISREG(st.st_mode) else _describe_mode(st.st_mode)
        raise InputError(f"{path}: the output must be a folder, but this is {what}")
    resolved = real_path(path)
    if st is None and not make_parents and not resolved.parent.is_dir():
        raise InputError(f"{resolved.parent}: folder does not exist; create it first or choose another")
    return resolved


def _inside(child: Path, folder: Path) -> bool:
    return child == folder or folder in child.parents


@dataclass
class PathPlan:
    """The inputs and outputs of one command (or one batch job), checked as they are added.

    Add every input (:meth:`input`, also sidecars found beside them) and every output (:meth:`output`,
    :meth:`output_folder`) before any work; the order does not matter: each new path is compared with
    those already added, so an output that is an input is refused whichever comes first.

    Attributes:
        inputs: real path → the path as given, per input.
        outputs: real path → the path as given, per output file.
        folders: real path → (the path as given, the pattern of the names written there), per output folder.
    """

    inputs: dict[Path, Path] = field(default_factory=dict)
    outputs: dict[Path, Path] = field(default_factory=dict)
    folders: dict[Path, tuple] = field(default_factory=dict)

    def input(self, path: str | Path | None, *, role: str = "", noun: str = "a file", kind: str = "file"
              ) -> Path | None:
        """Check and record an input (:func:`check_input`); ``None`` is skipped. Returns ``path``."""
        if path is None:
            return None
        real = check_input(path, role=role, noun=noun, kind=kind)
        for out_real, out in self.outputs.items():
            if out_real == real:
                raise UsageError(f"{out}: output would overwrite an input file ({path}); choose another output path")
        for folder_real, (folder, names) in self.folders.items():
            if _inside(real, folder_real) and (names is None or real == folder_real or (
                    real.parent == folder_real and names.fullmatch(real.name))):
                raise UsageError(f"{folder}: the output folder holds the input {path}, which this run could "
                                 "overwrite; choose another output folder or move the input")
        self.inputs.setdefault(real, Path(path))
        return Path(path)

    def inputs_of(self, paths: Iterable[str | Path | None], **kwargs) -> None:
        for path in paths:
            self.input(path, **kwargs)

    def _check_against_inputs(self, path: Path, real: Path) -> None:
        if real in self.inputs:
            given = self.inputs[real]
            what = "" if Path(given) == path else f" ({given})"
            raise UsageError(f"{path}: output would overwrite an input file{what}; choose another output path")

    def output(self, path: str | Path, *, overwrite: bool = False, make_parents: bool = False) -> Path:
        """Check and record an output file (:func:`check_output`, then disjointness). Returns ``path``."""
        path = Path(path)
        real = real_path(path)
        self._check_against_inputs(path, real)  # first: an input is refused even without --overwrite
        if real in self.outputs:
            raise UsageError(f"{path}: two outputs of this run are the same file ({self.outputs[real]}); "
                             "choose distinct output paths")
        check_output(path, overwrite=overwrite, make_parents=make_parents)
        self.outputs[real] = path
        return path

    def output_folder(self, path: str | Path, *, names: re.Pattern | None = None, make_parents: bool = False
                      ) -> Path:
        """Check and record an output folder; returns ``path``.

        Args:
            names: the file names this run writes in it (matched against an input's name); ``None``: any
                name, so no input may lie inside the folder (or be it).
            make_parents: missing parent folders will be created.

        Raises:
            UsageError: an input the run could overwrite lies in the folder: anywhere in it when ``names``
                is ``None``, else directly in it with a matching name, or an input folder that is this folder
                (its files could match).
        """
        path = Path(path)
        real = check_output_folder(path, make_parents=make_parents)
        for in_real, given in self.inputs.items():
            if not _inside(in_real, real):
                continue
            if names is None or in_real == real or (in_real.parent == real and names.fullmatch(in_real.name)):
                raise UsageError(f"{path}: the output folder holds the input {given}, which this run could "
                                 "overwrite; choose another output folder or move the input")
        self.folders[real] = (path, names)
        return path
