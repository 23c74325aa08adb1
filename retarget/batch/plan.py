"""Planning a batch before it runs: check every job, group jobs by driver, decide what to skip.

A job that cannot run (bad setting, bad output path, missing or unreadable input, damaged driver,
DensePose needed without weights) is planned as failed with a one-line reason; the others run.

Skipping is verified, not guessed: a job is skipped only when the previous report records it as
finished, its fingerprint (content of source, driver and IUV sidecars, settings, weights) is
unchanged, and the output file's SHA-256 equals the recorded one. An existing output the report does
not vouch for is never replaced without ``--overwrite``: that job fails with a one-line error.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retarget.batch.jobs import BatchJob, default_output_name, fingerprint, optional_digest, temporal_radius
from retarget.batch.probe import Prober
from retarget.batch.report import FINISHED, RUNNING
from retarget.batch.worker import Task, WorkerConfig
from retarget.errors import InputError, UsageError

DENSEPOSE_BACKENDS = ("auto", "precomputed", "torchvision", "detectron2")

RUN, SKIP, CONFLICT, FAIL = "run", "skip", "conflict", "fail"


@dataclass
class PlannedJob:
    """A job with its plan decision.

    Attributes:
        task: what a worker runs (index, job, effective settings, overwrite).
        fingerprint: hash of everything the output depends on.
        driver_key: DensePose sharing group (driver content + DensePose settings).
        model_densepose: the driver's DensePose comes from a model (computed once per group, cached).
        densepose_needs: ``(role, path)`` of the inputs whose DensePose comes from the model
            (``source``, ``driver``), as :func:`retarget.pipeline.job.densepose_needs`.
        action: ``run``, ``skip`` (finished, verified), ``conflict`` (unverified existing output) or
            ``fail`` (cannot run: ``error`` says why).
        previous: the earlier report's record of this output, if any.
        error: one line, for ``fail``; ``error_code`` is what ``--fail-fast`` exits with (2: a bad setting
            or output path, 1: a bad input or missing weights).
    """

    task: Task
    fingerprint: str | None
    driver_key: str
    model_densepose: bool
    action: str
    previous: dict[str, Any] | None = None
    densepose_needs: list[tuple[str, Path]] = field(default_factory=list)
    error: str | None = None
    error_code: int = 1

    @property
    def job(self) -> BatchJob:
        return self.task.job


@dataclass
class BatchPlan:
    """The planned jobs, their DensePose sharing groups and the batch's resolved inputs (``inputs``)."""

    jobs: list[PlannedJob]
    groups: OrderedDict[str, list[PlannedJob]] = field(default_factory=OrderedDict)
    inputs: InputSet | None = None

    @property
    def to_run(self) -> list[PlannedJob]:
        return [p for p in self.jobs if p.action == RUN]

    @property
    def skipped(self) -> list[PlannedJob]:
        return [p for p in self.jobs if p.action == SKIP]

    @property
    def conflicts(self) -> list[PlannedJob]:
        return [p for p in self.jobs if p.action == CONFLICT]

    @property
    def failed(self) -> list[PlannedJob]:
        """Jobs that cannot run (reported as failed, with their reason)."""
        return [p for p in self.jobs if p.action == FAIL]

    def describe(self, workers: int | None = None, backend: str = "local") -> str:
        """Plan summary lines (what the command prints before running)."""
        n_sources = len({p.job.source for p in self.jobs if p.job.source is not None})
        n_drivers = len({p.job.driver for p in self.jobs if p.job.driver is not None})
        model_groups = [k for k, g in self.groups.items() if g[0].model_densepose]
        to_model = [k for k in model_groups if any(p.action == RUN for p in self.groups[k])]
        # "×" only where the jobs are every source with every driver; a jobs file pairs them as it likes
        link = "×" if len(self.jobs) == n_sources * n_drivers else "and"
        lines = [f"plan: {len(self.jobs)} job{'s' * (len(self.jobs) != 1)} ({n_sources} source"
                 f"{'s' * (n_sources != 1)} {link} {n_drivers} driver{'s' * (n_drivers != 1)})",
                 f"  distinct drivers: {len(self.groups)} ({len(model_groups)} with DensePose from the model, "
                 f"run once per driver and shared through the cache; {len(self.groups) - len(model_groups)} "
                 f"with precomputed IUV); DensePose to run for {len(to_model)}",
                 f"  outputs already finished (verified by the report): {len(self.skipped)} → skipped"]
        if self.conflicts:
            lines.append(f"  existing outputs not recorded as finished: {len(self.conflicts)} → not replaced "
                         "(fail; pass --overwrite to replace them)")
        if self.failed:
            lines.append(f"  cannot run: {len(self.failed)} → reported as failed:")
            lines += [f"    {p.job.name}: {p.error}" for p in self.failed]
        where = f" on {workers} worker{'s' * (workers != 1)}" if workers else ""
        lines.append(f"  to render: {len(self.to_run)}{where} ({backend})")
        return "\n".join(lines)


