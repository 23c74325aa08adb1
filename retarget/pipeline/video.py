"""The video runner: source once, driver streamed in two passes with bounded memory.

Pass 1 (analysis) decodes the driver, gets every frame's DensePose result (cached on disk per
frame), follows one person, smooths the crop track over time and, for ``--background scene``,
feeds a bounded set of frames to the background-plate estimator.

Pass 2 (render) decodes again in a thread, converts each frame's IUV crop to SMPL-UV, runs the
warp/refiner on batches, composites the person back into the frame and hands frames to an encoder
thread. Queues are bounded, so decode, compute and encode overlap and memory does not grow with
video length. The output is written to a temporary file and renamed only on success.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from retarget.errors import InputError, UsageError
from retarget.io.atomic import atomic_output
from retarget.io.video import (
    VideoDecodeError,
    VideoFrame,
    VideoInfo,
    VideoWriter,
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
    pick_person,
    smooth_track,
)
from retarget.pipeline.pair import FILLS, Models, SourceState, render_targets
from retarget.pipeline.source import SourceCrop

BACKGROUNDS = ("scene", "source")
OUTPUT_MODES = ("frame", "crop")
ON_MISSING = ("hold", "background", "skip")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
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
    table: str = "training"
    smooth_sigma_seconds: float = 0.08
    feather_px: float = 1.5  # at crop resolution
    side_by_side: bool = False
    quiet: bool = False
    keep_partial: bool = False
    precision: str = "fp32"  # per-frame refiner arithmetic: fp32 (reference numerics), bf16, fp16 (CUDA)
    fill: str = "body"  # weight-free texture completion: body | nearest
    command: str = "video"  # the command running: the options messages name are that command's
    temporal_radius: int = 2  # driver IUV temporal filter: frames each side (look-ahead); 0 = off
    engine: str = "auto"  # per-frame refiner engine: auto | torch | openvino (retarget.engine)

    def hold_frames(self, fps: float) -> int:
        """How many frames ``--on-missing hold`` keeps the last pose for at ``fps``."""
        return int(round(self.hold_seconds * float(fps)))

    def validate(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
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
        if not 0 <= self.temporal_radius <= MAX_TEMPORAL_RADIUS:
            raise UsageError(f"--temporal-strength must be 1..{MAX_TEMPORAL_RADIUS}, got {self.temporal_radius}")
        if self.precision == "fp16" and not str(self.device).startswith("cuda"):
            raise UsageError("--precision fp16 needs --device cuda; on CPU use bf16 or fp32")
        from retarget.engine import check_engine, require_openvino

        check_engine(self.engine)
        if self.precision == "int8" and self.engine == "torch":
            raise UsageError("--precision int8 needs --engine openvino (or --engine auto with OpenVINO installed)")
        if self.engine == "openvino" or self.precision == "int8":  # fail before any work, not at pass 2
            require_openvino(f"--engine {self.engine}" if self.precision != "int8" else "--precision int8")


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

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.2f} frames/s) → {self.output}")


def _progress(total: int | None, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=desc, unit="frame", disable=quiet, file=sys.stderr, leave=False,
                dynamic_ncols=True)


def analysis_label(densepose: FrameDensePose) -> str:
    """Progress-bar label of pass 1: what it does per frame (running the model, or reading IUV files)."""
    source = "read IUV" if densepose.precomputed else "DensePose"
    return f"1/2 {source} + track person"


RENDER_LABEL = "2/2 render"


def person_mask(iuv: np.ndarray, box: np.ndarray | None, margin: float = 0.02) -> np.ndarray:
    """``(H, W)`` bool pixels of the person in ``box`` (all person pixels when ``box`` is None)."""
    fg = iuv[..., 0] > 0
    if box is None:
        return fg
    h, w = fg.shape
    pad_x, pad_y = margin * (box[2] - box[0]), margin * (box[3] - box[1])
    x0, y0 = max(0, int(np.floor(box[0] - pad_x))), max(0, int(np.floor(box[1] - pad_y)))
    x1, y1 = min(w, int(np.ceil(box[2] + pad_x))), min(h, int(np.ceil(box[3] + pad_y)))
    keep = np.zeros_like(fg)
    keep[y0:y1, x0:x1] = fg[y0:y1, x0:x1]
    return keep


def _until_decode_error(frames: Iterator[VideoFrame], errors: list) -> Iterator[VideoFrame]:
    """Yield ``frames`` until a :class:`VideoDecodeError`, which is appended to ``errors`` instead of raised."""
    try:
        yield from frames
    except VideoDecodeError as exc:
        errors.append(exc)


def analyse_driver(driver: Path, densepose: FrameDensePose, options: VideoOptions,
                   info: VideoInfo | None = None) -> DriverTrack:
    """Pass 1: DensePose for every frame (cached), person following, smoothed crops, scene plate.

    A precomputed IUV sidecar is checked against the driver first (frame size), and after the pass
    (frame indices): entries beyond the driver's frames are an error, frames without an entry are
    counted in a ``note:`` line and handled by ``--on-missing``.
    """
    info = info or probe_video(driver)
    check_driver_size(info, driver)
    sidecar = densepose.backend if densepose.precomputed else None
    if sidecar is not None:
        sidecar.check_driver(info.width, info.height, driver)
    times = StageTimes()
    plate = ScenePlateEstimator(info.height, info.width) if options.background == "scene" else None
    boxes: list[np.ndarray] = []
    previous = None
    bar = _progress(info.frame_count, analysis_label(densepose), options.quiet)
    count = 0
    errors: list[VideoDecodeError] = []
    try:
        frames = _until_decode_error(iter_frames(driver, info.rotation), errors)
        for frame, result in densepose.stream(frames, options.batch_size, times):  # in order, maybe filtered
            tick = time.perf_counter()
            chosen = pick_person(np.asarray(result.boxes).reshape(-1, 4), previous) if result.has_person else None
            box = np.asarray(result.boxes[chosen], np.float64) if chosen is not None else None
            if box is not None:
                mask = person_mask(result.iuv, box)
                if not mask.any():
                    box = None
            boxes.append(box if box is not None else np.full(4, np.nan))
            previous = box if box is not None else previous
            if plate is not None:
                plate.add(frame.rgb, result.iuv[..., 0] > 0)
            count += 1
            bar.update(1)
            times.add("track_and_plate", time.perf_counter() - tick)
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
                       frame_count=count, times=times, decode_error=decode_error)


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
    """Where ``--keep-partial`` puts the frames rendered before a driver decoding error: ``<stem>.partial.mp4``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.partial{output.suffix}")


