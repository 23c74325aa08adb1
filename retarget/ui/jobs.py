"""The jobs of ``retarget ui``, without Gradio: uploads and settings → the ``retarget video`` job.

A render is :func:`retarget.pipeline.job.run_video_job`, the function ``retarget video`` runs, on a
:class:`~retarget.pipeline.job.VideoJob` built from the page's inputs (:func:`make_job`) with the
command's defaults (:class:`Settings`), so the same inputs and settings give the same output video.
Uploads are copied under fixed names into a fresh run folder (``source.jpg``, ``driver.mp4``,
``source-iuv.png``, ``driver-iuv.npz`` or ``driver-iuv/`` from a zip of ``*_IUV.png``), so that no
sidecar of an earlier upload is picked up by accident and messages name short paths.

Progress: :func:`run_job` listens to the pipeline's progress bars (:func:`retarget.io.progress.progress_listener`:
``1/2 DensePose + track person`` or ``1/2 read IUV + track person``, then ``2/2 render``) and
raises :class:`Cancelled` from the next frame once its ``cancel`` event is set; the output is written
atomically by the pipeline, so a cancelled run leaves no video.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from retarget.errors import InputError, RetargetError, UsageError

#: Accepted upload types (lower-case suffixes).
PHOTO_TYPES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_TYPES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
#: A zip of driver IUV PNGs: at most this many members (a 10-minute clip at 60 fps)
MAX_ZIP_MEMBERS = 36_000
SOURCE_PREPARE_LABEL = "0/2 prepare the source photo"


class Cancelled(Exception):
    """The page's Cancel button stopped the job (raised between frames)."""


@dataclass(frozen=True)
class Limits:
    """What one render accepts: the size of each upload and the driver's duration (``retarget ui
    --max-upload-mb``, ``--max-seconds``)."""

    max_upload_mb: float = 200.0
    max_seconds: float = 60.0

    def check_upload(self, path: Path, what: str) -> None:
        size_mb = Path(path).stat().st_size / 1e6
        if size_mb > self.max_upload_mb:
            raise InputError(f"{what} is {size_mb:.3g} MB; this page accepts uploads up to {self.max_upload_mb:g} MB "
                             "(start it with `retarget ui --max-upload-mb N` for more)")

    def check_duration(self, info, path: Path) -> None:
        seconds = float(info.duration) or (info.frame_count / float(info.fps) if info.fps else 0.0)
        if seconds > self.max_seconds:
            raise InputError(f"{Path(path).name}: the driving video is {seconds:.1f} s long; this page renders up to "
                             f"{self.max_seconds:g} s (trim it, or start the page with `retarget ui --max-seconds N`)")


@dataclass
class Settings:
    """The page's settings; the defaults are ``retarget video``'s (tests/test_ui.py checks them)."""

    person: str = "largest"
    background: str = "scene"
    output_mode: str = "frame"
    side_by_side: bool = False
    weight_free: bool = False
    fill: str = "body"
    engine: str = "auto"
    precision: str = "auto"
    densepose_size: int = 800
    size: int = 256
    on_missing: str = "hold"

    def options(self, device: str = "cpu"):
        """The :class:`retarget.pipeline.video.VideoOptions` that ``retarget video`` builds from the same
        settings (``command="ui"``: messages name the page's inputs; quiet: no bars on the server's terminal)."""
        from retarget.pipeline.video import VideoOptions

        return VideoOptions(device=device, background=str(self.background).strip(), output_mode=self.output_mode,
                            on_missing=self.on_missing, side_by_side=bool(self.side_by_side), quiet=True,
                            precision=self.precision, fill=self.fill, person=str(self.person).strip(),
                            engine=self.engine, command="ui")