def check_settings(settings: dict[str, Any], where: str | None) -> None:
    """Validate per-job settings like ``retarget video`` does.

    Args:
        settings: effective settings of a job (or the command line's defaults).
        where: the job (``jobs.csv:3``), prefixed to messages, which then name settings as a jobs file
            does (``size``); ``None`` for the command line's own values (``--size``).

    Raises:
        UsageError: one line.
    """
    from retarget.pipeline.bounds import check_bounds
    from retarget.pipeline.video import VideoOptions

    prefix = f"{where}: " if where else ""
    try:
        for key in ("size", "batch_size", "densepose_size"):
            check_bounds(key, settings[key], option=key if where else None)  # --size on the command line
        VideoOptions(batch_size=settings["batch_size"], background=settings["background"],
                     output_mode=settings["output_mode"], on_missing=settings["on_missing"],
                     table=settings["table"], precision=settings.get("precision", "auto"),
                     fill=settings.get("fill", "body"), temporal_radius=temporal_radius(settings),
                     engine=settings.get("engine", "auto"), codec=settings.get("codec"), crf=settings.get("crf"),
                     person=str(settings.get("person", "largest")),
                     densepose_every=str(settings.get("densepose_every", "1")),
                     steady=float(settings.get("steady", 0.8))).validate()
    except UsageError as exc:
        raise UsageError(f"{prefix}{exc}") from None
    if settings.get("texture") and settings.get("garment"):
        raise UsageError(f"{prefix}give texture or garment, not both (paint the garment into the texture instead)")
    from retarget.pipeline.texture import GARMENT_REGIONS

    if settings.get("garment_region", "upper") not in GARMENT_REGIONS:
        raise UsageError(f"{prefix}garment_region {settings['garment_region']!r}: expected one of "
                         f"{', '.join(GARMENT_REGIONS)}")
    if settings.get("garment_iuv") and not settings.get("garment"):
        raise UsageError(f"{prefix}garment_iuv is the DensePose of the garment photo; give garment too")
    from retarget.uvmap import TABLE_CHOICES

    if settings["table"] not in TABLE_CHOICES:
        raise UsageError(f"{prefix}table {settings['table']!r}: expected one of {', '.join(TABLE_CHOICES)}")
    if settings["densepose_backend"] not in DENSEPOSE_BACKENDS:
        raise UsageError(f"{prefix}densepose backend {settings['densepose_backend']!r}: expected one of "
                         f"{', '.join(DENSEPOSE_BACKENDS)}")


def _sha_or_none(path: Path) -> str | None:
    """The output's digest (:func:`retarget.io.output.output_digest`: a video file, or a PNG sequence's sidecar
    and frames); ``None`` when it is missing, unreadable or not a regular file (never read: a FIFO, a device)."""
    from retarget.io.guard import is_regular_file
    from retarget.io.output import output_digest

    if not Path(path).is_dir() and "%" not in Path(path).name and not is_regular_file(path):
        return None
    try:
        return output_digest(path)
    except (OSError, UsageError):
        return None


def _output_present(path: Path, settings: dict[str, Any]) -> bool:
    """Whether something is at a job's output: a file (or link) for a video, the sidecar or any frame file for a
    PNG sequence (an empty folder made beforehand is not an output)."""
    spec = _spec(path, settings)
    if spec is not None and spec.is_sequence:
        return bool(spec.existing())
    return os.path.lexists(path)


def _spec(path: Path, settings: dict[str, Any]):
    from retarget.io.output import output_spec

    try:
        return output_spec(path, settings.get("codec"), settings.get("crf"))
    except UsageError:
        return None


def models_identity(config: WorkerConfig) -> str:
    if config.checkpoints is None:
        return "weight-free"
    return ",".join(optional_digest(Path(p)) or "missing" for p in config.checkpoints)


