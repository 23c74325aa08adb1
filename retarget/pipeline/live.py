"""Live retargeting: the source prepared once, then the driver frame by frame, past frames only.

``retarget video`` sees the whole driver before it renders (pass 1: person track smoothed both ways
in time, scene plate as a median over the clip, temporal filter with look-ahead). A live stream has
only the frames so far, so :class:`LiveSession` runs the causal counterparts of pass 1 per frame:

- DensePose of the frame (a model backend, a precomputed sidecar, or results given by the caller),
  then the temporal filter over the frame and the ``radius`` before it
  (:class:`retarget.pipeline.temporal.LiveTemporalFilter`);
- the person choice and following of ``video`` (:class:`retarget.pipeline.people.PersonTracker`), the crop
  smoothed over past frames (:class:`retarget.pipeline.framing.CausalTrackSmoother`);
- for ``--background scene`` the last-seen background (:class:`retarget.pipeline.background.LiveScenePlate`).

Pass 2 is ``video``'s own stages (:class:`~retarget.pipeline.video.TargetStage`,
:class:`~retarget.pipeline.video.WarpRefineStage`, :class:`~retarget.pipeline.video.CompositeStage`), run
on one frame at a time against an online track (:class:`OnlineTrack`). Memory holds a few frames,
whatever the stream length.

Python API::

    from retarget.pipeline.live import Retargeter

    live = Retargeter("photo.jpg", "photo_IUV.png", background="source")
    for rgb in live.stream(frames):        # frames: iterable of (H, W, 3) uint8 RGB
        show(rgb)
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from densepose_adapter.types import DensePoseResult
from retarget.errors import InputError, UsageError
from retarget.io.video import VideoFrame, VideoInfo
from retarget.pipeline.background import LiveScenePlate, parse_colour, source_background
from retarget.pipeline.framing import CausalTrackSmoother, SquareCrop, box_to_crop_params
from retarget.pipeline.pair import Models, SourceState
from retarget.pipeline.people import People, PersonChoice, PersonTracker, find_people
from retarget.pipeline.source import SourceCrop
from retarget.pipeline.video import (
    CompositeStage,
    RenderPlan,
    StageTimes,
    SteadyStage,
    TargetStage,
    VideoOptions,
    WarpRefineStage,
    engine_models,
    options_for_path,
)

#: Frames a stream's per-frame state keeps (track entries, results in flight).
KEEP_FRAMES = 8
#: Default frame rate when neither the stream nor the caller tells one (hold time, smoothing).
DEFAULT_FPS = Fraction(25)


class OnlineTrack:
    """The person track of a live stream, built one frame at a time from past frames only.

    It answers what :class:`retarget.pipeline.video.DriverTrack` answers for pass 2 (``boxes[index]``,
    :meth:`crop`, :meth:`people`, ``info``) for the last :data:`KEEP_FRAMES` frames.
    """

    def __init__(self, info: VideoInfo, choice: PersonChoice, split_blobs: bool, sigma_frames: float):
        self.info = info
        self.split_blobs = split_blobs
        self.tracker = PersonTracker(choice, info.width, info.height)
        self.smoother = CausalTrackSmoother(sigma_frames)
        self.boxes: dict[int, np.ndarray] = {}
        self.crops: dict[int, np.ndarray] = {}
        self._people: tuple[int, People] | None = None  # (id of the result, its people): found once per frame

    def people(self, result: DensePoseResult) -> People:
        """The people of a frame's DensePose ``result``."""
        if self._people is not None and self._people[0] == id(result):
            return self._people[1]
        people = find_people(result.iuv, result.boxes, self.split_blobs, result.scores)
        self._people = (id(result), people)
        return people

    def observe(self, index: int, result: DensePoseResult) -> None:
        """Follow the person into frame ``index`` (frames come in increasing index order)."""
        people = self.people(result) if result.has_person else None
        chosen = self.tracker.step(people, index) if people is not None else None
        box = people.boxes[chosen] if chosen is not None and people.mask(chosen).any() else None
        self.boxes[index] = box if box is not None else np.full(4, np.nan)
        params = box_to_crop_params(box) if box is not None else np.full(3, np.nan)
        self.crops[index] = self.smoother.step(params)
        for table in (self.boxes, self.crops):
            for old in [k for k in table if k <= index - KEEP_FRAMES]:
                del table[old]

    def crop(self, index: int) -> SquareCrop | None:
        params = self.crops.get(index)
        if params is None or np.isnan(params).any():
            return None
        return SquareCrop.around(*params)


