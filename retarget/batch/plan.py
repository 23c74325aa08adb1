"""Planning a batch before it runs: validate every job, group jobs by driver, decide what to skip.

Skipping is verified, not guessed: a job is skipped only when the previous report records it as
finished, its fingerprint (content of source, driver and IUV sidecars, settings, weights) is
unchanged, and the output file's SHA-256 equals the recorded one. An existing output the report does
not vouch for is never replaced without ``--overwrite``: that job fails with a one-line error.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retarget.batch.jobs import BatchJob, default_output_name, fingerprint, optional_digest, temporal_radius
from retarget.batch.report import FINISHED
from retarget.batch.worker import Task, WorkerConfig
from retarget.errors import UsageError

DENSEPOSE_BACKENDS = ("auto", "precomputed", "torchvision", "detectron2")

RUN, SKIP, CONFLICT = "run", "skip", "conflict"


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
        action: ``run``, ``skip`` (finished, verified) or ``conflict`` (unverified existing output).
        previous: the earlier report's record of this output, if any.
    """

    task: Task
    fingerprint: str
    driver_key: str
    model_densepose: bool
    action: str
    previous: dict[str, Any] | None = None
    densepose_needs: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def job(self) -> BatchJob:
        return self.task.job


@dataclass
class BatchPlan:
    jobs: list[PlannedJob]
    groups: OrderedDict[str, list[PlannedJob]] = field(default_factory=OrderedDict)

    @property
    def to_run(self) -> list[PlannedJob]:
        return [p for p in self.jobs if p.action == RUN]

    @property
    def skipped(self) -> list[PlannedJob]:
        return [p for p in self.jobs if p.action == SKIP]

    @property
    def conflicts(self) -> list[PlannedJob]:
        return [p for p in self.jobs if p.action == CONFLICT]

    def describe(self, workers: int | None = None, backend: str = "local") -> str:
        """Plan summary lines (what the command prints before running)."""
        n_sources = len({p.job.source for p in self.jobs})
        n_drivers = len({p.job.driver for p in self.jobs})
        model_groups = [k for k, g in self.groups.items() if g[0].model_densepose]
        to_model = [k for k in model_groups if any(p.action == RUN for p in self.groups[k])]
        lines = [f"plan: {len(self.jobs)} job{'s' * (len(self.jobs) != 1)} ({n_sources} source"
                 f"{'s' * (n_sources != 1)} × {n_drivers} driver{'s' * (n_drivers != 1)})",
                 f"  distinct drivers: {len(self.groups)} ({len(model_groups)} with DensePose from the model, "
                 f"run once per driver and shared through the cache; {len(self.groups) - len(model_groups)} "
                 f"with precomputed IUV); DensePose to run for {len(to_model)}",
                 f"  outputs already finished (verified by the report): {len(self.skipped)} → skipped"]
        if self.conflicts:
            lines.append(f"  existing outputs not recorded as finished: {len(self.conflicts)} → not replaced "
                         "(fail; pass --overwrite to replace them)")
        where = f" on {workers} worker{'s' * (workers != 1)}" if workers else ""
        lines.append(f"  to render: {len(self.to_run)}{where} ({backend})")
        return "\n".join(lines)


def check_settings(settings: dict[str, Any], where: str) -> None:
    """Validate per-job settings like ``retarget video`` does, naming the job."""
    from retarget.pipeline.video import VideoOptions

    try:
        VideoOptions(batch_size=settings["batch_size"], background=settings["background"],
                     output_mode=settings["output_mode"], on_missing=settings["on_missing"],
                     table=settings["table"], precision=settings.get("precision", "fp32"),
                     fill=settings.get("fill", "body"), temporal_radius=temporal_radius(settings),
                     engine=settings.get("engine", "auto"), codec=settings.get("codec"), crf=settings.get("crf"),
                     person=str(settings.get("person", "largest")),
                     densepose_every=str(settings.get("densepose_every", "1"))).validate()
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if settings.get("texture") and settings.get("garment"):
        raise UsageError(f"{where}: give texture or garment, not both (paint the garment into the texture instead)")
    from retarget.pipeline.texture import GARMENT_REGIONS

    if settings.get("garment_region", "upper") not in GARMENT_REGIONS:
        raise UsageError(f"{where}: garment_region {settings['garment_region']!r}: expected one of "
                         f"{', '.join(GARMENT_REGIONS)}")
    if settings.get("garment_iuv") and not settings.get("garment"):
        raise UsageError(f"{where}: garment_iuv is the DensePose of the garment photo; give garment too")
    size = settings["size"]
    if size % 4 or size < 64:
        raise UsageError(f"{where}: size must be a multiple of 4 and at least 64, got {size}")
    if settings["table"] not in ("training", "released"):
        raise UsageError(f"{where}: table {settings['table']!r}: expected training or released")
    if settings["densepose_backend"] not in DENSEPOSE_BACKENDS:
        raise UsageError(f"{where}: densepose backend {settings['densepose_backend']!r}: expected one of "
                         f"{', '.join(DENSEPOSE_BACKENDS)}")
    if settings["densepose_size"] < 32:
        raise UsageError(f"{where}: densepose size must be at least 32, got {settings['densepose_size']}")


def _sha_or_none(path: Path) -> str | None:
    from retarget.io.output import output_digest

    try:
        return output_digest(path)
    except OSError:
        return None