class StageTimes(dict):
    """Seconds spent per stage, summed over frames (threads add to their own keys)."""

    def add(self, stage: str, seconds: float) -> None:
        self[stage] = self.get(stage, 0.0) + seconds


class _Worker(threading.Thread):
    """A daemon thread whose exception is re-raised by :meth:`check`."""

    def __init__(self, target: Callable[[], None], name: str):
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise self.error


_END = object()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def render_video(source: SourceCrop, state: SourceState, driver: Path, output: Path, densepose: FrameDensePose,
                 models: Models | None, options: VideoOptions,
                 on_frame: Callable[[int, np.ndarray], None] | None = None) -> VideoSummary:
    """Render ``driver`` with the source person and write ``output`` atomically.

    Args:
        source: the framed source photo (for ``--background source``).
        state: the prepared source (from :func:`retarget.pipeline.source.prepare_source_crop`).
        driver: driver video.
        output: output ``.mp4`` path (its folder must exist).
        densepose: per-frame DensePose stage (precomputed or model, cached).
        models: learned models, or ``None`` (weight-free path).
        options: settings.
        on_frame: called with ``(frame_index, rgb_uint8)`` for every output frame before encoding.
    """
    options.validate()
    if models is not None:  # bf16 on a CPU without native bf16 runs fp32 (one warning line)
        options = dataclasses.replace(options, precision=resolve_precision(options.precision, options.device))
        from retarget.engine import wrap_models

        models = wrap_models(models, options.engine, options.device, options.precision, options.batch_size,
                             state.image.shape[-1], quiet=options.quiet)
    start = time.perf_counter()
    info = probe_video(driver)
    track = analyse_driver(driver, densepose, options, info)
    t_analysis = time.perf_counter() - start
    size = state.image.shape[-1]
    background = output_background(options, track, source)

    if options.output_mode == "crop":
        out_w, out_h = size, size
    else:
        out_w, out_h = info.width, info.height
    if options.side_by_side:
        out_w *= 2
    hold_frames = options.hold_frames(info.fps)

    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=2 * options.batch_size)
    encoded: queue.Queue = queue.Queue(maxsize=2 * options.batch_size)

    times = StageTimes(track.times)

    decoded_count = [0]  # pass 2 stops where pass 1 did (a --keep-partial run stops before the bad data)

    def decode() -> None:
        frames = iter_frames(driver, info.rotation)
        while True:
            tick = time.perf_counter()
            frame = next(frames, None) if decoded_count[0] < track.frame_count else None
            times.add("decode", time.perf_counter() - tick)
            decoded_count[0] += 1
            if frame is None or not _put(decoded, frame, stop):
                break
        frames.close()
        _put(decoded, _END, stop)

    if track.decode_error is not None:
        output = partial_output_path(output)
    summary = VideoSummary(frames=0, seconds=0.0, output=output)
    bar = _progress(track.frame_count, RENDER_LABEL, options.quiet)
    try:
        with atomic_output(output) as tmp:
            writer = VideoWriter(tmp, out_w, out_h, info.fps, info.time_base, audio_from=driver)

            def encode() -> None:
                while not stop.is_set():
                    try:
                        item = encoded.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    if item is _END:
                        return
                    tick = time.perf_counter()
                    writer.write(*item)
                    times.add("encode", time.perf_counter() - tick)

            decoder, encoder = _Worker(decode, "retarget-decode"), _Worker(encode, "retarget-encode")
            decoder.start()
            encoder.start()
            try:
                last_valid: tuple[int, SquareCrop, np.ndarray] | None = None
                pending: list[VideoFrame] = []
                finished = False
                while not finished:
                    while len(pending) < options.batch_size:
                        try:
                            item = decoded.get(timeout=0.2)
                        except queue.Empty:
                            decoder.check()
                            encoder.check()
                            continue
                        if item is _END:
                            finished = True
                            break
                        pending.append(item)
                    if not pending:
                        break
                    batch, pending = pending, []
                    tick = time.perf_counter()
                    jobs, last_valid = _frame_jobs(batch, track, densepose, size, options, hold_frames, last_valid)
                    times.add("iuv_crop_to_uv", time.perf_counter() - tick)
                    tick = time.perf_counter()
                    rendered = _render_batch(state, models, [j[2] for j in jobs if j[2] is not None], options)
                    times.add("warp_and_refine", time.perf_counter() - tick)
                    k = 0
                    for frame, (index, crop, uv) in zip(batch, jobs):
                        person = None
                        if uv is not None:
                            person = rendered[k]
                            k += 1
                        if person is None and options.on_missing == "skip":
                            summary.missing_frames += 1
                            bar.update(1)
                            continue
                        summary.missing_frames += person is None
                        tick = time.perf_counter()
                        rgb = _composite(frame, crop, person, background, options, size)
                        times.add("composite", time.perf_counter() - tick)
                        if on_frame is not None:
                            on_frame(frame.index, rgb)
                        if not _put(encoded, (rgb, frame.pts), stop):
                            encoder.check()
                        encoder.check()
                        summary.frames += 1
                        bar.update(1)
                decoder.check()
                _put(encoded, _END, stop)
                encoder.join()
                encoder.check()
                writer.close()
            except BaseException:
                stop.set()
                encoder.join(timeout=5)
                writer.abort()
                raise
            finally:
                stop.set()
    finally:
        bar.close()
    if summary.frames == 0:
        raise InputError(f"{driver}: no frame had a person to render (with --on-missing skip)")
    if track.decode_error is not None:
        raise InputError(f"{track.decode_error}; kept the {summary.frames} frames rendered from it in {output}")
    summary.seconds = time.perf_counter() - start
    summary.densepose_calls = densepose.calls
    summary.timings = {"analysis_s": t_analysis, "total_s": summary.seconds, **times}
    return summary