class FrameResults:
    """DensePose results of the frames in flight, by frame index (what pass 2's stages ask for)."""

    precomputed = False

    def __init__(self, raw: "FrameResults | None" = None):
        self._results: dict[int, DensePoseResult] = {}
        if raw is not None:  # the unfiltered results: the other people kept in the output come from them
            self.inner = raw

    def put(self, index: int, result: DensePoseResult) -> None:
        self._results[index] = result
        for old in [k for k in self._results if k <= index - KEEP_FRAMES]:
            del self._results[old]

    def results(self, indices, images) -> list[DensePoseResult]:
        return [self._results[i] for i in indices]


def check_frame(rgb, what: str = "frame") -> np.ndarray:
    """``rgb`` as a ``(H, W, 3) uint8`` array, or a one-line :class:`InputError`."""
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InputError(f"{what}: expected an (H, W, 3) uint8 RGB image, got {array.dtype} {array.shape}")
    return array


def as_result(item, hw: tuple[int, int], what: str) -> DensePoseResult:
    """A caller's DensePose for one frame: a :class:`DensePoseResult` or an ``(H, W, 3) uint8`` IUV image."""
    if isinstance(item, DensePoseResult):
        result = item
    else:
        iuv = np.asarray(item)
        if iuv.ndim != 3 or iuv.shape[2] != 3 or iuv.dtype != np.uint8:
            raise InputError(f"{what}: expected an (H, W, 3) uint8 IUV image, got {iuv.dtype} {iuv.shape}")
        if int(iuv[..., 0].max(initial=0)) > 24:
            raise InputError(f"{what}: part index {int(iuv[..., 0].max())} above 24; not a DensePose IUV image")
        result = DensePoseResult.from_iuv(iuv)
    if tuple(result.iuv.shape[:2]) != tuple(hw):
        raise InputError(f"{what}: IUV is {result.iuv.shape[1]}x{result.iuv.shape[0]} but the frame is "
                         f"{hw[1]}x{hw[0]}")
    return result