def _iuv_paths(job: BatchJob, settings: dict[str, Any]) -> tuple[Path | None, Path | None]:
    """``(source_iuv, driver_iuv)`` a job reads: given in its settings, else the sidecars found beside the inputs."""
    from retarget.pipeline.job import driver_iuv_sidecar, source_iuv_sidecar

    backend = settings["densepose_backend"]
    driver_iuv = Path(settings["driver_iuv"]) if settings.get("driver_iuv") else (
        driver_iuv_sidecar(job.driver) if backend in ("auto", "precomputed") else None)
    source_iuv = Path(settings["source_iuv"]) if settings.get("source_iuv") else source_iuv_sidecar(job.source)
    return source_iuv, driver_iuv


def input_paths(job: BatchJob, settings: dict[str, Any]) -> list[Path]:
    """Every file or folder a job reads: source, driver, their IUV (given or sidecar), texture, garment and
    its IUV. No output of the batch may name one of them (or lie inside one, for a folder of IUV PNGs)."""
    from retarget.pipeline.job import source_iuv_sidecar

    found = [p for p in (job.source, job.driver) if p is not None]
    if job.source is not None and job.driver is not None:
        found += [p for p in _iuv_paths(job, settings) if p is not None]
    found += [Path(settings[k]) for k in ("texture", "garment", "garment_iuv") if settings.get(k)]
    if settings.get("garment") and not settings.get("garment_iuv"):
        sidecar = source_iuv_sidecar(Path(settings["garment"]))
        if sidecar is not None:
            found.append(sidecar)
    return found


class InputSet:
    """Resolved input paths (realpath); :meth:`names` says whether a path is one of them or lies in one."""

    def __init__(self, paths=()):
        self._paths: set[str] = set()
        self._folders: list[str] | None = None
        for path in paths:
            self.add(path)

    def add(self, path: Path | str | None) -> None:
        if path is not None and str(path):
            self._paths.add(os.path.realpath(path))
            self._folders = None

    def names(self, path: Path | str) -> bool:
        real = os.path.realpath(path)
        if real in self._paths:
            return True
        if self._folders is None:
            self._folders = [p.rstrip(os.sep) + os.sep for p in self._paths if os.path.isdir(p)]
        return any(real.startswith(folder) for folder in self._folders)


def _input_problem(job: BatchJob, settings: dict[str, Any], prober: Prober) -> str | None:
    """Why a job's inputs cannot be used (first problem found), probing each file once per batch."""
    problem = prober.photo(job.source, "a source photo (JPEG or PNG)") or prober.video(job.driver)
    if problem:
        return problem
    source_iuv, driver_iuv = _iuv_paths(job, settings)
    checks = [(source_iuv, "an IUV PNG (or UV .npy)", False), (driver_iuv, "an IUV .npz or a folder of IUV PNGs", True),
              (Path(settings["texture"]) if settings.get("texture") else None, "a texture PNG", False),
              (Path(settings["garment_iuv"]) if settings.get("garment_iuv") else None, "an IUV PNG (or UV .npy)",
               False)]
    for path, what, folder_ok in checks:
        if path is not None:
            problem = prober.file(path, what, folder_ok=folder_ok)
            if problem:
                return problem
    if settings.get("garment"):
        return prober.photo(Path(settings["garment"]), "a garment photo (JPEG or PNG)")
    return None


