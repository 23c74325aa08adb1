"""The weights manifest: which models retarget can use, where they come from, how to check them.

The manifest is data (``manifest.toml`` next to this module, shipped as package data). A different
file can be given with ``$RETARGET_WEIGHTS_MANIFEST`` (e.g. a mirror inside a firewall); functions
that take a ``manifest`` argument accept a :class:`Manifest` built any way (tests point URLs at a
local server this way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import tomllib

from retarget.errors import UsageError, WeightsError
from retarget.paths import weights_dir

MANIFEST_ENV = "RETARGET_WEIGHTS_MANIFEST"
FORMATS = ("torch-state-dict", "detectron2-pickle")


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint file the tool can use.

    Attributes:
        name: command-line id, e.g. ``densepose-r50-fpn-s1x``.
        path: install location relative to the weights folder.
        format: ``torch-state-dict`` or ``detectron2-pickle``.
        loader: module that builds the network from this file.
        urls: direct download URLs (may be empty when the file comes in an archive).
        archive: name of the :class:`ArchiveEntry` holding the file, or ``""``.
        size_bytes: exact published size, 0 when unknown.
        approx_size: human-readable size estimate.
        sha256: published sha256 (lower-case hex) or ``""`` (then recorded on first fetch/import).
        md5_prefix: leading md5 hex digits from the published file name, or ``""``.
    """

    name: str
    path: str
    format: str
    loader: str = ""
    description: str = ""
    urls: tuple[str, ...] = ()
    archive: str = ""
    size_bytes: int = 0
    approx_size: str = ""
    sha256: str = ""
    md5_prefix: str = ""
    license: str = ""
    license_url: str = ""
    paper: str = ""
    citation: str = ""
    source: str = ""

    def installed_path(self, root: Path | None = None) -> Path:
        """Where this model lives once installed (``root`` defaults to :func:`weights_dir`)."""
        return (root or weights_dir()) / self.path


@dataclass(frozen=True)
class ArchiveEntry:
    """A download that holds several models (e.g. the coordinate-inpainting Google Drive zip)."""

    name: str
    file: str
    urls: tuple[str, ...]
    members: tuple[str, ...]
    page: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class Manifest:
    """All models and archives, in manifest order."""

    models: tuple[ModelEntry, ...]
    archives: tuple[ArchiveEntry, ...] = ()
    source: str = "<memory>"

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def get(self, name: str) -> ModelEntry:
        """The model called ``name``; :class:`UsageError` listing the known names otherwise."""
        for model in self.models:
            if model.name == name:
                return model
        raise UsageError(f"unknown model {name!r}; known: {', '.join(self.names)}")

    def archive_of(self, model: ModelEntry) -> ArchiveEntry | None:
        """The archive that carries ``model``, if any."""
        for archive in self.archives:
            if archive.name == model.archive:
                return archive
        return None

    def download_hint(self, model: ModelEntry) -> str:
        """Where a person can get ``model`` by hand (a URL or a web page)."""
        archive = self.archive_of(model)
        if archive is not None:
            return archive.page or (archive.urls[0] if archive.urls else model.source)
        return model.urls[0] if model.urls else model.source


_MODEL_FIELDS = set(ModelEntry.__dataclass_fields__)
_ARCHIVE_FIELDS = set(ArchiveEntry.__dataclass_fields__)


def _model_from_table(table: dict, source: str) -> ModelEntry:
    unknown = set(table) - _MODEL_FIELDS
    if unknown or "name" not in table or "path" not in table or "format" not in table:
        raise WeightsError(f"{source}: bad [[models]] entry {table.get('name', '?')!r} "
                           f"(unknown fields {sorted(unknown)} or missing name/path/format)")
    if table["format"] not in FORMATS:
        raise WeightsError(f"{source}: model {table['name']!r} has unknown format {table['format']!r}")
    values = dict(table)
    values["urls"] = tuple(values.get("urls", ()))
    values["sha256"] = values.get("sha256", "").lower()
    values["md5_prefix"] = values.get("md5_prefix", "").lower()
    return ModelEntry(**values)


def _archive_from_table(table: dict, source: str) -> ArchiveEntry:
    unknown = set(table) - _ARCHIVE_FIELDS
    if unknown or not {"name", "file", "members"} <= set(table):
        raise WeightsError(f"{source}: bad [[archives]] entry {table.get('name', '?')!r}")
    values = dict(table)
    values["urls"] = tuple(values.get("urls", ()))
    values["members"] = tuple(values["members"])
    values["sha256"] = values.get("sha256", "").lower()
    return ArchiveEntry(**values)


def parse_manifest(text: str, source: str = "<string>") -> Manifest:
    """Build a :class:`Manifest` from TOML text; :class:`WeightsError` on a malformed file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WeightsError(f"{source}: not valid TOML ({exc})") from None
    models = tuple(_model_from_table(t, source) for t in data.get("models", []))
    archives = tuple(_archive_from_table(t, source) for t in data.get("archives", []))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise WeightsError(f"{source}: duplicate model names")
    known = set(names)
    for model in models:
        if model.archive and model.archive not in {a.name for a in archives}:
            raise WeightsError(f"{source}: model {model.name!r} names unknown archive {model.archive!r}")
    for archive in archives:
        if not set(archive.members) <= known:
            raise WeightsError(f"{source}: archive {archive.name!r} lists unknown members")
    return Manifest(models=models, archives=archives, source=source)


def default_manifest_text() -> str:
    """The manifest shipped with the package."""
    return resources.files("retarget.weights").joinpath("manifest.toml").read_text(encoding="utf-8")


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read the manifest: ``path``, else ``$RETARGET_WEIGHTS_MANIFEST``, else the packaged one."""
    path = path or os.environ.get(MANIFEST_ENV)
    if not path:
        return parse_manifest(default_manifest_text(), source="retarget/weights/manifest.toml")
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WeightsError(f"cannot read weights manifest {path} ({exc.strerror or exc})") from None
    return parse_manifest(text, source=str(path))
