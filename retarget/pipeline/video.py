"""The video runner: source once, driver streamed in two passes with bounded memory.

Pass 1 (analysis) decodes the driver, gets every frame's DensePose result (cached on disk per
frame), follows one person, smooths the crop track over time and, for ``--background scene``,
feeds a bounded set of frames to the background-plate estimator.

Pass 2 (render) is a chain of named stages: :func:`decode_stage` (a thread) → :class:`TargetStage`
(each frame's IUV crop to SMPL-UV) → :class:`WarpRefineStage` (warp/refiner on batches) →
:class:`CompositeStage` (the person back into the frame) → :class:`EncodeStage` (a thread). The
threads and their bounded queues are :class:`retarget.pipeline.stream.Stream`'s, so decode, compute
and encode overlap and memory does not grow with video length. The output is written to a temporary
file and renamed only on success. ``retarget frames`` runs the same stages on chosen frames.
See docs/architecture.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from retarget.errors import InputError, UsageError
from retarget.io.output import OutputSpec, check_codec_options, open_output, output_spec
from retarget.io.video import (
    VideoDecodeError,
    VideoFrame,
    VideoInfo,
    check_driver_size,
    iter_frames,
    probe_video,
)
from retarget.pipeline.background import ScenePlateEstimator, parse_colour, source_background
from retarget.pipeline.densepose_stage import FrameDensePose
from retarget.pipeline.precision import resolve_precision
from retarget.pipeline.framing import (
    SquareCrop,
    box_to_crop_params,
    crop_image,
    extend_colours,
    feather,
    paste_crop,
    smooth_track,
)
from retarget.pipeline.people import (
    People,
    PersonChoice,
    PersonTracker,
    find_people,
    keep_layers,
    person_mask,
    splits_by_blobs,
)
from retarget.pipeline.pair import FILLS, Models, SourceState, render_targets
from retarget.pipeline.source import SourceCrop
from retarget.pipeline.steady import DEFAULT_STEADY, OutputSteadier, check_steady
from retarget.pipeline.stream import Stream

BACKGROUNDS = ("scene", "source")
OUTPUT_MODES = ("frame", "crop")
ON_MISSING = ("hold", "background", "skip")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
MAX_TEMPORAL_RADIUS = 8


@dataclass
class VideoOptions:
    """Settings of :func:`render_video` (the CLI flags of ``retarget video``)."""

    batch_size: int = 4
    device: str = "cpu"
    background: str = "scene"  # scene | source | #RRGGBB
    output_mode: str = "frame"  # frame | crop
    on_missing: str = "hold"  # hold | background | skip
    hold_seconds: float = 0.5
    table: str = "auto"  # IUV→UV table; auto: clean weight-free, training with the networks (uvmap.resolve_table)
    smooth_sigma_seconds: float = 0.08
    feather_px: float = 1.5  # at crop resolution
    side_by_side: bool = False
    quiet: bool = False
    keep_partial: bool = False
    precision: str = "fp32"  # per-frame refiner arithmetic: fp32 (reference numerics), bf16, fp16 (CUDA), int8, auto
    # (auto: with --engine auto, engine and precision from a measured probe, retarget.engine.auto; the CLI's default)
    fill: str = "body"  # weight-free texture completion: body | nearest
    command: str = "video"  # the command running: the options messages name are that command's
    temporal_radius: int = 2  # driver IUV temporal filter: frames each side (look-ahead); 0 = off
    person: str = "largest"  # driver person to replace: largest | center | left | right | N (from the left, 1-based)
    engine: str = "auto"  # per-frame refiner engine: auto | torch | openvino (retarget.engine)
    codec: str | None = None  # output: h264 | ffv1 | prores | png; None: from the output path (retarget.io.output)
    crf: int | None = None  # H.264 constant rate factor 0..51 (0 = lossless); None: 18
    densepose_every: str = "1"  # DensePose keyframe interval K or auto (retarget.pipeline.keyframes); 1 = every frame
    # render ahead during pass 1 (RenderAhead) on CPUs with ≥ 2 cores; off by default: on a quiet 2-core CPU it measured
    # slower than the passes in turn (docs/performance.md, end to end)
    overlap: bool = False
    steady: float = DEFAULT_STEADY  # previous output carried by the driver flow (pipeline/steady.py); 0 = off

    def hold_frames(self, fps: float) -> int:
        """How many frames ``--on-missing hold`` keeps the last pose for at ``fps``."""
        return int(round(self.hold_seconds * float(fps)))

    def validate(self) -> None:
        from retarget.pipeline.bounds import check_bounds

        check_bounds("batch_size", self.batch_size)
        if self.background not in BACKGROUNDS and parse_colour(self.background) is None:
            raise UsageError(f"--background {self.background!r}: expected scene, source or #RRGGBB")
        if self.output_mode not in OUTPUT_MODES:
            raise UsageError(f"--output-mode {self.output_mode!r}: expected one of {', '.join(OUTPUT_MODES)}")
        if self.on_missing not in ON_MISSING:
            raise UsageError(f"--on-missing {self.on_missing!r}: expected one of {', '.join(ON_MISSING)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.fill not in FILLS:
            raise UsageError(f"--fill {self.fill!r}: expected one of {', '.join(FILLS)}")
        from retarget.uvmap import TABLE_CHOICES

        if self.table not in TABLE_CHOICES:
            raise UsageError(f"--table {self.table!r}: expected one of {', '.join(TABLE_CHOICES)}")
        if not 0 <= self.temporal_radius <= MAX_TEMPORAL_RADIUS:
            raise UsageError(f"--temporal-strength must be 1..{MAX_TEMPORAL_RADIUS}, got {self.temporal_radius}")
        if self.precision == "fp16" and not str(self.device).startswith("cuda"):
            raise UsageError("--precision fp16 needs --device cuda; on CPU use bf16 or fp32")
        PersonChoice.parse(self.person)
        check_steady(self.steady)
        check_codec_options(self.codec, self.crf)
        self.keyframe_interval()
        from retarget.engine import check_engine, resolve_engine

        check_engine(self.engine)
        if self.engine != "auto" or self.precision == "int8":  # an explicit choice fails before any work
            resolve_engine(self.engine, self.device, self.precision)

    def keyframe_interval(self) -> int | None:
        """``densepose_every`` as an interval (``None`` = auto); a :class:`UsageError` when invalid."""
        from retarget.pipeline.keyframes import check_every

        return check_every(self.densepose_every)

    def keeps_others(self) -> bool:
        """Whether the driver's other people stay in the output (over the scene plate)."""
        return self.background == "scene"


