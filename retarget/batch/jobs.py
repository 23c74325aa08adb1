"""Batch jobs: where they come from (a CSV/TOML jobs file or sources × drivers) and what each one is.

A job is one ``retarget video`` run: a source photo, a driver video, an output (video or PNG sequence) and optional
per-job settings (the keys of :data:`JOB_OPTIONS`, overriding the command-line defaults).

Jobs file formats (relative paths are relative to the jobs file's folder):

- CSV with a header row: ``source,driver[,output][,<option>...]``; empty cells mean "default".
- TOML: an optional ``[defaults]`` table of options and one ``[[job]]`` table per job with
  ``source``, ``driver``, optional ``output`` and options.

Without an ``output`` the job writes ``<out-dir>/<driver-stem>_as_<source-stem>.mp4`` (``.mkv`` for
``codec = ffv1``, ``.mov`` for ``prores``, a folder for ``png``). An ``output`` ending in ``/`` is a PNG
sequence folder.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retarget.errors import InputError, UsageError


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def _parse_str(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"expected text, got {value!r}")
    return str(value).strip()


#: Per-job settings a jobs file may set, with their parsers. Everything else (weights, device,
#: DensePose weights/config) is per worker and given on the command line only.
JOB_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "source_iuv": _parse_str,
    "driver_iuv": _parse_str,
    "size": _parse_int,
    "background": _parse_str,
    "output_mode": _parse_str,
    "on_missing": _parse_str,
    "table": _parse_str,
    "batch_size": _parse_int,
    "side_by_side": _parse_bool,
    "precision": _parse_str,
    "engine": _parse_str,
    "fill": _parse_str,
    "temporal_filter": _parse_bool,
    "temporal_strength": _parse_int,
    "densepose_backend": _parse_str,
    "densepose_size": _parse_int,
    "densepose_track": _parse_bool,
    "person": _parse_str,
    "codec": _parse_str,
    "crf": _parse_int,
    "densepose_every": _parse_str,  # K or auto (retarget.pipeline.keyframes)
    # texture workflows (docs/textures.md); no command-line default: they belong to one job
    "texture": _parse_str,
    "garment": _parse_str,
    "garment_iuv": _parse_str,
    "garment_region": _parse_str,
}
_PATH_OPTIONS = ("source_iuv", "driver_iuv", "texture", "garment", "garment_iuv")

#: Defaults of the per-job settings (those of ``retarget video``).
DEFAULT_OPTIONS: dict[str, Any] = {
    "size": 256, "background": "scene", "output_mode": "frame", "on_missing": "hold", "table": "training",
    "batch_size": 4, "side_by_side": False, "precision": "fp32", "fill": "body", "engine": "auto",
    "temporal_filter": True, "temporal_strength": 2,
    "densepose_backend": "auto", "densepose_size": 800,
    "densepose_track": True,
    "person": "largest",
    "codec": None,  # from the output's extension (h264 for files); None values stay out of fingerprints
    "crf": None,  # 18
    "densepose_every": "1",  # left out of the fingerprint when 1 (retarget.batch.plan): old reports still match
}

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm")


@dataclass
class BatchJob:
    """One output video of a batch.

    Attributes:
        source, driver, output: absolute paths.
        options: per-job settings (subset of :data:`JOB_OPTIONS`), merged over the batch defaults by
            :meth:`settings`.
        origin: where the job was defined (``jobs.csv:3``, ``cross``), for messages.
    """

    source: Path
    driver: Path
    output: Path
    options: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    default_output: bool = False  # named by default_output_name (its extension follows the codec setting)

    @property
    def name(self) -> str:
        return self.output.name

    def settings(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The effective per-job settings: :data:`DEFAULT_OPTIONS` < ``defaults`` < this job's options."""
        merged = {k: v for k, v in DEFAULT_OPTIONS.items() if v is not None}
        merged.update({k: v for k, v in defaults.items() if v is not None})
        merged.update(self.options)
        return merged