def models_identity(config: WorkerConfig) -> str:
    if config.checkpoints is None:
        return "weight-free"
    return ",".join(optional_digest(Path(p)) or "missing" for p in config.checkpoints)


def make_plan(jobs: list[BatchJob], defaults: dict[str, Any], config: WorkerConfig,
              previous: dict[str, dict[str, Any]], *, overwrite: bool = False, rerun: bool = False) -> BatchPlan:
    """Validate the jobs and decide, per job, run / skip / conflict.

    Args:
        jobs: the batch.
        defaults: command-line per-job settings (overridden by each job's own options).
        config: the workers' settings (part of every fingerprint).
        previous: records of the earlier report (:func:`retarget.batch.report.load_report`).
        overwrite: replace existing outputs the report does not vouch for.
        rerun: render finished jobs again too.

    Raises:
        UsageError: invalid settings, two jobs with the same output, an output that is an input.
    """
    from retarget.pipeline.job import driver_iuv_sidecar, source_iuv_sidecar
    from retarget.pipeline.people import driver_tracking

    from retarget.io.output import output_exists, output_spec

    seen: dict[str, BatchJob] = {}
    for job in jobs:
        settings = job.settings(defaults)
        if job.default_output:  # the extension follows the job's codec (.mp4, .mkv, .mov, a folder)
            job.output = job.output.with_name(default_output_name(job.source, job.driver, settings.get("codec")))
        key = str(job.output.resolve())
        if key in seen:
            raise UsageError(f"{job.origin or job.name} and {seen[key].origin or seen[key].name} would both write "
                             f"{job.output}; give distinct outputs")
        seen[key] = job
        try:
            output_spec(job.output, settings.get("codec"), settings.get("crf"))
        except UsageError as exc:
            raise UsageError(f"{job.origin or job.name}: {exc}") from None
    inputs = {str(p.resolve()) for job in jobs for p in (job.source, job.driver)}
    for key, job in seen.items():
        if key in inputs:
            raise UsageError(f"{job.origin}: {job.output}: output would overwrite an input file")

    models_id = models_identity(config)
    plan = BatchPlan(jobs=[])
    for index, job in enumerate(jobs):
        settings = job.settings(defaults)
        check_settings(settings, job.origin or job.name)
        backend = settings["densepose_backend"]
        driver_iuv = Path(settings["driver_iuv"]) if settings.get("driver_iuv") else (
            driver_iuv_sidecar(job.driver) if backend in ("auto", "precomputed") else None)
        source_iuv = Path(settings["source_iuv"]) if settings.get("source_iuv") else source_iuv_sidecar(job.source)
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
        record = previous.get(str(job.output.resolve()))
        exists = output_exists(job.output)
        action, overwrite_job = RUN, False
        if exists:
            digest = _sha_or_none(job.output) if output_exists(job.output) else None
            ours = record is not None and digest is not None and record.get("output_sha256") == digest
            if ours and not rerun and record.get("status") in FINISHED and record.get("fingerprint") == fp:
                action = SKIP
            elif ours or overwrite:
                overwrite_job = True
            else:
                action = CONFLICT
        task = Task(index=index, job=job, settings=settings, overwrite=overwrite_job)
        needs = ([("source", job.source)] if source_iuv is None else []) + \
            ([("driver", job.driver)] if model_densepose else [])
        garment = Path(settings["garment"]) if settings.get("garment") else None
        if garment is not None and not settings.get("garment_iuv") and source_iuv_sidecar(garment) is None:
            needs.append(("garment", garment))
        planned = PlannedJob(task=task, fingerprint=fp, driver_key=driver_key, model_densepose=model_densepose,
                             action=action, previous=record, densepose_needs=needs)
        plan.jobs.append(planned)
        plan.groups.setdefault(driver_key, []).append(planned)
    return plan



def _edit_digests(settings: dict[str, Any]) -> dict[str, Any]:
    """Content digests of a job's texture/garment inputs (absent when it has none, so fingerprints of jobs
    without them are unchanged)."""
    found = {key: optional_digest(Path(settings[key])) for key in ("texture", "garment", "garment_iuv")
             if settings.get(key)}
    if settings.get("garment") and not settings.get("garment_iuv"):
        from retarget.pipeline.job import source_iuv_sidecar

        found["garment_sidecar"] = optional_digest(source_iuv_sidecar(Path(settings["garment"])))
    return {"edits": found} if found else {}


def check_densepose_weights(plan: BatchPlan, densepose_weights: str | None, densepose_config: str | None) -> None:
    """Fail before any work when jobs to run need DensePose from the model and no weights exist.

    One line: how many jobs need it, each with the inputs concerned, the precomputed alternatives and
    how to install the weights. Only the default (torchvision) backend is checked.
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
        roles = {"source": "source photo", "driver": "driving video", "garment": "garment photo"}
        jobs = ", ".join(f"{p.job.name} ({' and '.join(f'{roles[r]} {Path(x).name}' for r, x in p.densepose_needs)})"
                         for p in needing)
        subject = (f"{len(needing)} of {len(plan.to_run)} job{'s' * (len(plan.to_run) != 1)} to run need DensePose: "
                   f"{jobs}")
        needs = [need for p in needing for need in p.densepose_needs]
        raise WeightsError(densepose_missing_message(exc.model, needs, "batch", subject=subject)) from None
