"""Importing weights the user downloaded by hand: a file, a folder, or an archive (zip / tar).

Each candidate file is recognised by its sha256 (published or recorded in the manifest/state), else by
its content (state-dict keys; see :mod:`retarget.weights.recognize`) — file names do not matter.
A recognised file that contradicts a published check (size, sha256, or for DensePose the official
tensor shapes) is not installed: the weights folder only holds the published files; other
checkpoints can still be used directly with ``--checkpoint-dir`` / ``--densepose-weights``. A
model-zoo file whose md5 does not start with its published name's hex digits is installed with a
one-line warning (that convention is unverified; the recorded sha256 is the integrity check).
Installation copies to a temporary file next to the destination, re-hashes the copy and moves it
into place with :func:`os.replace`.

Archives are recognised by their bytes (:func:`retarget.weights.recognize.sniff_format`: compressed
stream magic, then a tar header, then zip structures) and read in one pass: each checkpoint-looking
member is decompressed once into a scratch folder while it is hashed, with its size (at most
:data:`MAX_MEMBER_BYTES`) and compression ratio (at most :data:`MAX_RATIO`) checked as it is read and
its first bytes checked to be a torch zip or a pickle; the extracted file is then moved into place.
The scratch folder ``$RETARGET_HOME/weights/.import.<pid>-*`` of a killed import is removed by the next
import, like the other temporaries.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import lzma
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from retarget.errors import WeightsError
from retarget.io.atomic import remove_stale_temporaries, temporary_prefix
from retarget.paths import weights_dir
from retarget.weights.manifest import Manifest, load_manifest
from retarget.weights.recognize import (
    ARCHIVE_FORMATS,
    PICKLE_SUFFIXES,
    TORCH_SUFFIXES,
    identify_checkpoint,
    load_densepose_checkpoint,
    official_shape_mismatch,
    sniff_format,
)
from retarget.weights.store import (
    FileDigest,
    hash_file,
    md5_prefix_warning,
    mismatch_reason,
    read_state,
    record_installed,
)

CHECKPOINT_SUFFIXES = TORCH_SUFFIXES + PICKLE_SUFFIXES
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")
#: Largest archive member read: 3x the largest checkpoint in the manifest (DensePose R101, ~332 MB).
MAX_MEMBER_BYTES = 1 << 30
#: Largest decompressed/compressed ratio (beyond the first :data:`RATIO_SLACK` bytes): float weights
#: hardly compress (about 1.1x); a zero-filled or repeated member (a decompression bomb) does, 1000x.
MAX_RATIO = 20
RATIO_SLACK = 16 << 20
#: How a checkpoint starts: a torch zip (local file header) or a pickle (protocol 2+: PROTO; older
#: protocols: the MARK, EMPTY_DICT, EMPTY_LIST or GLOBAL opcode that opens a checkpoint's object).
CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80", b"(", b"}", b"]", b"c")
_CHUNK = 1 << 20

INSTALLED = "installed"
ALREADY = "already installed"
SKIPPED = "skipped"


@dataclass(frozen=True)
class ImportOutcome:
    """What happened to one candidate file.

    Attributes:
        source: the file (``archive.zip:member`` for archive members).
        name: the model it was recognised as, or ``None``.
        action: ``installed``, ``already installed`` or ``skipped``.
        detail: why it was skipped (one line), or ``""``.
    """

    source: str
    name: str | None
    action: str
    detail: str = ""


def _is_archive(path: Path) -> bool:
    kind = sniff_format(path)
    if kind in ("tar", *ARCHIVE_FORMATS[2:]):
        return True
    if path.name.lower().endswith(CHECKPOINT_SUFFIXES):
        return False
    return path.name.lower().endswith(ARCHIVE_SUFFIXES) or kind == "zip"


def _is_candidate(path: Path) -> bool:
    if path.name.lower().endswith(CHECKPOINT_SUFFIXES):
        return True
    return sniff_format(path) in ("torch", "torch-or-pickle")


class _Importer:
    def __init__(self, manifest: Manifest, only: Iterable[str] | None, origin: str | None):
        self.manifest = manifest
        self.only = set(only) if only is not None else None
        self.origin = origin
        self.outcomes: list[ImportOutcome] = []
        self.filled: dict[str, tuple[str, str]] = {}  # model name -> (sha256, source) this run
        state = read_state()
        self.by_hash = {}
        for entry in manifest.models:
            for sha in (entry.sha256, str(state.get(entry.name, {}).get("sha256", ""))):
                if sha:
                    self.by_hash.setdefault(sha, entry.name)

    def _skip(self, source: str, name: str | None, detail: str, strict: bool) -> None:
        if strict:
            raise WeightsError(f"{source}: {detail}")
        self.outcomes.append(ImportOutcome(source, name, SKIPPED, detail))

    def add_file(self, path: Path, source: str, strict: bool, digest: FileDigest | None = None,
                 scratch: bool = False) -> None:
        """Recognise ``path`` and install it; ``strict`` turns a skip into an error.

        ``digest``: the file's hashes when already known (computed while extracting it); ``scratch``:
        ``path`` is our own extracted copy, moved into place rather than copied.
        """
        if digest is None:
            refusal = _cannot_be_checkpoint(path)
            if refusal:
                return self._skip(source, None, refusal, strict)
            digest = hash_file(path)
        name = self.by_hash.get(digest.sha256)
        if name is None:
            try:
                name = identify_checkpoint(path, suffix=Path(source).suffix)
            except WeightsError as exc:
                return self._skip(source, None, str(exc).split(": ", 1)[-1], strict)
        if name is None:
            return self._skip(source, None, "not a checkpoint retarget uses", strict)
        if self.only is not None and name not in self.only:
            return self._skip(source, name, f"is {name}, not wanted here", strict)
        entry = self.manifest.get(name)
        reason = mismatch_reason(entry, digest)
        if not reason and entry.format == "detectron2-pickle" and not entry.sha256:
            reason = official_shape_mismatch(load_densepose_checkpoint(path)[0], name)
        if reason:
            use = ("`retarget video --densepose-weights FILE`" if entry.format == "detectron2-pickle"
                   else "`retarget video --checkpoint-dir DIR`")
            return self._skip(source, name, f"is a {name} checkpoint but not the published file "
                              f"({reason}); not installed (use it directly: {use})", strict)
        previous = self.filled.get(name)
        if previous and previous[0] != digest.sha256:
            return self._skip(source, name, f"another {name} checkpoint ({previous[1]}) was already "
                              "imported in this run", strict)
        self.filled[name] = (digest.sha256, source)
        warning = md5_prefix_warning(entry, digest, source)
        if warning:
            print(warning, file=sys.stderr)
        dest = entry.installed_path()
        origin = self.origin or f"imported from {source}"
        if dest.is_file() and hash_file(dest).sha256 == digest.sha256:
            if str(read_state().get(name, {}).get("sha256", "")) != digest.sha256:
                record_installed(entry, digest, origin)
            self.outcomes.append(ImportOutcome(source, name, ALREADY))
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(dest.parent, dest.name)  # copies of imports that were killed
        if not (scratch and _move(path, dest)):
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=temporary_prefix(dest.name),
                                            suffix=".import")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                shutil.copyfile(path, tmp)
                if hash_file(tmp).sha256 != digest.sha256:
                    raise WeightsError(f"{source}: the copy in {dest.parent} differs from the source "
                                       "(disk full or file changing?); nothing installed")
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        record_installed(entry, digest, origin)
        self.outcomes.append(ImportOutcome(source, name, INSTALLED))
        return None

    def add_archive(self, path: Path, strict_members: bool = False) -> None:
        """Import every checkpoint-looking member of a zip or (compressed) tar archive, reading it once."""
        root = _scratch_root()
        remove_stale_temporaries(root, "import")  # scratch folders of imports that were killed
        with tempfile.TemporaryDirectory(dir=root, prefix=temporary_prefix("import")) as tmp:
            for member_name, extracted, detail in _extract_members(path, Path(tmp)):
                source = f"{path}:{member_name}"
                if extracted is None:
                    self._skip(source, None, detail, strict_members)
                    continue
                digest, file = extracted
                self.add_file(file, source, strict=strict_members, digest=digest, scratch=True)
                file.unlink(missing_ok=True)

    def add_folder(self, folder: Path) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
            if path.name.startswith("."):
                continue
            if _is_archive(path):
                self.add_archive(path)
            elif _is_candidate(path):
                self.add_file(path, str(path), strict=False)


def _scratch_root() -> Path:
    root = weights_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _usable_member(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return (not name.startswith("__MACOSX/") and not base.startswith(".")
            and base.lower().endswith(CHECKPOINT_SUFFIXES))


def _cannot_be_checkpoint(path: Path) -> str:
    """Why ``path`` cannot be a checkpoint, judged from its size and first bytes (nothing else is read)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if size > MAX_MEMBER_BYTES:
        return f"{_gib(size)}, larger than any checkpoint retarget uses (limit {_gib(MAX_MEMBER_BYTES)}); not read"
    if not head.startswith(CHECKPOINT_MAGIC):
        return "not a checkpoint (corrupt, or another kind of file: it starts with neither a torch zip header " \
            "nor a pickle)"
    return ""


