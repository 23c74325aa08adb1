"""One ``retarget video`` job: resolve inputs (sidecars, weights, DensePose), prepare the source, render.

Used by the ``video`` command and by batch workers, which pass already-loaded models and DensePose
backends so that they are loaded once per worker.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retarget.errors import DensePoseWeightsMissing, InputError, UsageError, WeightsError
from retarget.pipeline.densepose_stage import DensePoseCache, FrameDensePose
from retarget.pipeline.pair import Models
from retarget.pipeline.people import driver_tracking
from retarget.pipeline.video import VideoOptions, VideoSummary, render_video


@dataclass
class VideoJob:
    """Everything one output video depends on."""

    source: Path
    driver: Path
    output: Path | str | None = None  # a str keeps a trailing "/" (a PNG sequence folder)
    source_iuv: Path | None = None
    driver_iuv: Path | None = None
    size: int = 256
    overwrite: bool = False
    densepose_backend: str = "auto"  # auto | precomputed | torchvision | detectron2
    densepose_weights: Path | None = None
    densepose_size: int = 800
    densepose_config: str | None = None
    densepose_track: bool = True
    allow_large: bool = False  # accept source photos above 50 megapixels
    options: VideoOptions = field(default_factory=VideoOptions)
    # texture workflows (retarget/pipeline/texture.py): an edited colour texture, or another photo's clothes
    texture: Path | None = None
    garment: Path | None = None
    garment_iuv: Path | None = None
    garment_region: str = "upper"

    def output_path(self) -> Path:
        """``--output`` or ``<driver-stem>_as_<source-stem>`` next to the driver, with the extension of
        ``options.codec`` (``.mp4``; ``.mkv`` for ffv1, ``.mov`` for prores, a folder for png)."""
        if self.output is not None:
            return Path(self.output)
        from retarget.io.output import default_suffix

        return self.driver.with_name(f"{self.driver.stem}_as_{self.source.stem}{default_suffix(self.options.codec)}")

    def output_spec(self):
        """The resolved output (:func:`retarget.io.output.output_spec`: codec, crf, video file or PNG sequence)."""
        from retarget.io.output import output_spec

        return output_spec(self.output if self.output is not None else self.output_path(), self.options.codec,
                           self.options.crf)


def driver_iuv_sidecar(driver: Path) -> Path | None:
    """``<driver-stem>.iuv/`` or ``<driver-stem>.iuv.npz`` beside the driver, if present."""
    for candidate in (driver.with_name(driver.stem + ".iuv"), driver.with_name(driver.stem + ".iuv.npz")):
        if candidate.exists():
            return candidate
    return None


def source_iuv_sidecar(photo: Path) -> Path | None:
    """``<photo-stem>_IUV.png`` beside the photo, if present."""
    candidate = photo.with_name(photo.stem + "_IUV.png")
    return candidate if candidate.is_file() else None


def open_model_backend(name: str, weights: Path | None, densepose_size: int, device: str,
                       config: str | None = None, track: bool = True, engine: str = "torch", quiet: bool = False):
    """Create a DensePose model backend (``torchvision`` port or ``detectron2``), weights resolved.

    ``track`` enables the port's tracked-region mode (detector run on a crop around the previous
    frame's person), a large CPU speed-up for single-performer videos. ``engine`` (``--engine``) runs the
    port's backbone + FPN with OpenVINO when it resolves to ``openvino`` (:func:`retarget.engine.densepose_engine`).
    """
    from retarget.weights.resolve import open_densepose_backend

    kwargs = {"weights": weights, "config": config, "densepose_size": densepose_size, "device": device}
    if name == "torchvision":
        from retarget.engine import densepose_engine_kwargs

        kwargs["track"] = track
        kwargs.update(densepose_engine_kwargs(engine, device, quiet))
    return open_densepose_backend(name, **kwargs)


def driver_iuv_path(job: VideoJob) -> Path | None:
    """The driver's precomputed IUV (``--driver-iuv`` or a sidecar the backend setting allows), if any."""
    if job.driver_iuv is not None:
        return job.driver_iuv
    return driver_iuv_sidecar(job.driver) if job.densepose_backend in ("auto", "precomputed") else None