@dataclass
class DriverTrack:
    """Result of pass 1: which person is followed and where the crop goes, per frame."""

    info: VideoInfo
    boxes: np.ndarray  # (T, 4) followed person's box, NaN rows where none
    crops: np.ndarray  # (T, 3) smoothed [cx, cy, side], NaN rows where none
    plate: np.ndarray | None  # (H, W, 3) float32 scene plate
    frame_count: int = 0
    times: dict = field(default_factory=dict)  # pass-1 seconds per stage
    decode_error: VideoDecodeError | None = None  # driver unreadable after frame_count frames (--keep-partial)
    split_blobs: bool = False  # the DensePose source has no person boxes: people are split by blobs

    def people(self, result) -> People:
        """The people of a frame's DensePose ``result`` (as pass 1 saw them)."""
        return find_people(result.iuv, result.boxes, self.split_blobs, result.scores)

    def crop(self, index: int) -> SquareCrop | None:
        if index >= len(self.crops) or np.isnan(self.crops[index]).any():
            return None
        return SquareCrop.around(*self.crops[index])


@dataclass
class VideoSummary:
    """What :func:`render_video` did."""

    frames: int
    seconds: float
    output: Path
    densepose_calls: int = 0
    missing_frames: int = 0
    timings: dict = field(default_factory=dict)
    overlap: dict = field(default_factory=dict)  # frames whose refiner work was done during pass 1, thread plan

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.2f} frames/s) → {self.output}")


def _progress(total: int | None, desc: str, quiet: bool):
    from retarget.io.progress import progress_bar

    return progress_bar(total, desc, unit="frame", quiet=quiet)  # only on a terminal (retarget/io/progress.py)


def analysis_label(densepose: FrameDensePose) -> str:
    """Progress-bar label of pass 1: what it does per frame (running the model, or reading IUV files)."""
    source = "read IUV" if densepose.precomputed else "DensePose"
    return f"1/2 {source} + track person"


RENDER_LABEL = "2/2 render"


def _until_decode_error(frames: Iterator[VideoFrame], errors: list) -> Iterator[VideoFrame]:
    """Yield ``frames`` until a :class:`VideoDecodeError`, which is appended to ``errors`` instead of raised."""
    try:
        yield from frames
    except VideoDecodeError as exc:
        errors.append(exc)