def _suffix(path: Path, allowed: tuple[str, ...], what: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise InputError(f"{what} {Path(path).name!r}: expected one of {', '.join(allowed)}")
    return suffix


def _copy(upload: str | Path, dest: Path, limits: Limits, what: str) -> Path:
    upload = Path(upload)
    if not upload.is_file():
        raise InputError(f"{what}: the upload {upload.name!r} is missing; upload it again")
    limits.check_upload(upload, what)
    shutil.copyfile(upload, dest)
    return dest


def unpack_driver_iuv(upload: Path, run_dir: Path, limits: Limits) -> Path:
    """The driver IUV as the pipeline reads it: an ``.npz`` as it is, a ``.zip`` of ``*_IUV.png`` extracted
    (file names only, no folders kept; other members ignored) into ``run_dir/driver-iuv/``."""
    suffix = _suffix(upload, (".npz", ".zip"), "driver IUV")
    if suffix == ".npz":
        return _copy(upload, run_dir / "driver-iuv.npz", limits, "driver IUV")
    limits.check_upload(upload, "driver IUV")
    folder = run_dir / "driver-iuv"
    folder.mkdir()
    budget = limits.max_upload_mb * 1e6 * 4  # unpacked: PNGs barely compress further; a zip bomb stops here
    try:
        with zipfile.ZipFile(upload) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and m.filename.endswith("_IUV.png")]
            if not members:
                raise InputError(f"driver IUV {Path(upload).name!r}: the zip holds no *_IUV.png files")
            if len(members) > MAX_ZIP_MEMBERS or sum(m.file_size for m in members) > budget:
                raise InputError(f"driver IUV {Path(upload).name!r}: the zip unpacks to too much "
                                 f"({len(members)} files, {sum(m.file_size for m in members) / 1e6:.0f} MB)")
            for member in members:
                name = Path(member.filename.replace("\\", "/")).name
                with archive.open(member) as src, open(folder / name, "xb") as dst:
                    shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, FileExistsError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise InputError(f"driver IUV {Path(upload).name!r}: not a usable zip of *_IUV.png ({exc})") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def make_job(source: str | Path | None, driver: str | Path | None, source_iuv: str | Path | None,
             driver_iuv: str | Path | None, settings: Settings, run_dir: Path, *, limits: Limits = Limits(),
             device: str = "cpu"):
    """Copy the uploads into the new folder ``run_dir`` and make the job ``retarget video`` would run on them.

    Raises:
        InputError: a missing upload, a wrong file type, an upload or a driver over ``limits``.
        UsageError: a bad setting (the messages of ``retarget video``'s options).
    """
    from retarget.io.video import probe_video
    from retarget.pipeline.job import VideoJob

    if source is None:
        raise InputError("give a source photo (upload one, take a webcam snapshot, or click the example)")
    if driver is None:
        raise InputError("give a driving video (upload one, or click the example)")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True)
    photo = _copy(source, run_dir / ("source" + _suffix(source, PHOTO_TYPES, "source photo")), limits, "source photo")
    video = _copy(driver, run_dir / ("driver" + _suffix(driver, VIDEO_TYPES, "driving video")), limits,
                  "driving video")
    photo_iuv = None
    if source_iuv is not None:
        _suffix(source_iuv, (".png",), "source IUV")
        photo_iuv = _copy(source_iuv, run_dir / "source-iuv.png", limits, "source IUV")
    video_iuv = unpack_driver_iuv(Path(driver_iuv), run_dir, limits) if driver_iuv is not None else None
    limits.check_duration(probe_video(video), video)
    try:
        densepose_size, size = int(settings.densepose_size), int(settings.size)
    except (TypeError, ValueError):
        raise UsageError(f"DensePose size {settings.densepose_size!r} and crop size {settings.size!r} must be "
                         "whole numbers") from None
    job = VideoJob(source=photo, driver=video, output=run_dir / "result.mp4", source_iuv=photo_iuv,
                   driver_iuv=video_iuv, size=size, densepose_size=densepose_size,
                   options=settings.options(device))
    return job


@dataclass
class RunResult:
    """What one render made: the video, the person's texture (PNG), the pipeline's summary."""

    job: object  # the VideoJob
    output: Path
    texture: Path | None
    summary: object  # VideoSummary
    models_learned: bool = False


ProgressFn = Callable[[str, int, "int | None"], None]


