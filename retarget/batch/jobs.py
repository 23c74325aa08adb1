"""Batch jobs: where they come from (a CSV/TOML jobs file or sources × drivers) and what each one is.

A job is one ``retarget video`` run: a source photo, a driver video, an output (video or PNG sequence) and optional
per-job settings (the keys of :data:`JOB_OPTIONS`, overriding the command-line defaults).

Jobs file formats (relative input paths are relative to the jobs file's folder; relative ``output``
paths to ``--out-dir``, and every output must stay under ``--out-dir``):

- CSV with a header row: ``source,driver[,output][,<option>...]``; empty cells mean "default". Parsed
  by the :mod:`csv` module's rules (quoted cells may hold commas, quotes and newlines); there are no
  comment lines (a cell starting with ``#`` is data); blank lines and rows whose cells are all empty
  are ignored. ``.csv`` and ``.txt`` are comma-separated, ``.tsv`` tab-separated.
- TOML: an optional ``[defaults]`` table of options and one ``[[job]]`` table per job with
  ``source``, ``driver``, optional ``output`` and options.

Without an ``output`` the job writes ``<out-dir>/<driver-stem>_as_<source-stem>.mp4`` (``.mkv`` for
``codec = ffv1``, ``.mov`` for ``prores``, a folder for ``png``). An ``output`` ending in ``/`` is a PNG
sequence folder.

A problem of the file as a whole (unreadable, bad header, unknown column, invalid TOML) raises; a
problem of one row (missing source, bad value, output outside ``--out-dir``) makes that job a failed
one (:attr:`BatchJob.error`) and the other jobs still run.
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


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        raise ValueError(f"expected a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"expected a number, got {value!r}")
    return number


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
    "steady": _parse_float,  # retarget.pipeline.steady
    # texture workflows (docs/textures.md); no command-line default: they belong to one job
    "texture": _parse_str,
    "garment": _parse_str,
    "garment_iuv": _parse_str,
    "garment_region": _parse_str,
}
_PATH_OPTIONS = ("source_iuv", "driver_iuv", "texture", "garment", "garment_iuv")
#: Settings with documented bounds (:mod:`retarget.pipeline.bounds`).
BOUNDED = ("size", "batch_size", "densepose_size")

#: Defaults of the per-job settings (those of ``retarget video``).
DEFAULT_OPTIONS: dict[str, Any] = {
    "size": 256, "background": "scene", "output_mode": "frame", "on_missing": "hold", "table": "auto",
    "batch_size": 4, "side_by_side": False, "precision": "auto", "fill": "body", "engine": "auto",
    "temporal_filter": True, "temporal_strength": 2,
    "densepose_backend": "auto", "densepose_size": 800,
    "densepose_track": True,
    "person": "largest",
    "codec": None,  # from the output's extension (h264 for files); None values stay out of fingerprints
    "crf": None,  # 18
    "densepose_every": "1",  # left out of the fingerprint when 1 (retarget.batch.plan): old reports still match
    "steady": 0.8,
}

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm")


@dataclass
class BatchJob:
    """One output video of a batch.

    Attributes:
        source, driver, output: absolute paths (``None`` only in a job that cannot run because its row
            lacks them).
        options: per-job settings (subset of :data:`JOB_OPTIONS`), merged over the batch defaults by
            :meth:`settings`.
        origin: where the job was defined (``jobs.csv:3``, ``cross``), for messages.
        error: why the job cannot run, found while reading the jobs file (one line starting with
            ``origin``), else ``None``; ``error_code`` is the exit code ``--fail-fast`` gives it
            (2: a bad setting, 1: a bad input).
    """

    source: Path | None
    driver: Path | None
    output: Path | None
    options: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    default_output: bool = False  # named by default_output_name (its extension follows the codec setting)
    error: str | None = None
    error_code: int = 1
    names: tuple[str, str] | None = None  # (source, driver) names of a default output, where not the stems

    @property
    def name(self) -> str:
        return self.output.name if self.output is not None else (self.origin or "job")

    def settings(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The effective per-job settings: :data:`DEFAULT_OPTIONS` < ``defaults`` < this job's options."""
        merged = {k: v for k, v in DEFAULT_OPTIONS.items() if v is not None}
        merged.update({k: v for k, v in defaults.items() if v is not None})
        merged.update(self.options)
        return merged