class LiveSession:
    """One stream's per-frame state: feed frames in order with :meth:`process`.

    Args:
        retargeter: the prepared source and settings.
        width, height: frame size of the stream (every frame must have it).
        fps: the stream's frame rate (``--on-missing hold`` time, crop smoothing).
        densepose: ``callable(index, rgb) -> DensePoseResult`` for frames given without a result
            (a model backend or a sidecar), or ``None`` when every frame comes with its result.
        split_blobs: the results have no person boxes (IUV images): people are told apart by blobs.
    """

    def __init__(self, retargeter: "Retargeter", width: int, height: int, fps: Fraction | float | None = None,
                 densepose=None, split_blobs: bool = False):
        options = retargeter.options
        fps = Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FPS
        self.info = VideoInfo(width=width, height=height, fps=fps, time_base=1 / fps, frame_count=0, duration=0.0,
                              has_audio=False, rotation=0)
        self.densepose = densepose
        self.times = StageTimes()
        self.track = OnlineTrack(self.info, PersonChoice.parse(options.person), split_blobs,
                                 options.smooth_sigma_seconds * float(fps))
        self.raw = FrameResults()
        self.filtered = self.raw
        self.filter = None
        if options.temporal_radius > 0:
            from retarget.pipeline.temporal import LiveTemporalFilter

            self.filter = LiveTemporalFilter(options.temporal_radius)
            self.filtered = FrameResults(self.raw)
        self.plate = LiveScenePlate(height, width) if options.background == "scene" else None
        if options.background == "scene":
            background = np.zeros((height, width, 3), np.float32)
        elif options.background == "source":
            source = retargeter.source
            background = source_background(source.photo, source.person_mask, height, width)
        else:
            background = np.broadcast_to(parse_colour(options.background), (height, width, 3)).astype(np.float32)
        self.plan = RenderPlan(options=options, track=self.track, background=background,
                               size=retargeter.state.image.shape[-1])
        self.targets = TargetStage(self.plan, self.filtered, self.times)
        self.warp = WarpRefineStage(retargeter.state, retargeter.frame_models, options, self.times)
        self.steady = SteadyStage(self.plan.size, options.steady, self.times)
        self.composite = CompositeStage(self.plan, self.times)
        self.last_index = -1

    @property
    def output_size(self) -> tuple[int, int]:
        """``(width, height)`` of the output frames."""
        return self.plan.output_size

    def process(self, frame: VideoFrame | np.ndarray, result: DensePoseResult | np.ndarray | None = None):
        """The output ``(H', W', 3) uint8`` RGB of the next frame, or ``None`` (no person, ``--on-missing skip``).

        Args:
            frame: a :class:`VideoFrame` (its ``index`` counts every frame of the stream, dropped
                ones included, and must increase) or an RGB array (the next index).
            result: the frame's DensePose (a result or an IUV image), else the session's ``densepose``.
        """
        if not isinstance(frame, VideoFrame):
            index = self.last_index + 1
            frame = VideoFrame(index=index, pts=None, time=index / float(self.info.fps), rgb=frame)
        rgb = check_frame(frame.rgb, f"frame {frame.index}")
        if rgb.shape[:2] != (self.info.height, self.info.width):
            raise InputError(f"frame {frame.index} is {rgb.shape[1]}x{rgb.shape[0]} but the stream started at "
                             f"{self.info.width}x{self.info.height}; a stream keeps one frame size")
        if frame.index <= self.last_index:
            raise ValueError(f"frame index {frame.index} after {self.last_index}: frames must come in order")
        self.last_index = frame.index
        tick = time.perf_counter()
        if result is None:
            if self.densepose is None:
                raise UsageError("no DensePose for the frame: give its IUV, or DensePose weights")
            raw = self.densepose(frame.index, rgb)
        else:
            raw = as_result(result, rgb.shape[:2], f"IUV of frame {frame.index}")
        self.times.add(getattr(self.densepose, "stage_name", "densepose") if result is None else "densepose",
                       time.perf_counter() - tick)
        tick = time.perf_counter()
        if self.filter is not None:
            # frames carried from a DensePose keyframe (--densepose-every) have no per-frame DensePose noise:
            # the filter runs on the keyframes' own results only (it then smooths the switch to a new one)
            ours = result is None  # the stage ran on this frame (its hints are this frame's)
            carried = ours and getattr(self.densepose, "carried_last", False)
            guide = getattr(self.densepose, "grey_last", None) if ours else None
            filtered = self.filter(rgb, raw, hold=carried, guide=guide)
        else:
            filtered = raw
        self.times.add("temporal_filter", time.perf_counter() - tick)
        tick = time.perf_counter()
        self.raw.put(frame.index, raw)
        if self.filtered is not self.raw:
            self.filtered.put(frame.index, filtered)
        self.track.observe(frame.index, filtered)
        if self.plate is not None:
            self.plate.add(rgb, filtered.iuv[..., 0] > 0)
            self.plan.background = self.plate.plate()
        self.times.add("track_and_plate", time.perf_counter() - tick)
        rendered = next(self.steady([self.warp(self.targets([frame]))]))
        out = next(iter(self.composite([rendered])), None)
        return None if out is None else out[0]

    def close(self) -> None:
        """End the stream: stops a DensePose keyframe worker (:mod:`retarget.pipeline.live_keyframes`)."""
        close = getattr(self.densepose, "close", None)
        if close is not None:
            close()


@dataclass
class RetargeterSettings:
    """What :class:`Retargeter` takes besides the :class:`VideoOptions` fields (keyword arguments)."""

    size: int = 256  # person crop side
    models: object = "auto"  # "auto" (installed weights, else weight-free), None (weight-free), a Models, a folder
    densepose_weights: Path | None = None
    densepose_size: int = 512
    densepose_config: str | None = None
    densepose_track: bool = True
    densepose_backend: str = "auto"  # auto | torchvision | detectron2 (model for frames without given IUV)
    densepose_model: object = None  # a ready DensePose backend (``predict(list of BGR images)``) instead
    allow_large: bool = False
    # with densepose_every != 1: run DensePose in a worker thread, frames rendered from the newest keyframe
    # carried forward (None: yes for a DensePose model, no for given IUV; retarget.pipeline.live_keyframes)
    densepose_async: bool | None = None


