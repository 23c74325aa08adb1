"""Cheap checks of a batch's inputs and outputs before anything is scheduled.

Every input file is probed once per batch (results are memoised by path): what kind of file it is
(only regular files are opened; a folder, a device such as ``/dev/zero``, a FIFO, a socket, a
symlink loop or a missing file gets its own reason without reading anything), then for a photo its
header (format and size, no decoding) and for a driver video its container and first frame
(:func:`retarget.io.video.probe_video`: a damaged or truncated file is found here). A job whose
input fails is not scheduled: the batch reports it as failed with the one-line reason.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from pathlib import Path

from retarget.errors import InputError


def path_problem(path: Path, what: str, *, folder_ok: bool = False) -> str | None:
    """Why ``path`` cannot be read as ``what`` (a regular file, or a folder when ``folder_ok``), or ``None``.

    :func:`retarget.io.guard.check_input`'s one-line reason, as text: nothing is opened, so a device or FIFO
    is never read (``/dev/zero`` would be hashed forever, a FIFO blocks). The reason starts with the path.
    """
    from retarget.io.guard import check_input

    try:
        check_input(path, noun=what, kind="file_or_folder" if folder_ok else "file")
    except InputError as exc:
        return str(exc)
    return None


def output_problem(path: Path) -> str | None:
    """Why ``path`` cannot become an output file, checked without creating anything, or ``None``.

    An existing output must be a regular file (never a folder, device or FIFO); the nearest existing
    ancestor must be a writable folder (missing folders between are created when the job runs).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path}: symbolic link loop; choose another output path"
        if exc.errno == errno.ENOTDIR:
            return f"{path}: a folder in the output path is a file; choose another output path"
        return f"{path}: cannot use this output path ({exc.strerror or exc})"
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            return f"{path}: output path is a folder; give a file name"
        if not stat.S_ISREG(info.st_mode):
            return f"{path}: output path exists and is not a regular file (a device, FIFO or socket); it is never " \
                   "replaced, choose another output path"
    parent = path.parent
    while True:
        try:
            pinfo = os.stat(parent)
        except FileNotFoundError:
            if parent.parent == parent:
                return f"{path}: no existing folder above the output; check the path"
            parent = parent.parent
            continue
        except OSError as exc:
            return f"{path}: cannot use this output folder ({exc.strerror or exc})"
        if not stat.S_ISDIR(pinfo.st_mode):
            return f"{path}: {parent} is a file, not a folder; choose another output path"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"{path}: output folder {parent} is not writable; choose another output folder"
        return None


class Prober:
    """Probes inputs once each (memoised by absolute path) and says why a job cannot use them."""

    def __init__(self, allow_large: bool = False):
        self.allow_large = allow_large
        self._seen: dict[tuple[str, str], str | None] = {}

    def _memo(self, kind: str, path: Path, check) -> str | None:
        key = (kind, str(path))
        if key not in self._seen:
            self._seen[key] = check(path)
        return self._seen[key]

    def photo(self, path: Path, what: str = "a photo (JPEG or PNG)") -> str | None:
        """Regular file, then the image header (format and size; nothing decoded)."""
        return self._memo("photo", path, lambda p: path_problem(p, what) or self._photo_header(p))

    def video(self, path: Path) -> str | None:
        """Regular file, then the container and its first frame (also finds truncated mp4s)."""
        return self._memo("video", path, lambda p: path_problem(p, "a video file") or self._video_header(p))

    def file(self, path: Path, what: str, folder_ok: bool = False) -> str | None:
        """Regular file (or folder when ``folder_ok``): IUV sidecars, textures."""
        return self._memo(f"file:{folder_ok}", path, lambda p: path_problem(p, what, folder_ok=folder_ok))

    def _photo_header(self, path: Path) -> str | None:
        from PIL import Image, UnidentifiedImageError

        from retarget.io.image import MAX_PIXELS, MIN_SIDE

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as img:
                    w, h = img.size
        except Image.DecompressionBombError:
            if self.allow_large:
                return None  # the worker's reader decides, with --allow-large
            return f"{path}: image is above the 50 MP limit; pass --allow-large to process it anyway"
        except UnidentifiedImageError:
            return f"{path}: not an image file (unknown format); give a JPEG or PNG photo"
        except (OSError, ValueError, SyntaxError) as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            return f"{path}: cannot decode image ({reason}); the file is damaged or incomplete, re-export or " \
                   "re-download it"
        if min(w, h) < MIN_SIDE:
            return f"{path}: image is {w}x{h}, smaller than {MIN_SIDE} px on a side; use a larger photo"
        if w * h > MAX_PIXELS and not self.allow_large:
            return f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} MP), above the 50 MP limit; pass --allow-large " \
                   "to process it anyway"
        return None

    def _video_header(self, path: Path) -> str | None:
        from retarget.io.video import check_driver_size, probe_video

        try:
            info = probe_video(path)
            check_driver_size(info, path)
        except InputError as exc:
            return " ".join(str(exc).split())
        except Exception as exc:  # noqa: BLE001 - a decoder's unexpected failure on a hostile file
            return f"{path}: not a readable video ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        if info.truncated:
            return f"{path}: the file is truncated (an interrupted download or copy?); get the complete file"
        return None