def analyse_driver(driver: Path, densepose: FrameDensePose, options: VideoOptions,
                   info: VideoInfo | None = None, ahead: Callable | None = None) -> DriverTrack:
    """Pass 1: DensePose for every frame (cached), person following, smoothed crops, scene plate.

    ``ahead(frame, result, box, split_blobs)``, when given, is called after each frame with its DensePose result
    and followed person's box (NaN when none): :class:`RenderAhead` renders from it while DensePose goes on.

    A precomputed IUV sidecar is checked against the driver first (frame size; a folder numbered from an
    offset, one run of exactly the driver's frame count, is read in order: :meth:`PrecomputedIUV.align_to`),
    and after the pass (frame indices): entries beyond the driver's frames are an error, frames without an
    entry are counted in a ``note:`` line and handled by ``--on-missing``.
    """
    info = info or probe_video(driver)
    check_driver_size(info, driver)
    sidecar = densepose.backend if densepose.precomputed else None
    if sidecar is not None:
        sidecar.check_driver(info.width, info.height, driver)
        offset = sidecar.align_to(info.frame_count)
        if offset:
            print(f"note: {sidecar.align_note(offset, info.frame_count)}", file=sys.stderr)
    times = StageTimes()
    plate = ScenePlateEstimator(info.height, info.width) if options.background == "scene" else None
    boxes: list[np.ndarray] = []
    split_blobs = splits_by_blobs(densepose)
    tracker = PersonTracker(PersonChoice.parse(options.person), info.width, info.height)
    bar = _progress(info.frame_count, analysis_label(densepose), options.quiet)
    count = 0
    errors: list[VideoDecodeError] = []
    try:
        frames = _until_decode_error(iter_frames(driver, info.rotation), errors)
        for frame, result in densepose.stream(frames, options.batch_size, times):  # in order, maybe filtered
            tick = time.perf_counter()
            people = find_people(result.iuv, result.boxes, split_blobs, result.scores) if result.has_person else None
            chosen = tracker.step(people, frame.index) if people is not None else None
            box = people.boxes[chosen] if chosen is not None and people.mask(chosen).any() else None
            boxes.append(box if box is not None else np.full(4, np.nan))
            if plate is not None:
                plate.add(frame.rgb, result.iuv[..., 0] > 0)
            count += 1
            bar.update(1)
            times.add("track_and_plate", time.perf_counter() - tick)
            if ahead is not None:
                ahead(frame, result, boxes[-1], split_blobs)
    finally:
        bar.close()
    decode_error = errors[0] if errors else None  # corrupt/truncated driver: keep its frames only if asked to
    if decode_error is not None and (not options.keep_partial or count == 0):
        hint = (f"; or pass --keep-partial to render the {decode_error.frames} readable frames"
                if options.command == "video" else "")
        raise VideoDecodeError(f"{decode_error}{hint}", decode_error.frames)
    if count == 0:
        raise InputError(f"{driver}: the video has no decodable frames")
    if sidecar is not None and decode_error is None:
        _check_coverage(sidecar, driver, count, options)
    if all(np.isnan(b).any() for b in boxes):
        raise InputError(f"{driver}: no person found in any of its {count} frames; give a driving video "
                         "that shows a person")
    box_array = np.stack(boxes)
    params = np.array([box_to_crop_params(b) if not np.isnan(b).any() else np.full(3, np.nan) for b in box_array])
    sigma = options.smooth_sigma_seconds * float(info.fps)
    tick = time.perf_counter()
    plate_image = plate.plate() if plate is not None else None
    times.add("track_and_plate", time.perf_counter() - tick)
    return DriverTrack(info=info, boxes=box_array, crops=smooth_track(params, sigma), plate=plate_image,
                       frame_count=count, times=times, decode_error=decode_error, split_blobs=split_blobs)


def _check_coverage(sidecar, driver: Path, count: int, options: VideoOptions) -> None:
    """Entries beyond the driver's ``count`` frames are an error; missing ones get a one-line note."""
    missing, extra = sidecar.coverage(count)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise InputError(f"{sidecar.path}: has IUV for frame {extra[0]}{more}, but the driver {driver} has "
                         f"{count} frames (0..{count - 1}); give the sidecar computed on this video")
    if missing:
        print(f"note: {sidecar.path}: no IUV for {missing} of the driver's {count} frames; they count as frames "
              f"without a person (--on-missing {options.on_missing})", file=sys.stderr)


def output_background(options: VideoOptions, track: DriverTrack, source: SourceCrop) -> np.ndarray:
    """``(H, W, 3) float32`` background at driver size for ``--background`` scene / source / #RRGGBB."""
    height, width = track.info.height, track.info.width
    if options.background == "scene":
        return track.plate
    if options.background == "source":
        return source_background(source.photo, source.person_mask, height, width)
    return np.broadcast_to(parse_colour(options.background), (height, width, 3)).astype(np.float32)