class Retargeter:
    """The person of one photo, ready to follow a stream of driver frames.

    The source work (DensePose of the photo when no IUV is given, texture, inpainting, refiner source
    branch) is done once here; :meth:`stream` and :meth:`session` then render frame by frame.

    Args:
        source_photo: path of the photo, or its ``(h, w, 3) uint8`` RGB array.
        source_iuv: its DensePose: an IUV PNG / UV ``.npy`` path, an ``(h, w, 3) uint8`` IUV array, or
            ``None`` (``<stem>_IUV.png`` beside the photo, else the DensePose model).
        **options: :class:`RetargeterSettings` fields (``size``, ``models``, ``densepose_*``) and
            :class:`retarget.pipeline.video.VideoOptions` fields (``background``, ``person``, ``on_missing``,
            ``temporal_radius`` (default 1 here: past frames only), ``device``, ``precision``, ``engine``,
            ``output_mode``, ``side_by_side``, ``fill``, ``densepose_every`` (``"K"`` / ``"auto"``: DensePose
            keyframes, :mod:`retarget.pipeline.live_keyframes`), ...), as for ``retarget video``.

    Raises:
        TypeError: an unknown option name. UsageError / InputError / WeightsError: as the CLI reports them.
    """

    def __init__(self, source_photo, source_iuv=None, **options):
        settings_fields = {f.name for f in dataclasses.fields(RetargeterSettings)}
        video_fields = {f.name for f in dataclasses.fields(VideoOptions)}
        unknown = sorted(set(options) - settings_fields - video_fields)
        if unknown:
            raise TypeError(f"Retargeter: unknown option(s) {', '.join(unknown)}")
        self.settings = RetargeterSettings(**{k: v for k, v in options.items() if k in settings_fields})
        video = {"command": "stream", "temporal_radius": 1, "batch_size": 1, "quiet": True}
        video.update({k: v for k, v in options.items() if k in video_fields})
        opts = VideoOptions(**video)
        opts.validate()
        size = self.settings.size
        if size % 4 or size < 64:
            raise UsageError(f"--size must be a multiple of 4 and at least 64, got {size}")
        models = self._models(self.settings.models, opts.device)
        opts = options_for_path(opts, models)  # --table auto and --precision, as `retarget video` resolves them
        self.options = opts
        self.models = models
        self._model_backend = self.settings.densepose_model
        self.source = self._load_source(source_photo, source_iuv)
        from retarget.pipeline.source import prepare_source_crop

        self.state: SourceState = prepare_source_crop(self.source, models, opts.device, fill=opts.fill)
        self.frame_models = engine_models(models, opts, size, batch_size=1)

    # -- setup ---------------------------------------------------------------------------------
    @staticmethod
    def _models(models, device: str) -> Models | None:
        if models is None or isinstance(models, Models):
            return models.to(device) if isinstance(models, Models) else None
        return Models.resolve(None if str(models) == "auto" else models, device)

    def _job(self, source: Path | None, source_iuv: Path | None, driver: str = "stream"):
        from retarget.pipeline.job import VideoJob

        s = self.settings
        return VideoJob(source=source or Path("photo"), driver=Path(driver), source_iuv=source_iuv, size=s.size,
                        densepose_backend=s.densepose_backend, densepose_weights=s.densepose_weights,
                        densepose_size=s.densepose_size, densepose_config=s.densepose_config,
                        densepose_track=s.densepose_track, allow_large=s.allow_large, options=self.options)

    def _load_source(self, photo, iuv) -> SourceCrop:
        from retarget.pipeline.source import frame_source

        if isinstance(photo, (str, Path)):
            from retarget.pipeline.job import check_densepose_weights, load_source, source_iuv_sidecar

            photo = Path(photo)
            if isinstance(iuv, (str, Path)) or iuv is None:
                job = self._job(photo, Path(iuv) if iuv is not None else None)
                if iuv is None and source_iuv_sidecar(photo) is None:
                    check_densepose_weights(job, [("source", photo)])
                return load_source(job)
            from retarget.io.image import MIN_SIDE, read_image_rgb

            photo = read_image_rgb(photo, min_side=MIN_SIDE, allow_large=self.settings.allow_large)
        photo = check_frame(photo, "source photo")
        if iuv is None:
            backend = self.model_backend("source", track=False)
            iuv = backend.predict([np.ascontiguousarray(photo[..., ::-1])])[0].iuv
        elif isinstance(iuv, (str, Path)):
            from retarget.io.iuv import read_iuv_png

            iuv = read_iuv_png(Path(iuv))
        result = as_result(iuv, photo.shape[:2], "source IUV")
        try:
            return frame_source(photo, iuv=result.iuv, size=self.settings.size, table=self.options.table)
        except ValueError as exc:
            raise InputError(f"source photo: {exc}") from None

    def model_backend(self, role: str = "stream", track: bool | None = None, name: str = "stream"):
        """The DensePose model (opened once), for frames without given IUV; missing weights are a
        one-line :class:`WeightsError` naming ``retarget weights fetch`` and ``--input-iuv``."""
        if self._model_backend is None:
            from retarget.errors import DensePoseWeightsMissing, WeightsError
            from retarget.pipeline.job import open_model_backend
            from retarget.pipeline.people import driver_tracking

            s = self.settings
            backend = "torchvision" if s.densepose_backend in ("auto", "precomputed") else s.densepose_backend
            if track is None:
                track = driver_tracking(s.densepose_track, self.options.person)
            try:
                self._model_backend = open_model_backend(backend, s.densepose_weights, s.densepose_size,
                                                         self.options.device, s.densepose_config, track,
                                                         engine=self.options.engine, quiet=self.options.quiet)
            except DensePoseWeightsMissing as exc:
                from retarget.weights.resolve import densepose_missing_message

                raise WeightsError(densepose_missing_message(exc.model, [(role, Path(name))], "stream")) from None
        return self._model_backend

    def model_densepose(self, name: str = "stream"):
        """``callable(index, rgb) -> DensePoseResult`` running the DensePose model on each frame."""
        backend = self.model_backend("stream", name=name)
        if hasattr(backend, "reset_tracking"):
            backend.reset_tracking()

        def run(index: int, rgb: np.ndarray) -> DensePoseResult:
            return backend.predict([np.ascontiguousarray(rgb[..., ::-1])])[0]

        return run

    def keyframes(self, densepose, asynchronous: bool):
        """``densepose`` on keyframes only with the IUV carried by flow between them
        (:class:`retarget.pipeline.live_keyframes.LiveKeyframes`), or ``densepose`` itself when
        ``densepose_every`` is 1. ``asynchronous``: DensePose in a worker thread (a model on a live input)."""
        every = self.options.keyframe_interval()
        if every == 1 or densepose is None:
            return densepose
        from retarget.pipeline.live_keyframes import LiveKeyframes

        return LiveKeyframes(densepose, every, asynchronous)

    # -- per stream ------------------------------------------------------------------------------
    def session(self, width: int, height: int, fps=None, densepose=None, split_blobs: bool = False) -> LiveSession:
        """A new stream of ``width`` x ``height`` frames (see :class:`LiveSession`)."""
        return LiveSession(self, width, height, fps, densepose, split_blobs)

    def stream(self, frames: Iterable, iuv: Iterable | None = None, fps=None) -> Iterator[np.ndarray]:
        """Output frames (``uint8`` RGB) for ``frames`` (``(H, W, 3) uint8`` RGB arrays or
        :class:`VideoFrame`), in order, one at a time.

        Args:
            frames: the driver frames, any iterable (a generator reading a camera is fine).
            iuv: per frame its DensePose (IUV image or result), in the same order; without it the
                DensePose model runs on every frame (weights needed).
            fps: frame rate (``--on-missing hold`` time, crop smoothing; default 25).

        A frame without a person under ``on_missing="skip"`` gives no output frame.

        With ``densepose_every`` K or ``auto`` (keyframes): given ``iuv`` is used at keyframes only, in the
        calling thread (deterministic); the DensePose model runs asynchronously in a worker thread unless
        ``densepose_async=False`` — each frame is rendered at once from the newest finished keyframe carried
        to it, frames before the first keyframe follow ``on_missing`` — with the thread counts of
        :func:`retarget.pipeline.live_keyframes.thread_budget` while the generator runs.
        """
        iuvs = iter(iuv) if iuv is not None else None
        session: LiveSession | None = None
        keyframes = self.options.keyframe_interval() != 1
        current: list = [None]  # given IUV of the frame being processed (read by the keyframe stage)
        budget = contextlib.ExitStack()
        try:
            for position, item in enumerate(frames):
                rgb = check_frame(item.rgb if isinstance(item, VideoFrame) else item, f"frame {position}")
                result = None
                if iuvs is not None:
                    result = next(iuvs, None)
                    if result is None:
                        raise InputError(f"iuv: no IUV for frame {position}; give one per frame")
                if session is None:
                    split = result is not None and not isinstance(result, DensePoseResult)  # IUV images: no boxes
                    if iuvs is None:
                        asynchronous = self.settings.densepose_async is not False
                        densepose = self.keyframes(self.model_densepose(), asynchronous)
                        if keyframes and asynchronous:
                            from retarget.pipeline.live_keyframes import thread_budget

                            budget.enter_context(thread_budget())
                    else:
                        def given(index: int, frame_rgb: np.ndarray) -> DensePoseResult:
                            return as_result(current[0], frame_rgb.shape[:2], f"IUV of frame {index}")

                        densepose = self.keyframes(given, False) if keyframes else None
                    session = self.session(rgb.shape[1], rgb.shape[0], fps, densepose, split)
                if keyframes and result is not None:
                    current[0], result = result, None  # the keyframe stage reads it on keyframes only
                out = session.process(item if isinstance(item, VideoFrame) else rgb, result)
                if out is not None:
                    yield out
        finally:
            if session is not None:
                session.close()
            budget.close()