def _frame_jobs(batch: list[VideoFrame], track: DriverTrack, densepose: FrameDensePose, size: int,
                options: VideoOptions, hold_frames: int, last_valid):
    """Per frame: ``(index, crop, target_uv (S, S, 2) or None)``, applying the on-missing policy."""
    from retarget.uvmap import iuv_to_uv

    results = densepose.results([f.index for f in batch], [f.rgb for f in batch])
    crops, iuvs = [], []
    for frame, result in zip(batch, results):
        crop = track.crop(frame.index)
        if crop is None:
            crops.append(None)
            iuvs.append(None)
            continue
        box = track.boxes[frame.index]
        iuv = result.iuv * person_mask(result.iuv, box)[..., None]
        crops.append(crop)
        iuvs.append(crop_image(iuv, crop, size, nearest=True))
    valid = [i for i, v in enumerate(iuvs) if v is not None]
    uvs = iuv_to_uv(np.stack([iuvs[i] for i in valid]), table=options.table) if valid else []
    jobs = []
    for frame, crop in zip(batch, crops):
        if crop is not None:
            uv = uvs[valid.index(len(jobs))]
            last_valid = (frame.index, crop, uv)
            jobs.append((frame.index, crop, uv))
        elif (options.on_missing == "hold" and last_valid is not None
              and frame.index - last_valid[0] <= hold_frames):
            jobs.append((frame.index, last_valid[1], last_valid[2]))
        else:
            jobs.append((frame.index, None, None))
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
    masks = device_to_host(result.target_mask[:, 0])
    return list(zip(rgb, masks))