def make_plan(jobs: list[BatchJob], defaults: dict[str, Any], config: WorkerConfig,
              previous: dict[str, dict[str, Any]], *, overwrite: bool = False, rerun: bool = False,
              protected: list[Path] | tuple = (), reserved: list[Path] | tuple = ()) -> BatchPlan:
    """Check the jobs and decide, per job, run / skip / conflict / fail.

    A job that cannot run is planned as ``fail`` with a one-line reason (:attr:`PlannedJob.error`)
    and the others are unaffected: a bad setting, a duplicate output (the later job), an output that
    would replace an input (any job's, sidecars included, or ``protected``) or ``reserved`` (the
    report), an output that cannot be created (under a file, an existing folder or device), an input
    that is missing, not a regular file (a folder, ``/dev/zero``, a FIFO, a symlink loop), not a photo,
    or a damaged or truncated video. Each input is probed once (:class:`retarget.batch.probe.Prober`),
    and only regular files are hashed for the fingerprints.

    Args:
        jobs: the batch.
        defaults: command-line per-job settings (overridden by each job's own options).
        config: the workers' settings (part of every fingerprint).
        previous: records of the earlier report (:func:`retarget.batch.report.load_report`).
        overwrite: replace existing outputs the report does not vouch for.
        rerun: render finished jobs again too.
        protected: more inputs no output may name (the jobs file).
        reserved: paths the batch itself writes (the report and its journal).
    """
    from retarget.pipeline.people import driver_tracking

    all_settings = [job.settings(defaults) for job in jobs]
    for job, settings in zip(jobs, all_settings):
        if job.error is None and job.default_output:  # the extension follows the codec (.mp4, .mkv, .mov, a folder)
            job.output = job.output.with_name(default_output_name(job.source, job.driver, settings.get("codec"),
                                                                  names=job.names))
    inputs = InputSet(protected)
    for job, settings in zip(jobs, all_settings):
        if job.error is None:
            for path in input_paths(job, settings):
                inputs.add(path)
    reserved_set = {os.path.realpath(p) for p in reserved}
    prober = Prober(allow_large=config.allow_large)
    models_id = models_identity(config)
    seen: dict[str, BatchJob] = {}
    plan = BatchPlan(jobs=[], inputs=inputs)
    for index, (job, settings) in enumerate(zip(jobs, all_settings)):
        task = Task(index=index, job=job, settings=settings)
        error, code = job.error, job.error_code
        if error is None:
            error, code = _job_problem(job, settings, inputs, reserved_set, seen), 2
        if error is None:
            error, code = _output_path_problem(job.output, settings), 1
        if error is None:
            error, code = _input_problem(job, settings, prober), 1
        if error is not None:
            planned = PlannedJob(task=task, fingerprint=None, driver_key=f"failed:{index}", model_densepose=False,
                                 action=FAIL, error=" ".join(error.split()), error_code=code,
                                 previous=previous.get(os.path.realpath(job.output)) if job.output else None)
            plan.jobs.append(planned)
            continue
        seen[os.path.realpath(job.output)] = job
        backend = settings["densepose_backend"]
        source_iuv, driver_iuv = _iuv_paths(job, settings)
        model_densepose = driver_iuv is None and backend != "precomputed"
        driver_digest = optional_digest(job.driver)
        track = driver_tracking(settings["densepose_track"], str(settings.get("person", "largest")))
        densepose_id = {"backend": backend, "size": settings["densepose_size"], "track": track,
                        "weights": config.densepose_weights, "config": config.densepose_config}
        driver_key = fingerprint({"driver": driver_digest, "iuv": optional_digest(driver_iuv),
                                  "densepose": densepose_id if model_densepose else None})
        fp = fingerprint({"source": optional_digest(job.source), "driver": driver_digest,
                          "source_iuv": optional_digest(source_iuv), "driver_iuv": optional_digest(driver_iuv),
                          "settings": {k: v for k, v in settings.items() if k not in ("source_iuv", "driver_iuv")
                                       and not (k == "densepose_every" and str(v).strip() == "1")},
                          "models": models_id, "densepose": densepose_id if (model_densepose or source_iuv is None)
                          else None, **_edit_digests(settings)})
        record = previous.get(os.path.realpath(job.output))
        action, overwrite_job = RUN, False
        if _output_present(job.output, settings):
            digest = _sha_or_none(job.output)
            # ours: the report (or a worker's journal line) recorded this very file, or the batch that last
            # ran this job stopped while it was being written (a worker may have finished it after that)
            ours = record is not None and (record.get("status") == RUNNING
                                           or (digest is not None and record.get("output_sha256") == digest))
            if (ours and not rerun and record.get("status") in FINISHED and record.get("fingerprint") == fp
                    and record.get("output_sha256") == digest):
                action = SKIP
            elif ours or overwrite:
                overwrite_job = True
            else:
                action = CONFLICT
        task.overwrite, task.fingerprint = overwrite_job, fp
        needs = ([("source", job.source)] if source_iuv is None else []) + \
            ([("driver", job.driver)] if model_densepose else [])
        garment = Path(settings["garment"]) if settings.get("garment") else None
        from retarget.pipeline.job import source_iuv_sidecar

        if garment is not None and not settings.get("garment_iuv") and source_iuv_sidecar(garment) is None:
            needs.append(("garment", garment))
        planned = PlannedJob(task=task, fingerprint=fp, driver_key=driver_key, model_densepose=model_densepose,
                             action=action, previous=record, densepose_needs=needs)
        plan.jobs.append(planned)
        plan.groups.setdefault(driver_key, []).append(planned)
    return plan