def densepose_needs(job: VideoJob) -> list[tuple[str, Path]]:
    """``(role, path)`` of each input whose DensePose must come from the model (``source``, ``driver``)."""
    needs = []
    if job.source_iuv is None and source_iuv_sidecar(job.source) is None:
        needs.append(("source", job.source))
    if driver_iuv_path(job) is None and job.densepose_backend != "precomputed":
        needs.append(("driver", job.driver))
    if job.garment is not None and job.garment_iuv is None and source_iuv_sidecar(job.garment) is None:
        needs.append(("garment", job.garment))
    return needs


def check_densepose_weights(job: VideoJob, needs: list[tuple[str, Path]] | None = None) -> None:
    """Fail before any work when an input needs DensePose from the model and no weights exist.

    Only the default model backend is checked (``detectron2`` finds its weights itself), and only for
    inputs that exist (a missing file gets its own error). The error is one line naming every input
    that needs DensePose and this command's options.
    """
    needs = [(role, path) for role, path in (densepose_needs(job) if needs is None else needs)
             if Path(path).is_file()]
    if not needs or job.densepose_weights is not None or job.densepose_backend not in ("auto", "torchvision"):
        return
    from densepose_adapter.rcnn import ConfigError, load_config
    from retarget.weights import resolve_densepose_weights

    try:
        depth = load_config(job.densepose_config).depth
    except ConfigError:
        return  # the backend reports the bad config when it is built
    try:
        resolve_densepose_weights(None, f"r{depth}")
    except DensePoseWeightsMissing as exc:
        from retarget.weights.resolve import densepose_missing_message

        raise WeightsError(densepose_missing_message(exc.model, needs, job.options.command)) from None


def driver_densepose(job: VideoJob, model_backend=None):
    """The DensePose stage for the driver (precomputed IUV when given/found, else a cached model), on
    keyframes only unless ``job.options.densepose_every`` is 1, behind the temporal filter unless
    ``job.options.temporal_radius`` is 0."""
    from retarget.pipeline.keyframes import with_keyframes
    from retarget.pipeline.temporal import with_temporal_filter

    stage = with_keyframes(_raw_driver_densepose(job, model_backend), job.driver, job.options.keyframe_interval())
    return with_temporal_filter(stage, job.driver, job.options.temporal_radius)


def _raw_driver_densepose(job: VideoJob, model_backend=None) -> FrameDensePose:
    iuv_path = driver_iuv_path(job)
    if job.densepose_backend == "precomputed" and iuv_path is None:
        from retarget.weights.resolve import precomputed_hint

        raise UsageError(f"{job.driver}: the precomputed DensePose backend needs the driver's IUV: "
                         f"{precomputed_hint(job.options.command, 'driver', job.driver)}")
    if iuv_path is not None:
        from densepose_adapter.precomputed import PrecomputedIUV

        try:
            return FrameDensePose(PrecomputedIUV(iuv_path))
        except ValueError as exc:
            raise InputError(str(exc)) from None
    backend = model_backend or _model_backend(job, "driver")
    if hasattr(backend, "reset_tracking"):
        backend.reset_tracking()
    return FrameDensePose(backend, DensePoseCache(job.driver, backend.cache_key()))


def _model_backend(job: VideoJob, role: str, track: bool | None = None):
    """The DensePose model for ``role`` (``source`` or ``driver``); missing weights name that input."""
    name = "torchvision" if job.densepose_backend in ("auto", "precomputed") else job.densepose_backend
    try:
        if track is None:
            track = driver_tracking(job.densepose_track, job.options.person)
        return open_model_backend(name, job.densepose_weights, job.densepose_size, job.options.device,
                                  job.densepose_config, track, engine=job.options.engine,
                                  quiet=job.options.quiet)
    except DensePoseWeightsMissing as exc:
        from retarget.weights.resolve import densepose_missing_message

        path = {"source": job.source, "garment": job.garment}.get(role, job.driver)
        raise WeightsError(densepose_missing_message(exc.model, [(role, path)], job.options.command)) from None