def _move(path: Path, dest: Path) -> bool:
    """Move our extracted ``path`` onto ``dest`` (same file system); ``False`` when a copy is needed."""
    try:
        os.replace(path, dest)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            return False
        raise
    return True


class _Refused(Exception):
    """An archive member that cannot be a checkpoint (skipped, the archive goes on)."""


class _Bomb(WeightsError):
    """The archive as a whole decompresses beyond :data:`MAX_RATIO` (nothing more is read)."""


class _CountingReader:
    """A read-only file wrapper counting the bytes read through it.

    With ``compressed`` (the counter of the file a decompressor reads), reading more than
    :data:`MAX_RATIO` times what the decompressor consumed (beyond :data:`RATIO_SLACK`) raises
    :class:`_Bomb`, whether a member is being extracted or skipped.
    """

    def __init__(self, handle, compressed: "_CountingReader | None" = None):
        self.handle, self.count, self.compressed = handle, 0, compressed

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.count += len(data)
        if self.compressed is not None and self.count > RATIO_SLACK and \
                self.count > MAX_RATIO * max(self.compressed.count, 1):
            raise _Bomb(f"decompresses to more than {MAX_RATIO}x its size, far more than checkpoint weights "
                        "compress (a decompression bomb?); refused without reading further")
        return data