def default_output_name(source: Path, driver: Path, codec: str | None = None,
                        names: tuple[str, str] | None = None) -> str:
    """``<driver-stem>_as_<source-stem>.mp4``, as ``retarget video`` names it (``.mkv``/``.mov``/a folder
    for ``codec`` ffv1/prores/png); ``names``: ``(source, driver)`` names to use instead of the stems
    (:func:`distinct_names`)."""
    from retarget.io.output import default_suffix

    source_name, driver_name = names or (source.stem, driver.stem)
    return f"{driver_name}_as_{source_name}{default_suffix(codec)}"


def _resolve(path: str | Path, base: Path) -> Path:
    p = Path(os.path.expanduser(str(path)))
    return (p if p.is_absolute() else base / p).absolute()


def inside(path: Path, folder: Path) -> bool:
    """``path`` lies in ``folder`` (symbolic links and ``..`` resolved, also for parts that do not exist yet)."""
    real, top = os.path.realpath(path), os.path.realpath(folder)
    return real != top and (real.startswith(top.rstrip(os.sep) + os.sep))


def output_under(raw: str, out_dir: Path) -> Path:
    """A jobs file's ``output`` cell: relative to ``out_dir``, and within it.

    Raises:
        UsageError: the path leaves ``out_dir`` (``..``, an absolute path elsewhere, a symbolic link out).
    """
    output = _resolve(raw, out_dir)
    if not inside(output, out_dir):
        raise UsageError(f"output {raw!r} is outside --out-dir {out_dir}; outputs of a jobs file stay under "
                         "--out-dir (give a path relative to it)")
    return output