def load_source(job: VideoJob, model_backend=None, role: str = "source"):
    """Read and frame the source photo (IUV from ``--source-iuv``, its sidecar or the DensePose model);
    with ``role="garment"`` the garment photo (``--garment``, ``--garment-iuv``). The IUV → UV table is the job's;
    ``auto`` still unresolved (no :func:`with_resolved_table` before) is read as the weight-free path's."""
    from retarget.io.image import MIN_SIDE, read_image_rgb
    from retarget.pipeline.source import frame_source
    from retarget.uvmap import resolve_table

    if role == "garment":
        job = dataclasses.replace(job, source=job.garment, source_iuv=job.garment_iuv)
    photo = read_image_rgb(job.source, min_side=MIN_SIDE, allow_large=job.allow_large)
    iuv_path = job.source_iuv or source_iuv_sidecar(job.source)
    iuv = uv = None
    if iuv_path is not None:
        if Path(iuv_path).suffix == ".npy":
            from retarget.io.iuv import read_uv_npy

            uv = read_uv_npy(iuv_path)
        else:
            from retarget.io.iuv import read_iuv_png

            iuv = read_iuv_png(iuv_path, size=(photo.shape[1], photo.shape[0]), size_of="the photo")
        dense = iuv if iuv is not None else uv
        if dense.shape[:2] != photo.shape[:2]:
            raise InputError(f"{iuv_path}: DensePose map is {dense.shape[1]}x{dense.shape[0]} but the photo "
                             f"is {photo.shape[1]}x{photo.shape[0]}; it must be computed on the same image")
    else:
        backend = model_backend or _model_backend(job, role, track=False)
        if hasattr(backend, "reset_tracking"):
            backend.reset_tracking()
        result = backend.predict([np.ascontiguousarray(photo[..., ::-1])])[0]
        if len(result.boxes) > 1:
            print(f"note: {job.source}: {len(result.boxes)} people found; using the largest", file=sys.stderr)
        iuv = result.iuv
        if len(result.boxes) > 1:
            from retarget.pipeline.framing import pick_person
            from retarget.pipeline.people import person_mask

            largest = pick_person(np.asarray(result.boxes).reshape(-1, 4), None)
            iuv = iuv * person_mask(iuv, np.asarray(result.boxes[largest]))[..., None]
    try:
        table = resolve_table(job.options.table, weight_free=True)  # a resolved table stays as it is
        return frame_source(photo, iuv=iuv, uv=uv, size=job.size, table=table)
    except ValueError as exc:
        if role == "garment" and "no person" in str(exc):
            raise InputError(f"{job.source}: no person found in the garment photo; the garment must be worn by a "
                             "person whose DensePose is found (or given as its IUV)") from None
        raise InputError(f"{job.source}: {exc}") from None


def edit_source(job: VideoJob, state, models: Models | None, model_backend=None):
    """The source state a job renders: ``state`` itself, or with the job's ``texture`` (an edited texture
    file) or ``garment`` (another photo's clothes) applied (:mod:`retarget.pipeline.texture`)."""
    from retarget.pipeline.source import prepare_source_crop
    from retarget.pipeline.texture import read_texture, size_hint, with_garment, with_texture

    job = with_resolved_table(job, models)  # the garment photo's IUV → UV, as the path's
    if job.texture is not None:
        th, tw = state.pred_textures.shape[-2:]
        return with_texture(state, read_texture(job.texture, (th, tw), size_hint(tw, job.options.command)), models)
    if job.garment is None:
        return state
    garment = prepare_source_crop(load_source(job, model_backend, role="garment"), models, job.options.device,
                                  fill=job.options.fill)
    return with_garment(state, garment, job.garment_region, models, job.garment)


def check_job_options(job: VideoJob) -> None:
    """The job's settings, before any work: :meth:`VideoOptions.validate` and the bounded numbers
    (:mod:`retarget.pipeline.bounds`: ``size``, ``densepose_size``; ``batch_size`` is in the options)."""
    from retarget.pipeline.bounds import check_bounds

    job.options.validate()
    check_bounds("size", job.size)
    check_bounds("densepose_size", job.densepose_size)