def _gib(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


def _check_declared(size: int, packed: int | None) -> None:
    if size > MAX_MEMBER_BYTES:
        raise _Refused(f"{_gib(size)}, larger than any checkpoint retarget uses (limit "
                       f"{_gib(MAX_MEMBER_BYTES)}); not read")
    if packed is not None and size > RATIO_SLACK and size > MAX_RATIO * max(packed, 1):
        raise _Refused(f"compressed {size // max(packed, 1)}x ({_gib(size)} from {_gib(packed)}), far more "
                       "than checkpoint weights compress (a decompression bomb?); not read")


def _extract_one(stream, target: Path, packed: int | None) -> FileDigest:
    """Copy ``stream`` to ``target`` once, hashing it and checking magic, size and ratio as it is read.

    ``packed``: the member's compressed size (zip members; a compressed tar checks its ratio as the
    whole stream is read, see :class:`_CountingReader`).
    """
    sha, md5, copied = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(target, "wb") as sink:
        while chunk := stream.read(_CHUNK):
            if copied == 0 and not chunk.startswith(CHECKPOINT_MAGIC):
                raise _Refused("not a checkpoint (it starts with neither a torch zip header nor a pickle); "
                               "not read further")
            copied += len(chunk)
            if copied > MAX_MEMBER_BYTES:
                raise _Refused(f"larger than any checkpoint retarget uses (limit {_gib(MAX_MEMBER_BYTES)}); "
                               "not read further")
            if packed is not None and copied > RATIO_SLACK and copied > MAX_RATIO * max(packed, 1):
                raise _Refused(f"decompresses to more than {MAX_RATIO}x its compressed size, far more than "
                               "checkpoint weights compress (a decompression bomb?); not read further")
            sha.update(chunk)
            md5.update(chunk)
            sink.write(chunk)
    return FileDigest(sha.hexdigest(), md5.hexdigest(), copied)


Extracted = tuple[str, "tuple[FileDigest, Path] | None", str]


def _extract_members(path: Path, tmp: Path) -> Iterator[Extracted]:
    """Yield ``(member name, (digest, extracted file) or None, why it was not extracted)`` per
    checkpoint-looking member, one at a time, in one pass over the archive.

    Members are written under generated names (never the archive's paths), links are ignored.
    """
    kind = sniff_format(path)
    try:
        if kind == "zip":
            yield from _zip_members(path, tmp)
        elif kind in ARCHIVE_FORMATS:
            yield from _tar_members(path, tmp, kind)
        else:
            raise WeightsError(f"{path}: not a zip or tar archive (its first bytes are neither); "
                               "give the archive as downloaded, or the checkpoint files")
    except _Bomb as exc:
        raise WeightsError(f"{path}: {exc}") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError, zlib.error, lzma.LZMAError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise
        lines = str(exc).strip().splitlines()
        detail = getattr(exc, "strerror", None) or (lines[0] if lines else type(exc).__name__)
        raise WeightsError(f"{path}: cannot read the archive (truncated or corrupt: {detail})") from None


def _zip_members(path: Path, tmp: Path) -> Iterator[Extracted]:
    with zipfile.ZipFile(path) as archive:
        for index, info in enumerate(archive.infolist()):
            is_link = stat.S_ISLNK(info.external_attr >> 16)
            if info.is_dir() or is_link or not _usable_member(info.filename):
                continue
            target = tmp / f"{index}{Path(info.filename).suffix}"
            try:
                _check_declared(info.file_size, info.compress_size)
                with archive.open(info) as stream:
                    digest = _extract_one(stream, target, info.compress_size)
            except _Refused as exc:
                target.unlink(missing_ok=True)
                yield info.filename, None, str(exc)
                continue
            yield info.filename, (digest, target), ""


def _tar_members(path: Path, tmp: Path, kind: str) -> Iterator[Extracted]:
    with open(path, "rb") as handle:
        if kind == "tar":
            archive = tarfile.open(fileobj=handle, mode="r:")
        else:  # one sequential pass through the decompressed stream, its ratio watched throughout
            compressed = _CountingReader(handle)
            opened = {"gzip": lambda: gzip.GzipFile(fileobj=compressed, mode="rb"), "bz2": lambda: bz2.BZ2File(
                compressed), "xz": lambda: lzma.LZMAFile(compressed)}[kind]()
            archive = tarfile.open(fileobj=_CountingReader(opened, compressed), mode="r|", bufsize=_CHUNK)
        with archive:
            for index, member in enumerate(archive):
                if not member.isfile() or not _usable_member(member.name):
                    continue
                target = tmp / f"{index}{Path(member.name).suffix}"
                try:
                    _check_declared(member.size, None)
                    stream = archive.extractfile(member)
                    if stream is None:
                        continue
                    with stream:
                        digest = _extract_one(stream, target, None)
                except _Refused as exc:
                    target.unlink(missing_ok=True)
                    yield member.name, None, str(exc)
                    continue
                yield member.name, (digest, target), ""


def import_weights(path: str | Path, manifest: Manifest | None = None, *,
                   only: Iterable[str] | None = None, origin: str | None = None) -> list[ImportOutcome]:
    """Install the checkpoints found in ``path`` (a checkpoint file, a folder, or a zip/tar archive).

    Args:
        path: what the user downloaded, e.g. the Google Drive archive of the coordinate-inpainting
            checkpoints, ``inpainter.pth``, a DensePose ``model_final_162be9.pkl`` or a folder of them.
        manifest: defaults to :func:`load_manifest`.
        only: accept only these model names (others are skipped).
        origin: text stored in ``state.json`` (default ``imported from <source>``).

    Returns:
        One :class:`ImportOutcome` per candidate file.

    Raises:
        WeightsError: one line: ``path`` is missing, a single given file is corrupt / unsafe /
            not a known checkpoint / not the published file, or nothing usable was found.
    """
    manifest = manifest or load_manifest()
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"{path}: not found")
    from retarget.io.guard import check_input

    check_input(path, noun="a checkpoint, an archive or a folder of them", kind="file_or_folder")  # no FIFO, device
    importer = _Importer(manifest, only, origin)
    if path.is_dir():
        importer.add_folder(path)
    elif _is_archive(path):
        importer.add_archive(path)
    else:
        importer.add_file(path, str(path), strict=True)
    outcomes = importer.outcomes
    if not any(o.action in (INSTALLED, ALREADY) for o in outcomes):
        skipped = "; ".join(f"{o.source}: {o.detail}" for o in outcomes[:3])
        raise WeightsError(f"{path}: no checkpoint retarget uses was found"
                           + (f" ({skipped})" if skipped else ""))
    return outcomes
