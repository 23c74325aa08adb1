"""Downloading weights: resumable, verified, placed atomically.

A download goes to ``<final name>.part`` in the destination folder. An interrupted transfer (cut
connection, timeout, Ctrl-C) leaves the ``.part`` file; the next attempt (automatic retries, or the
next ``retarget weights fetch``) asks the server for the rest with an HTTP ``Range`` request. Only a
complete file that passes every published check (size, sha256; for DensePose the official tensor
shapes) and, when no sha256 is published, is recognised by its content as the expected model, is moved into place
with :func:`os.replace` — so the installed path holds either nothing, the old file, or the whole new
file. Its sha256 is then recorded (see :mod:`retarget.weights.store`).
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from retarget import __version__
from retarget.errors import WeightsError
from retarget.paths import weights_dir
from retarget.weights.manifest import ArchiveEntry, Manifest, ModelEntry, load_manifest
from retarget.weights.recognize import (
    identify_checkpoint,
    load_densepose_checkpoint,
    official_shape_mismatch,
)
from retarget.weights.store import (
    MISMATCH,
    MISSING,
    FileDigest,
    hash_file,
    md5_prefix_warning,
    mismatch_reason,
    model_status,
    record_installed,
)

_CHUNK = 1 << 16
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Retryable(Exception):
    """A transfer problem worth another attempt (connection cut, timeout, short body)."""


class _WebPage(Exception):
    """The server answered with an HTML page instead of the file (typical of Google Drive)."""


@dataclass(frozen=True)
class FetchResult:
    """Outcome of fetching one model: ``installed`` or ``already installed``, and where."""

    name: str
    action: str
    path: Path


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": f"retarget/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _transfer_once(url: str, part: Path, label: str, progress: bool, timeout: float) -> None:
    """One HTTP request continuing ``part``; returns when the body is complete."""
    from retarget.io.progress import progress_bar

    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return  # nothing left to send: the .part is already whole (verified by the caller)
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from None
        raise WeightsError(f"HTTP {exc.code} {exc.reason}") from None
    with response:
        if response.headers.get("Content-Type", "").lower().startswith("text/html"):
            raise _WebPage()
        total = None
        mode = "wb"
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if offset and response.status == 206 and match and int(match.group(1)) == offset:
            mode = "ab"
            total = int(match.group(3)) if match.group(3) != "*" else None
        else:
            offset = 0  # server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, mode) as sink, progress_bar(
            total, label, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
        ) as bar:
            while chunk := response.read(_CHUNK):
                sink.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise _Retryable(f"connection closed after {part.stat().st_size} of {total} bytes")


def download(url: str, part: Path, *, label: str = "", progress: bool = True, retries: int = 3,
             timeout: float = 30.0, backoff_s: float = 1.0) -> None:
    """Download ``url`` into ``part``, resuming what ``part`` already holds.

    Args:
        url: http(s) URL.
        part: the partial file (created, appended to, or restarted when the server ignores ranges).
        label: progress-bar label.
        progress: show a tqdm bar on stderr.
        retries: further attempts after a cut connection / timeout / 5xx, each resuming.
        timeout: socket timeout in seconds.
        backoff_s: wait before retry k is ``backoff_s * 2**(k-1)`` (capped at 10 s).

    Raises:
        WeightsError: HTTP error, a web page instead of the file, or no success after the retries;
            the ``.part`` file is kept for the next attempt.
    """
    attempt = 0
    while True:
        try:
            _transfer_once(url, part, label, progress, timeout)
            return
        except _WebPage:
            part.unlink(missing_ok=True)
            raise WeightsError("the server sent a web page instead of the file (Google Drive does "
                               "this when it wants a browser to confirm the download)") from None
        except (_Retryable, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            offline = isinstance(reason, (socket.gaierror, ConnectionRefusedError))
            attempt += 1
            if offline or attempt > retries:  # no name resolution / nobody listening: no retry
                raise WeightsError(f"{reason}") from None
            time.sleep(min(backoff_s * 2 ** (attempt - 1), 10.0))


def _verify_download(entry: ModelEntry, part: Path) -> FileDigest:
    """Check a complete download against the manifest; returns its digest or raises (deleting it)."""
    digest = hash_file(part)
    reason = mismatch_reason(entry, digest)
    if not reason and not entry.sha256:
        try:
            found = identify_checkpoint(part, suffix=Path(entry.path).suffix)
        except WeightsError as exc:
            found, reason = None, str(exc).split(": ", 1)[-1]
        if found != entry.name and not reason:
            reason = f"its content is {found or 'not a checkpoint retarget knows'}"
        if not reason and entry.format == "detectron2-pickle":
            reason = official_shape_mismatch(load_densepose_checkpoint(part)[0], entry.name)
    if reason:
        part.unlink(missing_ok=True)
        raise WeightsError(f"downloaded {entry.name} is not the published file ({reason}); nothing "
                           "was installed")
    warning = md5_prefix_warning(entry, digest, f"downloaded {entry.name}")
    if warning:
        print(warning, file=sys.stderr)
    return digest


def _no_network_message(manifest: Manifest, entry: ModelEntry, reason: str) -> str:
    hint = manifest.download_hint(entry)
    return (f"cannot download {entry.name} ({reason}); download {hint} yourself and run "
            f"`retarget weights import PATH`")


def _fetch_archive(manifest: Manifest, archive: ArchiveEntry, entry: ModelEntry, progress: bool,
                   retries: int, timeout: float, backoff_s: float) -> list[FetchResult]:
    from retarget.weights.importer import import_weights

    downloads = weights_dir() / ".downloads"
    part = downloads / (archive.file + ".part")
    url, reasons = _download_first(archive.urls, part, archive.file, progress, retries, timeout, backoff_s)
    if url is not None:
        if archive.sha256 and hash_file(part).sha256 != archive.sha256:
            part.unlink(missing_ok=True)
            raise WeightsError(f"downloaded {archive.file} does not match its published sha256; "
                               "nothing was installed")
        try:
            outcomes = import_weights(part, manifest=manifest, only=archive.members,
                                      origin=f"fetched from {url}")
        finally:
            part.unlink(missing_ok=True)
        return [FetchResult(o.name, o.action, manifest.get(o.name).installed_path())
                for o in outcomes if o.name and o.action != "skipped"]
    raise WeightsError(_no_network_message(manifest, entry, "; ".join(reasons) or "no URL"))


def _download_first(urls, part: Path, label: str, progress: bool, retries: int, timeout: float,
                    backoff_s: float) -> tuple[str | None, list[str]]:
    """Download from the first of ``urls`` that works into ``part``: ``(url or None, failure reasons)``."""
    reasons = []
    for url in urls:
        try:
            download(url, part, label=label, progress=progress, retries=retries, timeout=timeout,
                     backoff_s=backoff_s)
        except WeightsError as exc:
            reasons.append(str(exc))
            continue
        return url, reasons
    return None, reasons


def fetch_model(name: str, manifest: Manifest | None = None, *, force: bool = False,
                progress: bool = True, retries: int = 3, timeout: float = 30.0,
                backoff_s: float = 1.0) -> list[FetchResult]:
    """Download ``name`` into the weights folder unless a good copy is already there.

    Models that come in an archive (the coordinate-inpainting Drive zip) fetch the archive and
    import every model in it.

    Args:
        name: a manifest model name.
        manifest: defaults to :func:`load_manifest`.
        force: download even when a verified copy is installed.
        progress, retries, timeout, backoff_s: see :func:`download`.

    Returns:
        One :class:`FetchResult` per model installed (or found already installed).

    Raises:
        UsageError: unknown name.
        WeightsError: one line: what failed, what to download by hand and the import command.
    """
    manifest = manifest or load_manifest()
    entry = manifest.get(name)
    dest = entry.installed_path()
    if not force and model_status(entry).state not in (MISSING, MISMATCH):
        return [FetchResult(entry.name, "already installed", dest)]
    archive = manifest.archive_of(entry)
    if archive is not None:
        return _fetch_archive(manifest, archive, entry, progress, retries, timeout, backoff_s)
    if not entry.urls:
        raise WeightsError(_no_network_message(manifest, entry, "no download URL is known"))
    part = dest.with_name(dest.name + ".part")
    url, reasons = _download_first(entry.urls, part, entry.name, progress, retries, timeout, backoff_s)
    if url is None:
        raise WeightsError(_no_network_message(manifest, entry, "; ".join(reasons)))
    digest = _verify_download(entry, part)
    os.replace(part, dest)  # atomic: same folder, same file system
    record_installed(entry, digest, origin=f"fetched from {url}")
    return [FetchResult(entry.name, "installed", dest)]

