"""``retarget frames``: every intermediate image of a job, for the source once and for chosen frames.

Source (``source/``): the framed photo, its DensePose IUV and SMPL-UV, the partial coordinate
texture with its coverage mask, the completed coordinate texture, the partial and completed colour
textures; ``legend.png`` explains the colour codes.

Per selected frame (``frame_<index>/``): driver frame, driver IUV (whole frame, boxes drawn),
target UV (person crop), warped coarse image, refined crop, final composite, and ``sheet.png`` (all of
them labelled). ``index.html`` shows everything in a grid.

The frames are rendered exactly as ``retarget video`` renders them: the whole driver is analysed
first (DensePose of every frame, cached; smoothed crop track; scene plate), then only the selected
frames are warped/refined and composited.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from retarget.errors import InputError, UsageError
from retarget.inspect import visual
from retarget.io.image import write_image_rgb
from retarget.pipeline.people import find_people, numbers_from_left, splits_by_blobs


@dataclass
class FrameSelection:
    """Which frames: ``start:stop[:step]`` (stop exclusive, open ends allowed), a list, or every N."""

    start: int = 0
    stop: int | None = None
    step: int = 1
    indices: tuple[int, ...] | None = None

    def __contains__(self, index: int) -> bool:
        if self.indices is not None:
            return index in self.indices
        if index < self.start or (self.stop is not None and index >= self.stop):
            return False
        return (index - self.start) % self.step == 0

    def last(self) -> int | None:
        if self.indices is not None:
            return max(self.indices)
        return None if self.stop is None else self.stop - 1

    def first(self) -> int:
        return min(self.indices) if self.indices is not None else self.start

    def beyond(self, count: int) -> str:
        """A note naming the selected frames a video of ``count`` frames does not have ("" if none)."""
        if self.indices is not None:
            out = [i for i in self.indices if i >= count]
            if not out:
                return ""
            shown = ", ".join(map(str, out[:5])) + (f" and {len(out) - 5} more" if len(out) > 5 else "")
            return f"frame{'s' * (len(out) > 1)} {shown} {'are' if len(out) > 1 else 'is'} beyond the video's " \
                   f"{count} frames (0..{count - 1}); skipped"
        if self.stop is not None and self.stop > max(count, self.start):
            return f"frames {max(count, self.start)}..{self.stop - 1} are beyond the video's {count} frames; skipped"
        return ""


_RANGE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*(?::\s*(\d+)\s*)?$")


def parse_selection(frames: str | None, every: int | None, frame_count: int) -> FrameSelection:
    """``--frames`` / ``--every`` → a selection; neither: 8 frames spread over the clip (or every 25th).

    Raises:
        UsageError: both given, or a malformed value.
    """
    if frames is not None and every is not None:
        raise UsageError("give --frames or --every, not both")
    if every is not None:
        if every < 1:
            raise UsageError(f"--every must be at least 1, got {every}")
        return FrameSelection(step=every)
    if frames is None:
        if frame_count > 0:
            picks = sorted({int(round(x)) for x in np.linspace(0, frame_count - 1, min(8, frame_count))})
            return FrameSelection(indices=tuple(picks))
        return FrameSelection(step=25)
    text = frames.strip()
    match = _RANGE.match(text)
    if match:
        start = int(match.group(1)) if match.group(1) else 0
        stop = int(match.group(2)) if match.group(2) else None
        step = int(match.group(3)) if match.group(3) else 1
        if step < 1 or (stop is not None and stop <= start):
            raise UsageError(f"--frames {frames}: empty range (use START:STOP with STOP > START, STEP ≥ 1)")
        return FrameSelection(start=start, stop=stop, step=step)
    try:
        indices = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise UsageError(f"--frames {frames}: expected START:STOP[:STEP], or frame numbers like 3,10,42") from None
    if not indices or min(indices) < 0:
        raise UsageError(f"--frames {frames}: expected START:STOP[:STEP], or frame numbers like 3,10,42")
    return FrameSelection(indices=indices)


@dataclass
class Figure:
    path: str  # relative to the output folder
    caption: str


@dataclass
class FrameEntry:
    index: int
    time: float
    figures: list[Figure]
    sheet: str
    note: str = ""


@dataclass
class FramesResult:
    """What :func:`extract_frames` wrote."""

    out_dir: Path
    index_html: Path
    source: list[Figure] = field(default_factory=list)
    frames: list[FrameEntry] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""  # e.g. selected frames the video does not have

    @property
    def files(self) -> list[Path]:
        paths = [self.out_dir / f.path for f in self.source]
        for entry in self.frames:
            paths += [self.out_dir / f.path for f in entry.figures] + [self.out_dir / entry.sheet]
        return paths + [self.index_html]


def prepare_out_dir(out_dir: Path, overwrite: bool, inputs) -> Path:
    """Create ``out_dir``; a non-empty one needs ``overwrite``; it must not be, or hold, an input.

    Args:
        inputs: a :class:`retarget.io.guard.PathPlan` holding the inputs, or a list of input paths.

    Raises:
        InputError: ``out_dir`` is a file (or a device, a FIFO), or its parent folder does not exist.
        UsageError: it holds an input (with ``--overwrite`` this run could replace it), or is not empty
            without ``overwrite``.
    """
    from retarget.io.guard import PathPlan, real_path

    out_dir = Path(out_dir)
    plan = inputs
    if not isinstance(plan, PathPlan):
        plan = PathPlan()
        for item in inputs:
            if item is not None and Path(item).exists():
                plan.inputs.setdefault(real_path(item), Path(item))
    plan.output_folder(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UsageError(f"{out_dir}: folder is not empty; pass --overwrite to write into it")
    out_dir.mkdir(exist_ok=True)
    return out_dir


def prepare_frames_job(driver: Path, out: Path, *, source: Path | None = None, frames: str | None = None,
                       every: int | None = None, only_densepose: bool = False, overwrite: bool = False,
                       options=None, **job_fields) -> tuple:
    """Check the arguments of ``retarget frames`` and get everything ready before any image work.

    Checks the source/``only_densepose`` combination and ``options``, probes the driver, parses the
    selection (``frames`` / ``every``), fails early when DensePose weights are needed and missing, and
    creates ``out`` (see :func:`prepare_out_dir`).

    Args:
        options: :class:`retarget.pipeline.video.VideoOptions` (``command="frames"``).
        job_fields: further :class:`retarget.pipeline.job.VideoJob` fields (``size``, ``source_iuv``,
            ``driver_iuv``, ``densepose_*``, ``allow_large``, ``texture``, ``garment*``); unknown ones are ignored.

    Returns:
        ``(job, selection, out)`` for :func:`extract_frames` or :func:`extract_densepose_frames`.
    """
    from retarget.io.video import check_driver_size, probe_video
    from retarget.pipeline.job import VideoJob, check_densepose_weights, densepose_needs, job_inputs
    from retarget.pipeline.texture import check_source_edits

    if only_densepose and source is not None:
        raise UsageError("--only-densepose shows the driver's DensePose alone; leave out --source")
    if not only_densepose and source is None:
        raise UsageError("give --source (or --only-densepose to inspect the driver's DensePose alone)")
    from retarget.pipeline.bounds import check_bounds

    check_bounds("size", job_fields.get("size", 256))
    check_bounds("densepose_size", job_fields.get("densepose_size", 800))
    options.validate()
    info = probe_video(driver)
    check_driver_size(info, driver)
    selection = parse_selection(frames, every, info.frame_count)
    values = dict(job_fields, source=source or Path("-"), driver=driver, options=options)
    names = {f.name for f in dataclasses.fields(VideoJob)}
    job = VideoJob(**{k: v for k, v in values.items() if k in names})
    plan = job_inputs(job)  # every input (sidecars too) is a regular file, and none lies in the output folder
    plan.output_folder(out)
    check_source_edits(job)  # --texture / --garment (retarget/pipeline/texture.py)
    needs = densepose_needs(job)
    check_densepose_weights(job, [n for n in needs if n[0] == "driver"] if only_densepose else needs)
    return job, selection, prepare_out_dir(out, overwrite, plan)


class _Writer:
    """Writes the images of one run into ``root``, remembering what it created, so that a failed run can
    remove exactly that (:meth:`discard`) and a corrected rerun does not find the folder "not empty"."""

    def __init__(self, root: Path):
        self.root = root
        self.created: list[Path] = []  # files and folders this run made, in creation order

    def __call__(self, rel: str, image: np.ndarray, caption: str, into: list[Figure] | None = None) -> Figure:
        path = self.root / rel
        for folder in reversed([path.parent, *path.parent.parents]):
            if folder == self.root or self.root in folder.parents:
                if not folder.exists():
                    folder.mkdir()
                    self.created.append(folder)
        existed = path.exists()
        write_image_rgb(path, np.ascontiguousarray(image))
        if not existed:
            self.created.append(path)
        figure = Figure(rel, caption)
        if into is not None:
            into.append(figure)
        return figure


    def discard(self) -> None:
        """Remove the files and folders this run created (newest first); files it replaced stay replaced."""
        import contextlib

        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        self.created.clear()


def _chw(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t[0].detach().float().cpu().numpy()


def write_source_stages(source, state, write: _Writer) -> list[Figure]:
    """The source-only stages as viewable PNGs (plus ``legend.png``)."""
    figures: list[Figure] = []
    write("source/photo.png", source.image, "source photo (framed crop)", figures)
    if source.iuv is not None:
        write("source/iuv.png", visual.iuv_to_rgb(source.iuv), "source DensePose IUV", figures)
    write("source/uv.png", visual.coords_to_rgb(source.uv), "source SMPL-UV", figures)
    coverage = _chw(state.coverage)[0] > 0.5
    write("source/texture_xy_partial.png", visual.coords_to_rgb(_chw(state.source_xy_textures), coverage),
          "partial coordinate texture", figures)
    write("source/coverage.png", visual.mask_to_rgb(coverage), "coverage mask (texels seen)", figures)
    write("source/texture_xy_completed.png", visual.coords_to_rgb(_chw(state.completed_xy)),
          "completed coordinate texture" + ("" if state.learned else " (weight-free fill)"), figures)
    colour_partial = visual.float_to_rgb(_chw(state.source_textures))
    write("source/texture_colour_partial.png", np.where(coverage[..., None], colour_partial,
                                                        visual.checkerboard(*coverage.shape)),
          "partial colour texture", figures)
    write("source/texture_colour.png", visual.float_to_rgb(_chw(state.pred_textures)), "colour texture", figures)
    write("legend.png", visual.legend_image(source.image), "colour code legend", figures)
    return figures


def _select_frames_iter(driver: Path, rotation: int, selection: FrameSelection, lookback: int, limit: int):
    """Decoded frames (the runner's decode stage) from ``first - lookback`` up to the last selected one."""
    from retarget.pipeline.video import StageTimes, decode_stage

    last = selection.last()
    for frame in decode_stage(driver, rotation, limit if last is None else min(limit, last + 1), StageTimes()):
        if frame.index >= selection.first() - lookback:
            yield frame


def extract_frames(job, out_dir: Path, selection: FrameSelection, models=None, model_backend=None, *,
                   quiet: bool = False) -> FramesResult:
    """Write the source stages once and every stage of the selected frames of ``job`` into ``out_dir``.

    The frames go through the stages of ``retarget video`` (:mod:`retarget.pipeline.video`): pass 1
    over the whole driver, then decode → IUV crop → warp and refine → composite, one frame at a time.

    Args:
        job: a :class:`retarget.pipeline.job.VideoJob` (its output path is not used).
        out_dir: existing folder (see :func:`prepare_out_dir`).
        selection: frames to write.
        models: learned models or ``None`` (weight-free path).
        model_backend: DensePose model backend to use instead of opening one.
    """
    from retarget.io.video import probe_video
    from retarget.pipeline.job import with_resolved_table
    from retarget.pipeline.video import engine_models

    start = time.perf_counter()
    job = with_resolved_table(job, models)
    options = dataclasses.replace(job.options, side_by_side=False)
    options.validate()
    probe_video(job.driver)  # a bad driver fails before the source work
    models = engine_models(models, options, job.size, batch_size=1)  # --engine (one frame at a time)
    write = _Writer(Path(out_dir))
    try:
        return _extract_frames(job, selection, models, model_backend, options, write, start)
    except BaseException:
        write.discard()  # a failed run (--person 3 of one person, Ctrl-C ...) leaves nothing of its own
        raise


def _extract_frames(job, selection, models, model_backend, options, write, start) -> FramesResult:
    from retarget.pipeline.job import driver_densepose, edit_source, load_source
    from retarget.pipeline.source import prepare_source_crop
    from retarget.pipeline.video import CompositeStage, StageTimes, TargetStage, WarpRefineStage, plan_render

    out_dir = write.root
    source = load_source(job, model_backend)
    state = prepare_source_crop(source, models, options.device, fill=options.fill)
    state = edit_source(job, state, models, model_backend)  # --texture / --garment
    result = FramesResult(out_dir=Path(out_dir), index_html=Path(out_dir) / "index.html")
    result.source = write_source_stages(source, state, write)

    densepose = driver_densepose(job, model_backend)
    plan = plan_render(source, state, job.driver, densepose, models, options)  # pass 1
    times = StageTimes()
    targets, warp = TargetStage(plan, densepose, times), WarpRefineStage(state, models, plan.options, times)
    composite = CompositeStage(plan, times)
    for frame in _select_frames_iter(job.driver, plan.info.rotation, selection, plan.hold_frames,
                                     plan.track.frame_count):
        frame_job = targets([frame]).jobs[0]  # every frame from the look-back on: --on-missing hold
        if frame.index in selection:
            result.frames.append(write_frame_stages(job, plan, densepose, frame, frame_job, warp, composite, write))
    if not result.frames:
        raise InputError(f"{job.driver}: the selected frames are not in the video ({plan.track.frame_count} frames)")
    result.note = selection.beyond(plan.track.frame_count)
    result.seconds = time.perf_counter() - start
    from retarget.inspect.html import write_index

    write_index(result, title=f"retarget frames: {job.driver.name} as {job.source.name}",
                settings=_settings_line(job, models))
    return result


def write_frame_stages(job, plan, densepose, frame, frame_job, warp, composite, write: _Writer) -> FrameEntry:
    """Every stage of one driver frame as viewable PNGs and a labelled contact sheet.

    Args:
        plan: the :class:`retarget.pipeline.video.RenderPlan` (pass 1) of ``job``.
        frame_job: ``(index, crop, target UV, kept people)`` of ``frame`` from the target stage.
        warp, composite: the runner's warp/refine and composite stages.
    """
    _, crop, uv, keep = frame_job
    track, size, state = plan.track, plan.size, warp.state
    dp = densepose.results([frame.index], [frame.rgb])[0]
    box = track.boxes[frame.index] if frame.index < len(track.boxes) else None
    people = track.people(dp)
    chosen = people.match(box)
    numbers = numbers_from_left(people)
    folder = f"frame_{frame.index:06d}"
    figures: list[Figure] = []
    write(f"{folder}/driver.png", frame.rgb, f"driver frame {frame.index}", figures)
    write(f"{folder}/driver_people.png", visual.draw_boxes(frame.rgb, people.boxes, chosen, numbers),
          _people_caption(people, chosen, numbers, plan.options.person), figures)
    iuv_vis = visual.iuv_to_rgb(dp.iuv)
    shown = visual.blend(frame.rgb, iuv_vis, dp.iuv[..., 0] > 0, 0.85)
    write(f"{folder}/driver_iuv.png", visual.draw_boxes(shown, people.boxes, chosen, numbers),
          "driver DensePose IUV", figures)
    note = ""
    if uv is not None:
        batch = warp.details(uv)
        out_rgb = batch.output[0].permute(1, 2, 0).float().cpu().numpy()
        mask = batch.paste_alpha[0, 0].float().cpu().numpy()  # what `video` pastes
        write(f"{folder}/target_uv.png", visual.coords_to_rgb(uv), "target UV (person crop)", figures)
        write(f"{folder}/coarse.png", visual.float_to_rgb(_chw(batch.pred_img)), "warped coarse image", figures)
        refined_label = "refined crop" if state.learned else "output crop (weight-free: no refiner)"
        write(f"{folder}/refined.png", visual.float_to_rgb(out_rgb), refined_label, figures)
        person = (out_rgb, mask)
        if crop is not None and track.crop(frame.index) is None:
            note = "no person in this frame: last pose held"
    else:
        blank = visual.placeholder(size, size, "no person")
        write(f"{folder}/target_uv.png", blank, "target UV (no person)", figures)
        write(f"{folder}/coarse.png", blank, "warped coarse image (no person)", figures)
        write(f"{folder}/refined.png", blank, "refined crop (no person)", figures)
        person = None
        note = "no person in this frame"
    write(f"{folder}/final.png", composite.frame(frame, crop, person, keep), "final composite", figures)
    tiles = [(f.caption, np.asarray(_read(write.root / f.path))) for f in figures]
    title = f"{job.driver.name} frame {frame.index} ({frame.time:.2f} s) as {job.source.name}"
    if note:
        title += f" - {note}"
    sheet_rel = f"{folder}/sheet.png"
    write(sheet_rel, visual.contact_sheet(tiles, title), f"contact sheet, frame {frame.index}")
    return FrameEntry(frame.index, frame.time, figures, sheet_rel, note)


def extract_densepose_frames(job, out_dir: Path, selection: FrameSelection, model_backend=None) -> FramesResult:
    """``--only-densepose``: per selected frame the driver, its IUV, the IUV over the frame with the
    person boxes, and its SMPL-UV; a contact sheet each and ``index.html``."""
    start = time.perf_counter()
    write = _Writer(Path(out_dir))
    try:
        return _extract_densepose_frames(job, selection, model_backend, write, start)
    except BaseException:
        write.discard()
        raise


def _extract_densepose_frames(job, selection, model_backend, write, start) -> FramesResult:
    from retarget.io.video import iter_frames, probe_video
    from retarget.pipeline.job import driver_densepose
    from retarget.uvmap import iuv_to_uv, resolve_table

    table = resolve_table(job.options.table, weight_free=True)  # no render here: auto shows the weight-free table
    out_dir = write.root
    info = probe_video(job.driver)
    densepose = driver_densepose(job, model_backend)
    split_blobs = splits_by_blobs(densepose)
    result = FramesResult(out_dir=Path(out_dir), index_html=Path(out_dir) / "index.html")
    legend = visual.legend_image(None)
    result.source.append(write("legend.png", legend, "colour code legend"))
    last = selection.last()
    count = 0  # frames of the video (as far as read)
    for frame in iter_frames(job.driver, info.rotation):
        count = frame.index + 1
        if last is not None and frame.index > last:
            break
        if frame.index not in selection:
            continue
        dp = densepose.results([frame.index], [frame.rgb])[0]
        people = find_people(dp.iuv, dp.boxes, split_blobs, dp.scores)
        folder = f"frame_{frame.index:06d}"
        figures: list[Figure] = []
        write(f"{folder}/driver.png", frame.rgb, f"driver frame {frame.index}", figures)
        write(f"{folder}/driver_iuv.png", visual.iuv_to_rgb(dp.iuv), "DensePose IUV", figures)
        shown = visual.blend(frame.rgb, visual.iuv_to_rgb(dp.iuv), dp.iuv[..., 0] > 0, 0.6)
        write(f"{folder}/overlay.png", visual.draw_boxes(shown, people.boxes, None, numbers_from_left(people)),
              f"IUV over the frame ({len(people)} {'person' if len(people) == 1 else 'people'}, "
              "numbered from the left)", figures)
        write(f"{folder}/driver_uv.png", visual.coords_to_rgb(iuv_to_uv(dp.iuv, table=table)),
              f"SMPL-UV (table {table})", figures)
        tiles = [(f.caption, _read(write.root / f.path)) for f in figures]
        note = "" if dp.has_person else "no person found"
        title = f"{job.driver.name} frame {frame.index} ({frame.time:.2f} s)" + (f" - {note}" if note else "")
        sheet_rel = f"{folder}/sheet.png"
        write(sheet_rel, visual.contact_sheet(tiles, title, columns=2), f"contact sheet, frame {frame.index}")
        result.frames.append(FrameEntry(frame.index, frame.time, figures, sheet_rel, note))
    if not result.frames:
        raise InputError(f"{job.driver}: the selected frames are not in the video")
    result.note = selection.beyond(count)
    result.seconds = time.perf_counter() - start
    from retarget.inspect.html import write_index

    backend = "precomputed IUV" if densepose.precomputed else f"DensePose model ({densepose.calls} frames computed)"
    write_index(result, title=f"retarget frames: DensePose of {job.driver.name}", settings=backend)
    return result


def _read(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(image[..., ::-1])


def _settings_line(job, models) -> str:
    o = job.options
    path = "learned models" if models is not None and getattr(models, "learned", False) else "weight-free path"
    return (f"{path}; crop {job.size}px; background {o.background}; output mode {o.output_mode}; "
            f"on-missing {o.on_missing}; table {o.table}; person {o.person}")


def _people_caption(people, chosen: int | None, numbers: list[str], choice: str) -> str:
    """Caption of ``driver_people.png``: how many people, which one is replaced."""
    if len(people) == 0:
        return "people: none found"
    count = f"{len(people)} {'person' if len(people) == 1 else 'people'} (numbered from the left)"
    if chosen is None:
        return f"{count}; none replaced here (--person {choice})"
    return f"{count}; yellow: person {numbers[chosen]}, replaced (--person {choice})"