def job_inputs(job: VideoJob, plan=None):
    """Add every input of ``job`` to ``plan`` (a :class:`retarget.io.guard.PathPlan`, default a new one),
    sidecars included; a ``source`` or ``driver`` of ``Path("-")`` (none: ``texture``, ``frames
    --only-densepose``) is skipped. Returns the plan. See :func:`job_paths`."""
    from retarget.io.guard import PathPlan

    plan = plan if plan is not None else PathPlan()
    image, none = "an image file", Path("-")
    if job.source != none:
        plan.input(job.source, noun=image)
        plan.input(job.source_iuv or source_iuv_sidecar(job.source), role="source IUV",
                   noun="an IUV PNG or UV .npy")
    if job.driver != none:
        plan.input(job.driver, noun="a video file")
        plan.input(driver_iuv_path(job), role="driver IUV", noun="a folder of IUV PNGs or an .npz",
                   kind="file_or_folder")
    plan.input(job.texture, role="texture", noun=image)
    plan.input(job.garment, role="garment photo", noun=image)
    if job.garment is not None:
        plan.input(job.garment_iuv or source_iuv_sidecar(job.garment), role="garment IUV",
                   noun="an IUV PNG or UV .npy")
    return plan


def job_paths(job: VideoJob, plan=None):
    """Every input and output path of ``job``, resolved and checked before any work (:mod:`retarget.io.guard`).

    Inputs: the source photo, the driver, ``--source-iuv`` / ``--driver-iuv``, ``--texture``,
    ``--garment`` / ``--garment-iuv``, and the sidecars that would be read (``<photo>_IUV.png``,
    ``<driver>.iuv/`` or ``<driver>.iuv.npz``, ``<garment>_IUV.png``). Outputs: the output video (or PNG
    sequence) and, with ``keep_partial``, its ``.partial`` twin. Inputs must be regular files (folders where a
    folder is allowed), outputs new or regular files, and no output may be an input, whatever
    ``job.overwrite`` says.

    Args:
        plan: a :class:`retarget.io.guard.PathPlan` to add to (a batch checks several jobs' outputs
            against each other); default a new one.

    Returns:
        the plan.

    Raises:
        InputError: a missing or special input, an unusable output path (exit 1).
        UsageError: an output that is an input, or exists without ``overwrite`` (exit 2).
    """
    from retarget.io.output import check_output

    plan = job_inputs(job, plan)
    spec = job.output_spec()
    for output in (spec, spec.partial()) if job.options.keep_partial else (spec,):
        if output.is_sequence:  # a PNG sequence: its frames and sidecar (retarget/io/output.py)
            check_output(output, overwrite=job.overwrite, inputs=list(plan.inputs.values()))
        else:
            plan.output(output.path, overwrite=job.overwrite)
    return plan


def with_resolved_table(job: VideoJob, models: Models | None) -> VideoJob:
    """``job`` with ``--table auto`` resolved for its path (:func:`retarget.uvmap.resolve_table`: ``clean``
    weight-free, ``models=None``; ``training`` with the learned networks)."""
    from retarget.uvmap import resolve_table

    table = resolve_table(job.options.table, models is None)
    return job if table == job.options.table else dataclasses.replace(
        job, options=dataclasses.replace(job.options, table=table))


def run_video_job(job: VideoJob, models: Models | None, model_backend=None, on_frame=None,
                  on_source=None) -> VideoSummary:
    """Run one job end to end; ``models=None`` is the weight-free path. ``on_frame(index, rgb)`` is called
    for every output frame (:func:`retarget.pipeline.video.render_video`), ``on_source(state)`` with the
    prepared source (:class:`retarget.pipeline.pair.SourceState`, texture edits applied) before the driver
    is read (``retarget ui`` shows its texture)."""
    from retarget.io.video import check_driver_size, probe_video
    from retarget.pipeline.source import prepare_source_crop
    from retarget.pipeline.texture import check_source_edits

    check_job_options(job)
    job = with_resolved_table(job, models)
    output = job.output_spec()
    job_paths(job)
    info = probe_video(job.driver)  # fail fast on a bad driver, before any model work
    check_driver_size(info, job.driver)
    if info.truncated and not job.options.keep_partial:
        hint = ", or pass --keep-partial to render the frames it holds" if job.options.command == "video" else ""
        raise InputError(f"{job.driver}: the file is truncated (an interrupted download or copy?); get the "
                         f"complete file{hint}")
    check_source_edits(job)
    if model_backend is None:
        check_densepose_weights(job)
    source = load_source(job, model_backend)
    state = prepare_source_crop(source, models, job.options.device, fill=job.options.fill)
    state = edit_source(job, state, models, model_backend)
    if on_source is not None:
        on_source(state)
    densepose = driver_densepose(job, model_backend)
    return render_video(source, state, job.driver, output, densepose, models, job.options, on_frame=on_frame,
                        overwrite=job.overwrite)