def _autocast(precision: str, device: torch.device):
    """Mixed precision for the per-frame torch networks (fp32, int8: a no-op context; int8 is OpenVINO's)."""
    if precision not in ("bf16", "fp16"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _composite(frame: VideoFrame, crop: SquareCrop | None, person, background: np.ndarray,
               options: VideoOptions, size: int) -> np.ndarray:
    """One output frame as ``uint8`` RGB."""
    if options.output_mode == "crop":
        if crop is not None:
            base = crop_image(background, crop, size, replicate=True).astype(np.float32)
        else:
            base = crop_image(background, SquareCrop.around(background.shape[1] / 2, background.shape[0] / 2,
                                                            min(background.shape[:2])), size)
        canvas = base.copy()
        if person is not None:
            rgb, mask = person
            alpha = feather(mask, options.feather_px)[..., None]
            canvas = canvas * (1 - alpha) + extend_colours(rgb, mask, 2 * options.feather_px) * alpha
    else:
        canvas = np.array(background, dtype=np.float32, copy=True)
        if person is not None and crop is not None:
            rgb, mask = person
            paste_crop(canvas, crop, extend_colours(rgb, mask, 2 * options.feather_px),
                       feather(mask, options.feather_px))
    out = np.clip(np.round(canvas * 255.0), 0, 255).astype(np.uint8)
    if options.side_by_side:
        driver = frame.rgb if options.output_mode == "frame" else (
            crop_image(frame.rgb, crop, size, replicate=True) if crop is not None
            else crop_image(frame.rgb, SquareCrop.around(frame.rgb.shape[1] / 2, frame.rgb.shape[0] / 2,
                                                         min(frame.rgb.shape[:2])), size))
        out = np.concatenate([driver, out], axis=1)
    return out