def _job_problem(job: BatchJob, settings: dict[str, Any], inputs: InputSet, reserved: set[str],
                 seen: dict[str, BatchJob]) -> str | None:
    """A bad setting or output path of one job (one line starting with the job's origin), else ``None``."""
    where = job.origin or job.name
    try:
        check_settings(settings, where)
    except UsageError as exc:
        return str(exc)
    output = job.output
    from retarget.io.output import output_spec

    try:
        output_spec(output, settings.get("codec"), settings.get("crf"))
    except UsageError as exc:
        return f"{where}: {exc}"
    real = os.path.realpath(output)
    if inputs.names(output):
        return f"{where}: {output}: output would overwrite an input file (a photo, video, IUV sidecar, texture or " \
               "the jobs file); choose another output"
    if real in reserved:
        return f"{where}: {output}: output would overwrite the batch report; choose another output"
    if real in seen:
        other = seen[real]
        return f"{where}: {output}: {other.origin or other.name} writes this output already; give distinct outputs"
    return None


def _output_path_problem(output: Path, settings: dict[str, Any]) -> str | None:
    """:func:`retarget.batch.probe.output_problem` for a video file; for a PNG sequence, the same checks of its
    folder (which may exist, as a folder)."""
    from retarget.batch.probe import output_problem

    spec = _spec(output, settings)
    if spec is None or not spec.is_sequence:
        return output_problem(output)
    folder = spec.path
    if os.path.lexists(folder) and not folder.is_dir():
        return f"{folder}: is a file, but the PNG sequence needs a folder there; choose another output"
    return output_problem(folder / spec.file_name(0)) if folder.is_dir() else output_problem(folder)


def _edit_digests(settings: dict[str, Any]) -> dict[str, Any]:
    """Content digests of a job's texture/garment inputs (absent when it has none, so fingerprints of jobs
    without them are unchanged)."""
    found = {key: optional_digest(Path(settings[key])) for key in ("texture", "garment", "garment_iuv")
             if settings.get(key)}
    if settings.get("garment") and not settings.get("garment_iuv"):
        from retarget.pipeline.job import source_iuv_sidecar

        found["garment_sidecar"] = optional_digest(source_iuv_sidecar(Path(settings["garment"])))
    return {"edits": found} if found else {}


def check_densepose_weights(plan: BatchPlan, densepose_weights: str | None, densepose_config: str | None,
                            fail_fast: bool = True) -> None:
    """Jobs to run that need DensePose from the model when no DensePose weights exist.

    With ``fail_fast``: raise one line before any work, naming how many jobs need it, each with the
    inputs concerned, the precomputed alternatives and how to install the weights. Otherwise each
    such job is planned as failed with that reason (for its own inputs) and the other jobs run. Only
    the default (torchvision) backend is checked.
    """
    if densepose_weights is not None:
        return
    needing = [p for p in plan.to_run if p.densepose_needs
               and p.task.settings["densepose_backend"] in ("auto", "torchvision", "precomputed")]
    if not needing:
        return
    from densepose_adapter.rcnn import ConfigError, load_config
    from retarget.errors import DensePoseWeightsMissing, WeightsError
    from retarget.weights import resolve_densepose_weights
    from retarget.weights.resolve import densepose_missing_message

    try:
        depth = load_config(densepose_config).depth
    except ConfigError:
        return  # the workers report the bad config
    try:
        resolve_densepose_weights(None, f"r{depth}")
    except DensePoseWeightsMissing as exc:
        if not fail_fast:
            for planned in needing:
                planned.action, planned.error_code = FAIL, 1
                planned.error = densepose_missing_message(exc.model, planned.densepose_needs, "batch")
            for key, group in list(plan.groups.items()):
                group[:] = [p for p in group if p.action != FAIL]
                if not group:
                    del plan.groups[key]
            return
        roles = {"source": "source photo", "driver": "driving video", "garment": "garment photo"}
        jobs = ", ".join(f"{p.job.name} ({' and '.join(f'{roles[r]} {Path(x).name}' for r, x in p.densepose_needs)})"
                         for p in needing)
        subject = (f"{len(needing)} of {len(plan.to_run)} job{'s' * (len(plan.to_run) != 1)} to run need DensePose: "
                   f"{jobs}")
        needs = [need for p in needing for need in p.densepose_needs]
        raise WeightsError(densepose_missing_message(exc.model, needs, "batch", subject=subject)) from None


def refuse_failed(plan: BatchPlan) -> None:
    """``--fail-fast``: raise the first job that cannot run (exit 2 for a bad setting or output path, 1 for
    a bad input), saying how many more there are, before any work."""
    failed = plan.failed
    if not failed:
        return
    first = failed[0]
    more = f" ({len(failed) - 1} more job{'s' * (len(failed) != 2)} cannot run)" if len(failed) > 1 else ""
    error_class = UsageError if first.error_code == 2 else InputError
    raise error_class(f"{first.error}{more}; nothing was started (--fail-fast)")