def partial_output_path(output: Path) -> Path:
    """Where ``--keep-partial`` puts the frames rendered before a driver decoding error: ``<stem>.partial.mp4``
    (a PNG sequence: :meth:`retarget.io.output.OutputSpec.partial`)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.partial{output.suffix}")


class StageTimes(dict):
    """Seconds spent per stage, summed over frames (threads add to their own keys)."""

    def add(self, stage: str, seconds: float) -> None:
        self[stage] = self.get(stage, 0.0) + seconds


# -- pass 2: the stages ------------------------------------------------------------------------
# decode → DensePose/IUV crop → warp and refine (batched) → composite → encode. Decode and encode run
# in their own threads (retarget.pipeline.stream); the three middle stages run in the calling thread.


@dataclass
class RenderPlan:
    """Pass 1 and what pass 2 derives from it (shared by ``retarget video`` and ``retarget frames``)."""

    options: VideoOptions  # precision resolved for this machine
    track: DriverTrack
    background: np.ndarray  # (H, W, 3) float32 at driver size
    size: int  # person crop side
    analysis_s: float = 0.0

    @property
    def info(self) -> VideoInfo:
        return self.track.info

    @property
    def hold_frames(self) -> int:
        return self.options.hold_frames(self.info.fps)

    @property
    def output_size(self) -> tuple[int, int]:
        """``(width, height)`` of the output video."""
        width, height = (self.size, self.size) if self.options.output_mode == "crop" else (self.info.width,
                                                                                          self.info.height)
        return (2 * width if self.options.side_by_side else width), height


def options_for_path(options: VideoOptions, models: Models | None) -> VideoOptions:
    """``options`` checked (:meth:`VideoOptions.validate`) and resolved for the path: ``--table auto``
    (:func:`retarget.uvmap.resolve_table`: ``clean`` weight-free, ``training`` with the networks) and, with
    models, ``--precision`` (bf16 on a CPU without native bf16 runs fp32, one warning line)."""
    from retarget.uvmap import resolve_table

    options.validate()
    options = dataclasses.replace(options, table=resolve_table(options.table, models is None))
    if models is not None:
        options = dataclasses.replace(options, precision=resolve_precision(options.precision, options.device))
    elif options.precision in ("bf16", "fp16"):  # no network to run at it: the weight-free render stays fp32
        # (autocast reached its blends, whose float32 / bfloat16 mix failed: "expected dtype float")
        if not options.quiet:
            print(f"note: --precision {options.precision} sets the refiner's arithmetic; without its weights "
                  "the weight-free path runs in fp32", file=sys.stderr)
        options = dataclasses.replace(options, precision="fp32")
    return options


def plan_render(source: SourceCrop, state: SourceState, driver: Path, densepose: FrameDensePose,
                models: Models | None, options: VideoOptions, ahead: Callable | None = None,
                info: VideoInfo | None = None) -> RenderPlan:
    """Check and resolve ``options`` (:func:`options_for_path`), run pass 1 (:func:`analyse_driver`, with
    ``ahead``) and choose the output background."""
    options = options_for_path(options, models)
    start = time.perf_counter()
    track = analyse_driver(driver, densepose, options, info or probe_video(driver), ahead)
    analysis_s = time.perf_counter() - start
    return RenderPlan(options=options, track=track, background=output_background(options, track, source),
                      size=state.image.shape[-1], analysis_s=analysis_s)


def engine_models(models: Models | None, options: VideoOptions, size: int, batch_size: int | None = None):
    """``models`` with the per-frame refiner on ``options.engine`` (:func:`retarget.engine.wrap_models`:
    converted once and cached for OpenVINO); ``None`` (weight-free) stays ``None``."""
    if models is None:
        return None
    from retarget.engine import wrap_models
    from retarget.pipeline.calibration_frames import calibration_frames_for

    return wrap_models(models, options.engine, options.device, options.precision,
                       options.batch_size if batch_size is None else batch_size, size, quiet=options.quiet,
                       calibration_frames=calibration_frames_for(models, size))


def decode_stage(driver: Path, rotation: int, limit: int, times: StageTimes) -> Iterator[VideoFrame]:
    """Decode: the driver's first ``limit`` frames (pass 2 stops where pass 1 did, so a
    ``--keep-partial`` run stops before the bad data); seconds go to ``times["decode"]``."""
    frames = iter_frames(driver, rotation)
    try:
        for _ in range(limit):
            tick = time.perf_counter()
            frame = next(frames, None)
            times.add("decode", time.perf_counter() - tick)
            if frame is None:
                return
            yield frame
    finally:
        frames.close()


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of ``size`` consecutive items (the last one may be shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class FrameTargets:
    """A batch of frames and, per frame, ``(index, crop or None, target UV (S, S, 2) or None, kept people)``
    (kept people: the other people's driver-pixel masks, see :func:`_frame_jobs`)."""

    frames: list[VideoFrame]
    jobs: list[tuple]


@dataclass
class RenderedBatch:
    """A batch of frames with their crops and rendered persons (``(rgb, mask)`` or None per frame)."""

    frames: list[VideoFrame]
    jobs: list[tuple]
    persons: list


class TargetStage:
    """DensePose/IUV → crop → target UV for a batch of frames (:func:`_frame_jobs`), keeping the last
    valid pose across batches for ``--on-missing hold``; seconds go to ``times["iuv_crop_to_uv"]``."""

    def __init__(self, plan: RenderPlan, densepose: FrameDensePose, times: StageTimes):
        self.plan, self.densepose, self.times = plan, densepose, times
        self.last_valid: tuple[int, SquareCrop, np.ndarray] | None = None

    def __call__(self, batch: list[VideoFrame]) -> FrameTargets:
        tick = time.perf_counter()
        jobs, self.last_valid = _frame_jobs(batch, self.plan.track, self.densepose, self.plan.size,
                                            self.plan.options, self.plan.hold_frames, self.last_valid)
        self.times.add("iuv_crop_to_uv", time.perf_counter() - tick)
        return FrameTargets(batch, jobs)


class WarpRefineStage:
    """Warp and refine every target UV of a batch in one call (:func:`_render_batch`); frames without
    one get ``None``; seconds go to ``times["warp_and_refine"]``."""

    def __init__(self, state: SourceState, models: Models | None, options: VideoOptions, times: StageTimes,
                 ahead: "RenderAhead | None" = None):
        self.state, self.models, self.options, self.times = state, models, options, times
        self.ahead = ahead  # batches rendered during pass 1, used when their target UVs are the same

    def __call__(self, targets: FrameTargets) -> RenderedBatch:
        tick = time.perf_counter()
        uvs = [j[2] for j in targets.jobs if j[2] is not None]
        done = self.ahead.take(targets.frames[0].index, uvs) if self.ahead is not None and targets.frames else None
        rendered = iter(done if done is not None else _render_batch(self.state, self.models, uvs, self.options))
        self.times.add("warp_and_refine", time.perf_counter() - tick)
        persons = [next(rendered) if uv is not None else None for _, _, uv, _ in targets.jobs]
        return RenderedBatch(targets.frames, targets.jobs, persons)

    def details(self, uv: np.ndarray):
        """One ``(S, S, 2)`` target UV's full :class:`retarget.pipeline.pair.TargetBatch` (coarse warp,
        refined output, mask), for ``retarget frames``."""
        device = self.state.image.device
        target = torch.from_numpy(np.ascontiguousarray(uv))[None].permute(0, 3, 1, 2).to(device)
        with _autocast(self.options.precision, device):
            return render_targets(self.state, target, self.models)


class SteadyStage:
    """Rendered batches with every person crop steadied along the driver's motion (``--steady``,
    :class:`retarget.pipeline.steady.OutputSteadier`), in frame order; seconds go to ``times["steady"]``."""

    def __init__(self, size: int, strength: float, times: StageTimes):
        self.size, self.times = size, times
        self.steadier = OutputSteadier(strength)

    def __call__(self, batches: Iterable[RenderedBatch]) -> Iterator[RenderedBatch]:
        if self.steadier.strength <= 0.0:
            yield from batches
            return
        for batch in batches:
            tick = time.perf_counter()
            persons = []
            for frame, (_, crop, _, _), person in zip(batch.frames, batch.jobs, batch.persons):
                if person is None or crop is None:
                    self.steadier.reset()
                    persons.append(person)
                    continue
                rgb, mask = person
                driver = crop_image(frame.rgb, crop, self.size, replicate=True)
                persons.append((self.steadier(driver, rgb, mask > 0.5), mask))
            self.times.add("steady", time.perf_counter() - tick)
            yield RenderedBatch(batch.frames, batch.jobs, persons)


class CompositeStage:
    """The output frames (:func:`_composite`) of rendered batches, in order: ``(rgb uint8, pts)`` per
    frame, none for a frame without a person under ``--on-missing skip``. Counts ``frames`` and
    ``missing`` frames, calls ``on_frame(index, rgb)`` before a frame is encoded, advances ``progress``;
    seconds go to ``times["composite"]``."""

    def __init__(self, plan: RenderPlan, times: StageTimes, on_frame: Callable[[int, np.ndarray], None] | None = None,
                 progress=None):
        self.plan, self.times, self.on_frame, self.progress = plan, times, on_frame, progress
        self.frames = 0
        self.missing = 0

    def __call__(self, batches: Iterable[RenderedBatch]) -> Iterator[tuple[np.ndarray, int | None]]:
        options = self.plan.options
        for batch in batches:
            for frame, (_, crop, _, keep), person in zip(batch.frames, batch.jobs, batch.persons):
                self.missing += person is None
                if person is None and options.on_missing == "skip":
                    self._advance()
                    continue
                rgb = self.frame(frame, crop, person, keep)
                if self.on_frame is not None:
                    self.on_frame(frame.index, rgb)
                yield rgb, frame.pts
                self.frames += 1
                self._advance()

    def frame(self, frame: VideoFrame, crop: SquareCrop | None, person, keep=None) -> np.ndarray:
        """One output frame (``uint8`` RGB) of ``frame`` with ``person`` (``(rgb, mask)`` or None) at ``crop``;
        ``keep``: the other people's driver pixels to keep (from :func:`_frame_jobs`)."""
        tick = time.perf_counter()
        rgb = _composite(frame, crop, person, self.plan.background, self.plan.options, self.plan.size, keep)
        self.times.add("composite", time.perf_counter() - tick)
        return rgb

    def _advance(self) -> None:
        if self.progress is not None:
            self.progress.update(1)


class EncodeStage:
    """Encode ``(rgb, pts)`` frames with ``writer`` (any writer of :func:`retarget.io.output.open_output`);
    seconds go to ``times["encode"]``."""

    def __init__(self, writer, times: StageTimes):
        self.writer, self.times = writer, times

    def __call__(self, frames: Iterable[tuple[np.ndarray, int | None]]) -> None:
        for rgb, pts in frames:
            tick = time.perf_counter()
            self.writer.write(rgb, pts)
            self.times.add("encode", time.perf_counter() - tick)


def render_video(source: SourceCrop, state: SourceState, driver: Path, output: Path | OutputSpec,
                 densepose: FrameDensePose,
                 models: Models | None, options: VideoOptions,
                 on_frame: Callable[[int, np.ndarray], None] | None = None, *, overwrite: bool = True
                 ) -> VideoSummary:
    """Render ``driver`` with the source person and write ``output`` atomically.

    Args:
        source: the framed source photo (for ``--background source``).
        state: the prepared source (from :func:`retarget.pipeline.source.prepare_source_crop`).
        driver: driver video.
        output: output video or PNG sequence: an :class:`retarget.io.output.OutputSpec`, or a path resolved
            with ``options.codec``/``options.crf`` (its folder must exist).
        densepose: per-frame DensePose stage (precomputed or model, cached).
        models: learned models, or ``None`` (weight-free path).
        options: settings.
        on_frame: called with ``(frame_index, rgb_uint8)`` for every output frame before encoding.
        overwrite: ``False``: fail at the end if ``output`` appeared meanwhile (another run), never replace it.
    """
    from retarget.engine.threads import applied, plan_threads

    start = time.perf_counter()
    options = options_for_path(options, models)
    size = state.image.shape[-1]
    models = engine_models(models, options, size)  # --engine: the per-frame refiner on torch or OpenVINO
    info = probe_video(driver)
    ahead_times = StageTimes()
    ahead = RenderAhead(state, models, options, info, size, ahead_times, getattr(densepose, "cache", None) is not None
                        ) if overlaps(models, options) else None
    threads = plan_threads(overlap=ahead is not None)
    with Stream(maxsize=2) as ahead_stream:
        with (applied(threads, models.refiner, densepose_backbones(densepose)) if ahead is not None
              else contextlib.nullcontext()):
            if ahead is not None:  # the refiner thread, fed by pass 1 (bounded queue)
                ahead.feed = ahead_stream.feed("retarget-render-ahead", ahead.sink)
            plan = plan_render(source, state, driver, densepose, models, options, ahead, info)  # pass 1
        if ahead is not None:  # the batches still queued render with every core (DensePose is done)
            feed, ahead.feed = ahead.feed, None
            feed.finish()
    options, track, info = plan.options, plan.track, plan.info
    spec = output if isinstance(output, OutputSpec) else output_spec(output, options.codec, options.crf)
    spec = spec.partial() if track.decode_error is not None else spec
    output = spec.display
    times = StageTimes(track.times)
    for key, seconds in ahead_times.items():
        times.add(key, seconds)
    targets, warp = TargetStage(plan, densepose, times), WarpRefineStage(state, models, options, times, ahead)
    with _progress(track.frame_count, RENDER_LABEL, options.quiet) as bar:  # pass 2
        composite = CompositeStage(plan, times, on_frame, bar)
        with open_output(spec, *plan.output_size, info.fps, info.time_base, audio_from=driver, driver=driver,
                         quiet=options.quiet, overwrite=overwrite) as writer, \
                Stream(maxsize=2 * options.batch_size) as stream:
            frames = stream.produce("retarget-decode", decode_stage(driver, info.rotation, track.frame_count, times))
            rendered = (warp(targets(batch)) for batch in batched(frames, options.batch_size))
            steadied = SteadyStage(plan.size, options.steady, times)(rendered)
            stream.consume("retarget-encode", EncodeStage(writer, times), composite(steadied))
    if composite.frames == 0:
        raise InputError(f"{driver}: no frame had a person to render (with --on-missing skip)")
    if track.decode_error is not None:
        raise InputError(f"{track.decode_error}; kept the {composite.frames} frames rendered from it in {output}")
    seconds = time.perf_counter() - start
    overlap = {"rendered_ahead": ahead.hits if ahead is not None else 0, "threads": threads.line()}
    return VideoSummary(frames=composite.frames, seconds=seconds, output=output, densepose_calls=densepose.calls,
                        missing_frames=composite.missing,
                        timings={"analysis_s": plan.analysis_s, "total_s": seconds, **times}, overlap=overlap)


#: Memory for the frames :class:`RenderAhead` renders during pass 1 (16 bytes per crop pixel: RGB + mask, float32);
#: beyond it the rest is rendered in pass 2 as without overlap.
RENDER_AHEAD_BYTES = 512 << 20


def _uv_digest(uv: np.ndarray) -> bytes:
    import hashlib

    uv = np.ascontiguousarray(uv)
    return hashlib.blake2b(f"{uv.dtype}{uv.shape}".encode() + uv.tobytes(), digest_size=16).digest()


def _as_cached(result):
    """``result`` as a DensePose cache returns it (float32 boxes and scores), so pass 2's reads match it."""
    from densepose_adapter.types import DensePoseResult

    return DensePoseResult(image_hw=result.image_hw, boxes=np.asarray(result.boxes, np.float32).reshape(-1, 4),
                           scores=np.asarray(result.scores, np.float32).reshape(-1), iuv=result.iuv)


class RenderAhead:
    """Overlap: the refiner renders batches in its own thread while pass 1 runs DensePose on the next frames.

    The main thread (pass 1) calls it with every frame's DensePose result and followed person's box. Once the
    frames of the next batch have their crop (the crop track is smoothed over ``±3σ`` frames, so a frame's
    crop is known ``radius`` frames later), it computes their target UVs as pass 2 will (same batches from
    frame 0, same ``--on-missing hold`` state, results as the DensePose cache returns them) and queues them
    (:meth:`retarget.pipeline.stream.Stream.feed`, bounded) to :meth:`sink`, which renders them in the
    refiner thread. Pass 2 (:class:`WarpRefineStage`) :meth:`take` gets a batch's rendered persons only when
    its target UVs are bit-identical to those rendered (a digest per UV), else renders it itself: the
    output is identical to the passes run in turn, whatever the look-ahead guessed. Memory is bounded by
    :data:`RENDER_AHEAD_BYTES`; frames waiting for their crop are kept (``radius + batch`` of them).
    """

    def __init__(self, state: SourceState, models: Models, options: VideoOptions, info: VideoInfo, size: int,
                 times: StageTimes, cached_results: bool = True):
        self.state, self.models, self.options, self.info, self.size = state, models, options, info, size
        self.times, self.cached_results = times, cached_results
        self.batch = options.batch_size
        self.hold_frames = options.hold_frames(info.fps)
        self.sigma = options.smooth_sigma_seconds * float(info.fps)
        self.radius = int(np.ceil(3 * self.sigma)) if self.sigma > 0 else 0
        self.limit = max(self.batch, RENDER_AHEAD_BYTES // (16 * size * size))
        self.waiting: dict[int, tuple[VideoFrame, object]] = {}
        self.boxes: list[np.ndarray] = []
        self.next_start = 0
        self.queued = 0
        self.last_valid = None
        self.feed = None  # set by the runner: where batches go (None: stopped)
        self.done: dict[int, tuple[list[bytes], list]] = {}
        self.rendered = 0
        self.hits = 0

    def __call__(self, frame: VideoFrame, result, box: np.ndarray, split_blobs: bool) -> None:
        """Pass 1's hook (main thread): one more frame analysed."""
        if self.feed is None:
            return
        if frame.index != len(self.boxes):  # frames left out: pass 2's batches would not line up
            self.stop()
            return
        self.boxes.append(box)
        self.waiting[frame.index] = (frame, _as_cached(result) if self.cached_results else result)
        ready = len(self.boxes) - 1 - self.radius  # frames up to here have the crop pass 2 will have
        while self.feed is not None and self.next_start + self.batch - 1 <= ready:
            if self.queued + self.batch > self.limit:
                self.stop()
                return
            self._submit(split_blobs)

    def _submit(self, split_blobs: bool) -> None:
        tick = time.perf_counter()
        indices = range(self.next_start, self.next_start + self.batch)
        frames = [self.waiting.pop(i) for i in indices]
        boxes = np.stack(self.boxes)  # what pass 1 derives from the boxes so far, as analyse_driver does
        params = np.array([box_to_crop_params(b) if not np.isnan(b).any() else np.full(3, np.nan) for b in boxes])
        track = DriverTrack(info=self.info, boxes=boxes, crops=smooth_track(params, self.sigma), plate=None,
                            split_blobs=split_blobs)
        jobs, self.last_valid = _frame_jobs([f for f, _ in frames], track, None, self.size, self.options,
                                            self.hold_frames, self.last_valid, results=[r for _, r in frames])
        self.next_start += self.batch
        self.queued += self.batch
        self.times.add("render_ahead_targets", time.perf_counter() - tick)
        self.feed.put((indices[0], [j[2] for j in jobs if j[2] is not None]))

    def sink(self, items: Iterable[tuple[int, list[np.ndarray]]]) -> None:
        """The refiner thread: render each queued batch (as :class:`WarpRefineStage` would)."""
        for start, uvs in items:
            tick = time.perf_counter()
            persons = _render_batch(self.state, self.models, uvs, self.options)
            self.done[start] = ([_uv_digest(uv) for uv in uvs], persons)
            self.rendered += len(uvs)
            self.times.add("render_ahead", time.perf_counter() - tick)

    def stop(self) -> None:
        """No more batches (what is queued still renders)."""
        self.feed = None
        self.waiting.clear()

    def take(self, start: int, uvs: list[np.ndarray]) -> list | None:
        """The persons rendered ahead for the batch starting at frame ``start`` if they were rendered from
        exactly ``uvs``, else ``None`` (pass 2 renders it)."""
        entry = self.done.pop(start, None)
        if entry is None or entry[0] != [_uv_digest(uv) for uv in uvs]:
            return None
        self.hits += len(uvs)
        return entry[1]


def densepose_backbones(densepose) -> list:
    """The OpenVINO backbones (objects with ``set_threads``) inside a DensePose stage and the stages it wraps."""
    found, seen, todo = [], set(), [densepose]
    while todo:
        stage = todo.pop()
        if stage is None or id(stage) in seen:
            continue
        seen.add(id(stage))
        todo += [getattr(stage, "inner", None), getattr(stage, "raw", None)]
        backbone = getattr(getattr(getattr(stage, "backend", None), "model", None), "backbone", None)
        if hasattr(backbone, "set_threads") and backbone not in found:
            found.append(backbone)
    return found


def overlaps(models: Models | None, options: VideoOptions) -> bool:
    """Whether :func:`render_video` renders ahead during pass 1: a refiner to run, ``options.overlap``, on the CPU
    with at least 2 cores available (:func:`retarget.engine.threads.available_cores`; CUDA runs as before)."""
    from retarget.engine import threads

    return (options.overlap and models is not None and models.refiner is not None
            and str(options.device).startswith("cpu") and threads.available_cores() >= 2)


def _frame_jobs(batch: list[VideoFrame], track: DriverTrack, densepose: FrameDensePose | None, size: int,
                options: VideoOptions, hold_frames: int, last_valid, results: list | None = None):
    """Per frame: ``(index, crop, target_uv (S, S, 2) or None, keep)``, applying the on-missing policy.

    ``keep`` is ``(behind, in_front)`` masks of the other people's driver pixels kept in the output
    (:func:`retarget.pipeline.people.keep_layers`), or ``None``. They come from the raw DensePose
    (before the temporal filter, which may drop thin parts such as a hand for a frame).
    ``results``: the frames' DensePose results as given (no DensePose stage is asked, and ``keep`` is
    ``None``: what :class:`RenderAhead` needs, the target UVs, does not depend on it).
    """
    from retarget.uvmap import iuv_to_uv

    given = results is not None
    if not given:
        results = densepose.results([f.index for f in batch], [f.rgb for f in batch])
    raw_stage = getattr(densepose, "inner", None)
    crops, iuvs, keeps = [], [], []
    for frame, result in zip(batch, results):
        crop = track.crop(frame.index)
        people = track.people(result)
        chosen = people.match(track.boxes[frame.index]) if crop is not None else None
        keep = None
        if not given and options.keeps_others() and len(people) > (chosen is not None):  # somebody else is there
            everyone = people
            if raw_stage is not None:
                everyone = track.people(raw_stage.results([frame.index], [frame.rgb])[0])
            keep = keep_layers(everyone, everyone.match(track.boxes[frame.index]) if crop is not None else None)
        keeps.append(keep)
        if crop is None:
            crops.append(None)
            iuvs.append(None)
            continue
        own = people.mask(chosen) if chosen is not None else person_mask(result.iuv, track.boxes[frame.index])
        iuv = result.iuv * own[..., None]
        crops.append(crop)
        iuvs.append(crop_image(iuv, crop, size, nearest=True))
    valid = [i for i, v in enumerate(iuvs) if v is not None]
    uvs = iuv_to_uv(np.stack([iuvs[i] for i in valid]), table=options.table) if valid else []
    jobs = []
    for frame, crop, keep in zip(batch, crops, keeps):
        if crop is not None:
            uv = uvs[valid.index(len(jobs))]
            last_valid = (frame.index, crop, uv)
            jobs.append((frame.index, crop, uv, keep))
        elif (options.on_missing == "hold" and last_valid is not None
              and frame.index - last_valid[0] <= hold_frames):
            jobs.append((frame.index, last_valid[1], last_valid[2], keep))
        else:
            jobs.append((frame.index, None, None, keep))
    return jobs, last_valid


def _render_batch(state: SourceState, models: Models | None, uvs: list[np.ndarray], options: VideoOptions):
    """Warp/refine a list of ``(S, S, 2)`` target UVs → list of (rgb ``(S,S,3)``, mask ``(S,S)``) numpy."""
    if not uvs:
        return []
    from retarget.engine.transfer import device_to_host, host_to_device

    target = host_to_device(np.stack(uvs), state.image.device)  # pinned, asynchronous copy on CUDA
    with _autocast(options.precision, state.image.device):
        result = render_targets(state, target, models)
    rgb = device_to_host(result.output.permute(0, 2, 3, 1))
    masks = device_to_host(result.paste_alpha[:, 0])
    return list(zip(rgb, masks))


def _autocast(precision: str, device: torch.device):
    """Mixed precision for the per-frame torch networks (fp32, int8: a no-op context; int8 is OpenVINO's)."""
    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _composite(frame: VideoFrame, crop: SquareCrop | None, person, background: np.ndarray,
               options: VideoOptions, size: int, keep: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """One output frame as ``uint8`` RGB.

    ``keep``: ``(behind, in_front)`` ``(H, W)`` bool masks of driver pixels (the other people) copied
    from the driver frame under / over the pasted person.
    """
    driver_rgb = frame.rgb.astype(np.float32) / 255.0 if keep is not None else None
    if options.output_mode == "crop":
        if crop is not None:
            base = crop_image(background, crop, size, replicate=True).astype(np.float32)
        else:
            base = crop_image(background, SquareCrop.around(background.shape[1] / 2, background.shape[0] / 2,
                                                            min(background.shape[:2])), size)
        canvas = base.copy()
        if keep is not None:
            window = crop or SquareCrop.around(background.shape[1] / 2, background.shape[0] / 2,
                                               min(background.shape[:2]))
            driver_rgb = crop_image(driver_rgb, window, size, replicate=crop is not None)
            keep = tuple(crop_image(m.astype(np.uint8), window, size, nearest=True) > 0 for m in keep)
            canvas[keep[0]] = driver_rgb[keep[0]]
        if person is not None:
            rgb, mask = person
            alpha = feather(mask, options.feather_px)[..., None]
            canvas = canvas * (1 - alpha) + extend_colours(rgb, mask, 2 * options.feather_px) * alpha
    else:
        canvas = np.array(background, dtype=np.float32, copy=True)
        if keep is not None:
            canvas[keep[0]] = driver_rgb[keep[0]]
        if person is not None and crop is not None:
            rgb, mask = person
            paste_crop(canvas, crop, extend_colours(rgb, mask, 2 * options.feather_px),
                       feather(mask, options.feather_px))
    if keep is not None:
        canvas[keep[1]] = driver_rgb[keep[1]]
    out = np.clip(np.round(canvas * 255.0), 0, 255).astype(np.uint8)
    if options.side_by_side:
        driver = frame.rgb if options.output_mode == "frame" else (
            crop_image(frame.rgb, crop, size, replicate=True) if crop is not None
            else crop_image(frame.rgb, SquareCrop.around(frame.rgb.shape[1] / 2, frame.rgb.shape[0] / 2,
                                                         min(frame.rgb.shape[:2])), size))
        out = np.concatenate([driver, out], axis=1)
    return out
