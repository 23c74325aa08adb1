"""The installed weights: hashing, the local state file, and per-model status.

Installed files live under :func:`retarget.paths.weights_dir` at the manifest's ``path``. Next to
them, ``state.json`` keeps, per model, the sha256 recorded when the file was fetched or imported
(that is the reference when the publisher gives no sha256) and the size/mtime at which it was last
hashed, so that ``retarget weights list`` need not re-read hundreds of megabytes each time.
``retarget weights verify`` always re-hashes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from retarget.errors import WeightsError
from retarget.io.atomic import write_bytes_atomic
from retarget.paths import weights_dir
from retarget.weights.manifest import Manifest, ModelEntry

STATE_FILE = "state.json"

MISSING = "missing"
PRESENT = "present"
VERIFIED = "verified"
MISMATCH = "hash mismatch"

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileDigest:
    """sha256 and md5 (lower-case hex) and size of one file."""

    sha256: str
    md5: str
    size: int


def hash_file(path: Path) -> FileDigest:
    """Stream ``path`` once and return its sha256, md5 and size; :class:`WeightsError` if unreadable."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return FileDigest(sha.hexdigest(), md5.hexdigest(), size)


def mismatch_reason(entry: ModelEntry, digest: FileDigest, recorded_sha256: str = "") -> str:
    """Why ``digest`` is not the file ``entry`` describes, or ``""`` when every known check passes.

    Checks, in order: published size, published sha256 (else the recorded one). The md5 prefix of a
    model-zoo file name is not a check (see :func:`md5_prefix_warning`).
    """
    if entry.size_bytes and digest.size != entry.size_bytes:
        return f"size {digest.size} bytes, expected {entry.size_bytes}"
    reference = entry.sha256 or recorded_sha256
    if reference and digest.sha256 != reference:
        kind = "published" if entry.sha256 else "recorded"
        return f"sha256 {digest.sha256[:16]}…, {kind} {reference[:16]}…"
    return ""


def md5_prefix_note(entry: ModelEntry, digest: FileDigest) -> str:
    """``""``, or what differs when a file's md5 does not start with its model-zoo name's hex digits.

    detectron2 model-zoo names (``model_final_162be9.pkl``) are believed to carry the first 6 hex
    digits of the file's md5; nobody here has confirmed that with a real file, and a wrong guess
    would reject every correct download. So a difference is reported, never refused; the sha256
    recorded at the first fetch or import is the integrity check.
    """
    if entry.md5_prefix and not digest.md5.startswith(entry.md5_prefix):
        return f"md5 starts {digest.md5[:6]}, the published file name says {entry.md5_prefix}"
    return ""


def md5_prefix_warning(entry: ModelEntry, digest: FileDigest, source: str) -> str:
    """The one warning line for :func:`md5_prefix_note` (``""`` when it matches or there is none)."""
    note = md5_prefix_note(entry, digest)
    if not note:
        return ""
    return (f"warning: {source}: {note} (that naming convention is unverified, so the file is accepted as "
            f"{entry.name}; its sha256 {digest.sha256[:16]}… is recorded and checked from now on)")


# ---------------------------------------------------------------------------------------------
# state.json


def state_path(root: Path | None = None) -> Path:
    return (root or weights_dir()) / STATE_FILE


def read_state(root: Path | None = None) -> dict[str, dict]:
    """Per-model records from ``state.json`` (empty when absent or unreadable)."""
    try:
        data = json.loads(state_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    return models if isinstance(models, dict) else {}


def _write_state(models: dict[str, dict], root: Path | None = None) -> None:
    path = state_path(root)
    payload = json.dumps({"version": 1, "models": models}, indent=1, sort_keys=True)
    write_bytes_atomic(path, payload + "\n", make_parents=True)


def record_installed(entry: ModelEntry, digest: FileDigest, origin: str, root: Path | None = None) -> None:
    """Remember the hash of a freshly installed file (the reference when none is published)."""
    path = entry.installed_path(root)
    stat = path.stat()
    models = read_state(root)
    models[entry.name] = {
        "sha256": digest.sha256,
        "size": digest.size,
        "mtime_ns": stat.st_mtime_ns,
        "origin": origin,
        "recorded_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    _write_state(models, root)


def _remember_check(entry: ModelEntry, digest: FileDigest, root: Path | None) -> None:
    """Note that the file at its current size/mtime hashed to ``digest`` (keeps origin)."""
    models = read_state(root)
    record = models.setdefault(entry.name, {"origin": "found in place"})
    record.update(sha256=digest.sha256, size=digest.size,
                  mtime_ns=entry.installed_path(root).stat().st_mtime_ns)
    _write_state(models, root)


# ---------------------------------------------------------------------------------------------
# status


@dataclass(frozen=True)
class ModelStatus:
    """What is known about one installed (or missing) model.

    Attributes:
        entry: the manifest entry.
        path: where the file is (or would be) installed.
        state: ``missing``, ``present`` (no reference hash yet), ``verified`` or ``hash mismatch``.
        size: bytes on disk, ``None`` when missing.
        reference: ``published`` or ``recorded`` (where the expected sha256 comes from), or ``""``.
        detail: for a mismatch, what differs; for a verified file, a differing md5 prefix (a note only).
    """

    entry: ModelEntry
    path: Path
    state: str
    size: int | None = None
    reference: str = ""
    detail: str = ""


def model_status(entry: ModelEntry, rehash: bool = False, root: Path | None = None) -> ModelStatus:
    """Status of ``entry``; hashes the file unless ``rehash`` is False and a recent check matches."""
    path = entry.installed_path(root)
    try:
        stat = path.stat()
    except OSError:
        return ModelStatus(entry, path, MISSING)
    if not path.is_file():
        return ModelStatus(entry, path, MISMATCH, reference="", detail="not a regular file")
    record = read_state(root).get(entry.name, {})
    recorded = str(record.get("sha256", ""))
    reference = "published" if entry.sha256 else ("recorded" if recorded else "")
    if not reference and not entry.size_bytes:
        return ModelStatus(entry, path, PRESENT, stat.st_size, detail="no sha256 recorded")
    fresh = (record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns
             and (not entry.sha256 or recorded == entry.sha256))
    if fresh and not rehash:
        return ModelStatus(entry, path, VERIFIED, stat.st_size, reference)
    digest = hash_file(path)
    reason = mismatch_reason(entry, digest, recorded)
    if reason:
        return ModelStatus(entry, path, MISMATCH, stat.st_size, reference, reason)
    if not reference:
        # only the size could be checked: good, but no sha256 reference recorded yet
        return ModelStatus(entry, path, PRESENT, stat.st_size, "", "no sha256 recorded")
    _remember_check(entry, digest, root)
    return ModelStatus(entry, path, VERIFIED, stat.st_size, reference, md5_prefix_note(entry, digest))


def all_statuses(manifest: Manifest, rehash: bool = False, root: Path | None = None) -> list[ModelStatus]:
    """:func:`model_status` of every model in manifest order."""
    return [model_status(entry, rehash=rehash, root=root) for entry in manifest.models]
