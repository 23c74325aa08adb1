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
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from retarget.errors import WeightsError
from retarget.paths import weights_dir
from retarget.weights.manifest import Manifest, load_manifest
from retarget.weights.recognize import (
    PICKLE_SUFFIXES,
    TORCH_SUFFIXES,
    identify_checkpoint,
    load_densepose_checkpoint,
    official_shape_mismatch,
    sniff_format,
)
from retarget.weights.store import hash_file, md5_prefix_warning, mismatch_reason, read_state, record_installed

CHECKPOINT_SUFFIXES = TORCH_SUFFIXES + PICKLE_SUFFIXES
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")
MAX_MEMBER_BYTES = 4 << 30  # refuse absurd archive members (zip bombs)

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
    name = path.name.lower()
    if name.endswith(CHECKPOINT_SUFFIXES):
        return False
    return name.endswith(ARCHIVE_SUFFIXES) or sniff_format(path) in ("zip", "tar")


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

    def add_file(self, path: Path, source: str, strict: bool) -> None:
        """Recognise ``path`` and install it; ``strict`` turns a skip into an error."""
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
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".import")
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
        """Import every checkpoint-looking member of a zip or tar archive."""
        with tempfile.TemporaryDirectory(dir=_scratch_root(), prefix="import-") as tmp:
            for member_name, extracted in _extract_members(path, Path(tmp)):
                self.add_file(extracted, f"{path}:{member_name}", strict=strict_members)
                extracted.unlink(missing_ok=True)

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


def _copy_limited(stream, target: Path, source: str) -> None:
    copied = 0
    with open(target, "wb") as sink:
        while chunk := stream.read(1 << 20):
            copied += len(chunk)
            if copied > MAX_MEMBER_BYTES:
                raise WeightsError(f"{source}: archive member larger than {MAX_MEMBER_BYTES >> 30} GiB")
            sink.write(chunk)


def _extract_members(path: Path, tmp: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(member name, extracted file)`` for checkpoint-looking members, one at a time.

    Members are written under generated names (never the archive's paths), links are ignored.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for index, info in enumerate(archive.infolist()):
                    is_link = stat.S_ISLNK(info.external_attr >> 16)
                    if info.is_dir() or is_link or not _usable_member(info.filename):
                        continue
                    target = tmp / f"{index}{Path(info.filename).suffix}"
                    with archive.open(info) as stream:
                        _copy_limited(stream, target, f"{path}:{info.filename}")
                    yield info.filename, target
            return
        with tarfile.open(path) as archive:
            for index, member in enumerate(archive):
                if not member.isfile() or not _usable_member(member.name):
                    continue
                target = tmp / f"{index}{Path(member.name).suffix}"
                stream = archive.extractfile(member)
                if stream is None:
                    continue
                with stream:
                    _copy_limited(stream, target, f"{path}:{member.name}")
                yield member.name, target
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        lines = str(exc).strip().splitlines()
        detail = getattr(exc, "strerror", None) or (lines[0] if lines else type(exc).__name__)
        raise WeightsError(f"{path}: cannot read the archive (truncated or corrupt: {detail})") from None


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