def _parse_options(raw: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    from retarget.pipeline.bounds import check_bounds

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
        if key_n in BOUNDED:
            try:
                check_bounds(key_n, parsed, option=key_n)
            except UsageError as exc:
                raise UsageError(f"{where}: {exc}") from None
        options[key_n] = str(_resolve(parsed, base)) if key_n in _PATH_OPTIONS else parsed
    return options


def _make_job(row: dict[str, Any], base: Path, out_dir: Path, where: str,
              defaults: dict[str, Any] | None = None) -> BatchJob:
    """The job of one row; a problem of the row becomes the job's ``error`` (the others still run)."""
    row = {str(k).strip().replace("-", "_"): v for k, v in row.items() if k is not None}
    paths: dict[str, Path | None] = {}
    for key in ("source", "driver"):
        value = row.pop(key, None)
        paths[key] = _resolve(str(value).strip(), base) if value is not None and str(value).strip() else None
    output_raw = row.pop("output", None)
    source, driver = paths["source"], paths["driver"]
    job = BatchJob(source=source, driver=driver, output=None, origin=where)
    try:
        if not isinstance(output_raw, (str, type(None))):
            raise UsageError(f"{where}: output: expected text, got {output_raw!r}")
        folder_output = False
        if output_raw is not None and str(output_raw).strip():
            job.output = output_under(str(output_raw).strip(), out_dir)
            folder_output = str(output_raw).strip().endswith(("/", os.sep))
        elif source is not None and driver is not None:
            job.output = out_dir.absolute() / default_output_name(source, driver)
            job.default_output = True  # its extension follows the codec setting (retarget.batch.plan)
        missing = [key for key in ("source", "driver") if paths[key] is None]
        if missing:
            raise UsageError(f"{where}: missing {' and '.join(missing)}")
        options = _parse_options(defaults or {}, base, where)
        options.update(_parse_options(row, base, where))
        if folder_output:  # "out/": a PNG sequence folder (the "/" does not survive in the path)
            options.setdefault("codec", "png")
        job.options = options
    except UsageError as exc:
        text = str(exc)
        job.error, job.error_code = (text if text.startswith(where) else f"{where}: {text}"), 2
    return job


#: Jobs file suffixes and their formats (the messages list them).
JOBS_FORMATS = {".csv": "comma-separated", ".txt": "comma-separated", ".tsv": "tab-separated", ".toml": "TOML"}
#: A jobs file larger than this is refused before it is read (it lists jobs, not data).
MAX_JOBS_FILE_BYTES = 64 << 20


def _formats() -> str:
    return ", ".join(f"{s} ({k})" for s, k in JOBS_FORMATS.items())


def _read_jobs_text(path: Path) -> str:
    from retarget.batch.probe import path_problem

    problem = path_problem(path, "a jobs file")
    if problem is not None:
        raise InputError(problem.replace(": file not found;", ": jobs file not found;"))
    if path.suffix.lower() not in JOBS_FORMATS:
        raise UsageError(f"{path}: jobs file must be {_formats()}")
    try:
        if path.stat().st_size > MAX_JOBS_FILE_BYTES:
            raise InputError(f"{path}: jobs file is larger than {MAX_JOBS_FILE_BYTES >> 20} MiB; a jobs file lists "
                             "jobs (a few lines each)")
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read the jobs file (not UTF-8 text: {exc.reason} at byte "
                         f"{exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the jobs file ({exc.strerror or exc})") from None


def _csv_jobs(path: Path, text: str, out_dir: Path) -> list[BatchJob]:
    import io

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    base = path.parent.absolute()
    try:
        header: list[str] = []
        while not header or not any(cell.strip() for cell in header):
            header = next(reader)
        header = [cell.strip().replace("-", "_") for cell in header]
        if not {"source", "driver"} <= set(header):
            sep = "tab" if delimiter == "\t" else "comma"
            raise InputError(f"{path}: the first line must be a header naming at least source and driver columns "
                             f"({sep}-separated, as {path.suffix.lower()} files are)")
        doubled = sorted({c for c in header if c and header.count(c) > 1})
        if doubled:
            raise UsageError(f"{path}: the header names {', '.join(doubled)} more than once")
        unknown = [c for c in header if c and c not in ("source", "driver", "output") and c not in JOB_OPTIONS]
        if unknown:
            raise UsageError(f"{path}: unknown job setting {unknown[0]!r} in the header (allowed: source, driver, "
                             f"output, {', '.join(JOB_OPTIONS)})")
        if "" in header:
            raise InputError(f"{path}: the header has an empty column name (column {header.index('') + 1})")
        jobs: list[BatchJob] = []
        line = reader.line_num
        for cells in reader:
            where, line = f"{path.name}:{line + 1}", reader.line_num
            if not any(cell.strip() for cell in cells):
                continue  # blank line, or a row of empty cells (spreadsheets write them)
            if len(cells) > len(header):
                jobs.append(BatchJob(source=None, driver=None, output=None, origin=where, error_code=2,
                                     error=f"{where}: {len(cells)} cells but the header has {len(header)} columns"))
                continue
            jobs.append(_make_job(dict(zip(header, cells)), base, out_dir, where))
    except StopIteration:
        raise InputError(f"{path}: no jobs (the file is empty)") from None
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    return jobs


def _toml_jobs(path: Path, text: str, out_dir: Path) -> list[BatchJob]:
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
    _parse_options(defaults, path.parent.absolute(), f"{path.name} [defaults]")  # a bad default is the file's
    jobs = []
    for i, entry in enumerate(entries, 1):
        where = f"{path.name} job {i}"
        if not isinstance(entry, dict):
            jobs.append(BatchJob(source=None, driver=None, output=None, origin=where, error_code=2,
                                 error=f"{where}: not a table (write [[job]] tables)"))
            continue
        jobs.append(_make_job(entry, path.parent.absolute(), out_dir, where, defaults))
    return jobs


def load_jobs_file(path: str | Path, out_dir: Path | None) -> list[BatchJob]:
    """Parse a CSV (``.csv``, ``.txt``; ``.tsv`` tab-separated) or TOML jobs file.

    Args:
        path: the jobs file (a regular file; a folder, device or FIFO is refused without reading it).
        out_dir: the batch's output folder (``None``: the jobs file's folder); relative ``output``
            cells are relative to it, and every output must stay in it.

    Returns:
        One :class:`BatchJob` per row or ``[[job]]``; a row with a problem has ``error`` set.

    Raises:
        InputError: the file cannot be read or parsed, or holds no jobs.
        UsageError: an unknown column or ``[defaults]`` setting, or an unsupported suffix.
    """
    path = Path(path)
    text = _read_jobs_text(path)
    out_dir = (out_dir if out_dir is not None else path.parent).absolute()
    jobs = _toml_jobs(path, text, out_dir) if path.suffix.lower() == ".toml" else _csv_jobs(path, text, out_dir)
    if not jobs:
        raise InputError(f"{path}: no jobs")
    return jobs


def _expand(pattern: str, suffixes: tuple[str, ...], what: str, exclude: Callable[[Path], bool]) -> list[Path]:
    """The files a ``--sources``/``--drivers`` pattern names. Entries that are not regular files (a
    device, FIFO, broken link or symlink loop named like a photo/video, or given by name) are kept:
    their jobs fail with the reason, they are not silently dropped; only folders are left out."""
    path = Path(os.path.expanduser(pattern))
    if path.is_dir():
        found = [p for p in path.iterdir() if not p.is_dir() and p.suffix.lower() in suffixes]
    elif os.path.lexists(path) and not glob.has_magic(pattern):
        found = [path]
    else:
        matches = glob.glob(os.path.expanduser(pattern), recursive=True)
        if not matches and not glob.has_magic(pattern):
            raise InputError(f"{pattern}: no such file or folder ({what})")
        found = [Path(m) for m in matches if not Path(m).is_dir() and Path(m).suffix.lower() in suffixes]
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
    source_names, driver_names = distinct_names(source_files), distinct_names(driver_files)
    jobs = []
    for d in driver_files:
        for s in source_files:
            names = (source_names[s], driver_names[d])
            names = None if names == (s.stem, d.stem) else names
            jobs.append(BatchJob(source=s, driver=d, output=out_dir / default_output_name(s, d, names=names),
                                 origin="cross", default_output=True, names=names))
    return jobs


def distinct_names(paths: Iterable[Path]) -> dict[Path, str]:
    """A name per file for output names: its stem, or, where files of several folders share a stem
    (``a/photo.jpg``, ``b/photo.jpg``), the stem after as many of its folders' names as tell them apart
    (``a-photo``, ``b-photo``), else the stem numbered in path order (``photo-1``, ``photo-2``)."""
    paths = sorted(set(paths))
    by_stem: dict[str, list[Path]] = {}
    for path in paths:
        by_stem.setdefault(path.stem, []).append(path)
    names = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            names[group[0]] = stem
            continue
        depth = max(len(p.parent.parts) for p in group)
        for k in range(1, depth + 1):
            tried = {p: "-".join([*p.parent.parts[-k:], stem]).lstrip("/").replace("/", "-") for p in group}
            if len(set(tried.values())) == len(group):
                break
        else:
            tried = {p: f"{stem}-{i + 1}" for i, p in enumerate(group)}
        names.update(tried)
    return names


# -- fingerprints --------------------------------------------------------------------------------
def content_digest(path: Path) -> str:
    """SHA-256 of a regular file (memoised on path, size, mtime), or of a folder's regular files'
    names/sizes/mtimes.

    Raises:
        OSError: ``path`` is neither (a device such as ``/dev/zero`` or a FIFO is never read).
    """
    from retarget.io.guard import is_regular_file

    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for item in sorted(path.iterdir()):
            if is_regular_file(item):
                st = item.stat()
                h.update(f"{item.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return "dir:" + h.hexdigest()
    if not is_regular_file(path):
        raise OSError(f"{path}: not a regular file")
    from retarget.io.hashing import cached_file_sha256

    return cached_file_sha256(path)


def optional_digest(path: Path | None) -> str | None:
    """:func:`content_digest`, ``"missing"`` when the path is not a readable regular file or folder."""
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
    if not settings.get("temporal_filter", True):
        return 0
    return int(settings.get("temporal_strength", DEFAULT_OPTIONS["temporal_strength"]))