def default_output_name(source: Path, driver: Path, codec: str | None = None) -> str:
    """``<driver-stem>_as_<source-stem>.mp4``, as ``retarget video`` names it (``.mkv``/``.mov``/a folder
    for ``codec`` ffv1/prores/png)."""
    from retarget.io.output import default_suffix

    return f"{driver.stem}_as_{source.stem}{default_suffix(codec)}"


def _resolve(path: str | Path, base: Path) -> Path:
    p = Path(os.path.expanduser(str(path)))
    return (p if p.is_absolute() else base / p).absolute()


def _parse_options(raw: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in raw.items():
        key_n = str(key).strip().replace("-", "_")
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if key_n not in JOB_OPTIONS:
            raise UsageError(f"{where}: unknown job setting {key!r} (allowed: source, driver, output, "
                             f"{', '.join(JOB_OPTIONS)})")
        try:
            parsed = JOB_OPTIONS[key_n](value)
        except ValueError as exc:
            raise UsageError(f"{where}: {key_n}: {exc}") from None
        options[key_n] = str(_resolve(parsed, base)) if key_n in _PATH_OPTIONS else parsed
    return options


def _make_job(row: dict[str, Any], base: Path, out_dir: Path | None, where: str,
              defaults: dict[str, Any] | None = None) -> BatchJob:
    row = {str(k).strip().replace("-", "_"): v for k, v in row.items() if k is not None}
    for needed in ("source", "driver"):
        value = row.get(needed)
        if value is None or not str(value).strip():
            raise UsageError(f"{where}: missing {needed}")
    source = _resolve(str(row.pop("source")).strip(), base)
    driver = _resolve(str(row.pop("driver")).strip(), base)
    output_raw = row.pop("output", None)
    folder_output = False
    if output_raw is not None and str(output_raw).strip():
        output = _resolve(str(output_raw).strip(), base)
        folder_output = str(output_raw).strip().endswith(("/", os.sep))
    elif out_dir is not None:
        output = out_dir.absolute() / default_output_name(source, driver)
    else:
        raise UsageError(f"{where}: no output and no --out-dir")
    options = _parse_options(defaults or {}, base, where)
    options.update(_parse_options(row, base, where))
    if folder_output:  # "out/": a PNG sequence folder (the "/" does not survive in the path)
        options.setdefault("codec", "png")
    return BatchJob(source=source, driver=driver, output=output, options=options, origin=where,
                    default_output=output_raw is None or not str(output_raw).strip())


def load_jobs_file(path: str | Path, out_dir: Path | None) -> list[BatchJob]:
    """Parse a CSV or TOML jobs file.

    Raises:
        InputError: the file cannot be read or parsed.
        UsageError: a job misses ``source``/``driver``, has no output, or has an unknown setting.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: jobs file not found")
    base = path.parent.absolute()
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the jobs file ({exc})") from None
    jobs: list[BatchJob] = []
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ImportError:
                raise UsageError("TOML jobs files need Python 3.11+ or `pip install tomli`") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{path}: not valid TOML ({exc})") from None
        unknown = set(data) - {"defaults", "job", "jobs"}
        if unknown:
            raise UsageError(f"{path}: unknown table(s) {', '.join(sorted(unknown))} (expected [defaults] and "
                             "[[job]])")
        defaults = data.get("defaults", {})
        entries = data.get("job", data.get("jobs", []))
        if not isinstance(defaults, dict) or not isinstance(entries, list):
            raise UsageError(f"{path}: expected a [defaults] table and [[job]] tables")
        for i, entry in enumerate(entries, 1):
            if not isinstance(entry, dict):
                raise UsageError(f"{path}: job {i} is not a table")
            jobs.append(_make_job(entry, base, out_dir, f"{path.name} job {i}", defaults))
    elif suffix in (".csv", ".tsv", ".txt"):
        delimiter = "\t" if suffix == ".tsv" else ","
        reader = csv.DictReader((line for line in text.splitlines() if line.strip() and not line.startswith("#")),
                                delimiter=delimiter, skipinitialspace=True)
        if not reader.fieldnames or not {"source", "driver"} <= {f.strip() for f in reader.fieldnames}:
            raise InputError(f"{path}: the first line must be a header naming at least source and driver columns")
        for i, row in enumerate(reader, 2):
            if None in row:
                raise InputError(f"{path}:{i}: more cells than header columns")
            jobs.append(_make_job(row, base, out_dir, f"{path.name}:{i}"))
    else:
        raise UsageError(f"{path}: jobs file must be .csv or .toml")
    if not jobs:
        raise InputError(f"{path}: no jobs")
    return jobs


def _expand(pattern: str, suffixes: tuple[str, ...], what: str, exclude: Callable[[Path], bool]) -> list[Path]:
    path = Path(os.path.expanduser(pattern))
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes]
    elif path.is_file():
        found = [path]
    else:
        matches = glob.glob(os.path.expanduser(pattern), recursive=True)
        if not matches and not glob.has_magic(pattern):
            raise InputError(f"{pattern}: no such file or folder ({what})")
        found = [Path(m) for m in matches if Path(m).is_file() and Path(m).suffix.lower() in suffixes]
    found = [p.absolute() for p in found if not p.name.startswith(".") and not exclude(p)]
    return sorted(set(found))


def is_source_sidecar(path: Path) -> bool:
    """DensePose renders stored beside photos (``photo_IUV.png``) are not sources themselves."""
    return path.stem.upper().endswith("_IUV") or path.stem.upper().endswith("_INDS")


def cross_jobs(sources: Iterable[str], drivers: Iterable[str], out_dir: Path,
               exclude_drivers: Iterable[Path] = ()) -> list[BatchJob]:
    """Every source × every driver, outputs ``<out-dir>/<driver-stem>_as_<source-stem>.mp4``.

    ``sources``/``drivers`` are folders, files or glob patterns. Photos named ``*_IUV.png`` (source
    sidecars), hidden files and ``exclude_drivers`` (outputs of an earlier run) are left out.
    """
    excluded = {Path(p).absolute() for p in exclude_drivers}
    source_files: list[Path] = []
    for pattern in sources:
        source_files += _expand(pattern, IMAGE_SUFFIXES, "--sources", is_source_sidecar)
    driver_files: list[Path] = []
    for pattern in drivers:
        driver_files += _expand(pattern, VIDEO_SUFFIXES, "--drivers", lambda p: p.absolute() in excluded)
    source_files, driver_files = sorted(set(source_files)), sorted(set(driver_files))
    if not source_files:
        raise InputError(f"--sources {' '.join(sources)}: no photos found ({', '.join(IMAGE_SUFFIXES)})")
    if not driver_files:
        raise InputError(f"--drivers {' '.join(drivers)}: no videos found ({', '.join(VIDEO_SUFFIXES)})")
    out_dir = out_dir.absolute()
    return [BatchJob(source=s, driver=d, output=out_dir / default_output_name(s, d), origin="cross",
                     default_output=True)
            for d in driver_files for s in source_files]


# -- fingerprints --------------------------------------------------------------------------------
def content_digest(path: Path) -> str:
    """SHA-256 of a file (memoised on path, size, mtime), or of a folder's file names/sizes/mtimes."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for item in sorted(path.iterdir()):
            if item.is_file():
                st = item.stat()
                h.update(f"{item.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return "dir:" + h.hexdigest()
    from retarget.io.hashing import cached_file_sha256

    return cached_file_sha256(path)


def optional_digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return content_digest(path)
    except OSError:
        return "missing"


def fingerprint(payload: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able dict."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def temporal_radius(settings: dict[str, Any]) -> int:
    """The temporal filter window of a job's settings (``temporal_strength``; 0 when ``temporal_filter``
    is off)."""
    return int(settings.get("temporal_strength", 2)) if settings.get("temporal_filter", True) else 0