def run_job(job, models, *, progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> RunResult:
    """Render ``job`` with :func:`retarget.pipeline.job.run_video_job` (``models`` None: weight-free), writing
    the person's completed colour texture beside the output (``texture.png``).

    ``progress(stage, done, total)`` follows the stages; ``cancel`` set: :class:`Cancelled` at the next frame
    (the pipeline's atomic output leaves no video).
    """
    from retarget.io.image import write_image_rgb
    from retarget.io.progress import progress_listener
    from retarget.pipeline.job import run_video_job
    from retarget.pipeline.texture import export_texture

    def listen(stage: str, done: int, total: int | None) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if progress is not None:
            progress(stage, done, total)

    texture = Path(job.output).with_name("texture.png")
    made: list[Path] = []

    def on_source(state) -> None:
        write_image_rgb(texture, export_texture(state).rgb)
        made.append(texture)
        listen(SOURCE_PREPARE_LABEL, 1, 1)

    listen(SOURCE_PREPARE_LABEL, 0, 1)
    with progress_listener(listen):
        summary = run_video_job(job, models, on_source=on_source)
    return RunResult(job=job, output=Path(summary.output), texture=made[0] if made else None, summary=summary,
                     models_learned=bool(models is not None and getattr(models, "learned", False)))


def people_preview(driver: Path, driver_iuv: Path | None, settings: Settings, run_dir: Path,
                   *, limits: Limits = Limits(), device: str = "cpu", max_frames: int = 100):
    """The driver's people numbered from the left (``--person N``), on the first frame where people are found,
    the one the ``person`` setting picks in yellow.

    Returns:
        ``(rgb uint8 image, caption, numbers)``; ``numbers`` is ``["1", "2", ...]``.
    """
    import numpy as np

    from retarget.inspect import visual
    from retarget.io.video import iter_frames, probe_video
    from retarget.pipeline.job import VideoJob, check_densepose_weights, driver_densepose
    from retarget.pipeline.people import (
        PersonChoice,
        describe_people,
        find_people,
        first_choice,
        numbers_from_left,
        splits_by_blobs,
    )

    if driver is None:
        raise InputError("give a driving video first (upload one, or click the example)")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True)
    video = _copy(driver, run_dir / ("driver" + _suffix(driver, VIDEO_TYPES, "driving video")), limits,
                  "driving video")
    video_iuv = unpack_driver_iuv(Path(driver_iuv), run_dir, limits) if driver_iuv is not None else None
    info = probe_video(video)
    limits.check_duration(info, video)
    options = dataclasses.replace(settings.options(device), temporal_radius=0, densepose_every="1")
    choice = PersonChoice.parse(options.person)
    job = VideoJob(source=Path("-"), driver=video, driver_iuv=video_iuv, densepose_size=int(settings.densepose_size),
                   densepose_track=False, options=options)  # every person of the frame: no tracked region
    check_densepose_weights(job, [("driver", video)] if video_iuv is None else [])
    densepose = driver_densepose(job)
    split = splits_by_blobs(densepose)
    for frame in iter_frames(video, info.rotation):
        if frame.index >= max_frames:
            break
        result = densepose.results([frame.index], [frame.rgb])[0]
        people = find_people(result.iuv, result.boxes, split, result.scores)
        if len(people) == 0:
            continue
        numbers = numbers_from_left(people)
        try:
            chosen = first_choice(people, choice, frame.index, info.width, info.height)
        except InputError:
            chosen = None
        image = visual.draw_boxes(frame.rgb, people.boxes, chosen, numbers)
        picked = f"person {numbers[chosen]} (yellow) is replaced" if chosen is not None else (
            f"person {choice} is not in this frame")
        caption = (f"frame {frame.index}: {len(people)} {'person' if len(people) == 1 else 'people'}, numbered "
                   f"from the left ({describe_people(people)}); {picked}")
        return np.ascontiguousarray(image), caption, [str(n) for n in range(1, len(people) + 1)]
    looked = min(max_frames, info.frame_count or max_frames)
    raise InputError(f"{Path(driver).name}: no person found in its first {looked} frames")


def stage_frames(result: RunResult, frame: int, out_dir: Path, models):
    """``retarget frames`` for one frame of a finished render (same job and settings): every stage as PNGs,
    a contact sheet and ``index.html`` in the new folder ``out_dir``
    (:func:`retarget.inspect.frames.extract_frames`). Returns its :class:`~retarget.inspect.frames.FramesResult`."""
    from retarget.inspect.frames import FrameSelection, extract_frames

    if frame < 0:
        raise UsageError(f"frame {frame}: frames are numbered from 0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True)
    job = dataclasses.replace(result.job, options=dataclasses.replace(result.job.options, side_by_side=False))
    return extract_frames(job, out_dir, FrameSelection(indices=(int(frame),)), models, quiet=True)


def public_message(exc: BaseException, run_root: Path | None = None) -> str:
    """One line for the page: the error's message with the session folder cut from its paths."""
    if isinstance(exc, Cancelled):
        return "cancelled; nothing was kept"
    if isinstance(exc, RetargetError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc}" + (f": {Path(exc.filename).name}" if exc.filename else "")
    elif isinstance(exc, MemoryError):
        text = "out of memory; try a shorter or smaller driving video, or a smaller crop size"
    else:
        text = f"internal error ({type(exc).__name__}: {exc}); the server's log has the details"
    if run_root is not None:
        text = text.replace(str(run_root) + "/", "").replace(str(run_root), "")
    return " ".join(text.split())
