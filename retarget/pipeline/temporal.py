"""The temporal IUV filter as a stage of the video pipeline, cached per frame like raw DensePose.

:class:`FilteredDensePose` wraps a :class:`~retarget.pipeline.densepose_stage.FrameDensePose`
(model or precomputed). Pass 1 of the video runner (:func:`retarget.pipeline.video.analyse_driver`)
calls :meth:`FilteredDensePose.stream`: raw results are produced in order (model results still go to
their own cache), fed to :class:`densepose_adapter.temporal.TemporalIUVFilter` with the frames'
grey images as motion guides, and every filtered frame is written to its own cache entry as soon as
it is final (``radius`` frames later). Pass 2 and ``retarget frames`` read the filtered frames back
with :meth:`FilteredDensePose.results`. Memory stays flat in the clip length: the filter holds
``2·radius + 2`` frames and the stream ``radius`` decoded frames of look-ahead.

Cache folder: ``cache_dir()/densepose/<driver-sha256[:20]>-<settings-sha256[:12]>/`` where the
settings are the raw source's key plus the filter's (see :func:`filtered_cache_key`).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from densepose_adapter.temporal import TemporalIUVFilter, TemporalSettings, guide_from_rgb
from densepose_adapter.types import DensePoseResult
from retarget.errors import InputError
from retarget.pipeline.densepose_stage import DensePoseCache, FrameDensePose, WrappingDensePose


def source_signature(backend) -> str:
    """Cache key of a DensePose source; precomputed sidecars also get their files' sizes and times."""
    key = backend.cache_key()
    if getattr(backend, "name", "") != "precomputed":
        return key
    path = Path(backend.path)
    files = sorted(path.glob("*.png")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"{key}:{digest.hexdigest()[:16]}"


def filtered_cache_key(backend, settings: TemporalSettings) -> str:
    """Key of the filtered results: the raw source's and the filter settings'."""
    return f"{source_signature(backend)}|{settings.key()}"


def _with_boxes(raw: DensePoseResult, iuv: np.ndarray) -> DensePoseResult:
    """Filtered ``iuv`` with the raw detections; the person pixels' box when the raw frame had none."""
    if len(raw.boxes) or not (iuv[..., 0] > 0).any():
        return DensePoseResult(image_hw=tuple(iuv.shape[:2]), boxes=np.asarray(raw.boxes, np.float32).reshape(-1, 4),
                               scores=np.asarray(raw.scores, np.float32).reshape(-1), iuv=iuv)
    return DensePoseResult.from_iuv(iuv)


class FilteredDensePose(WrappingDensePose):
    """Temporally filtered DensePose results per driver frame (see the module docstring).

    Args:
        inner: the raw per-frame stage.
        settings: filter settings (``radius`` ≥ 1).
        cache: where filtered frames go between the passes.
        driver: the driver video, to filter frames asked for before they were streamed.
    """

    def __init__(self, inner: FrameDensePose, settings: TemporalSettings, cache: DensePoseCache,
                 driver: Path | None = None):
        self.driver = driver
        self._memory: dict[int, DensePoseResult] | None = None  # used only when the cache cannot be written
        self.inner = inner
        self.settings = settings
        self.cache = cache

    def stream(self, frames: Iterable, batch_size: int, times=None) -> Iterator[tuple[object, DensePoseResult]]:
        """``(frame, filtered result)`` for every frame of ``frames`` (``VideoFrame``), in order.

        Each result is written to the cache before it is yielded. ``times.add(stage, seconds)``, when
        given, is told the seconds of ``densepose`` (raw) and ``temporal_filter``.
        """
        filt = TemporalIUVFilter(self.settings)
        waiting: deque = deque()  # (frame, raw result) not yet final

        def emit(ready):
            for _, iuv in ready:  # ready frames come in order, so they are the oldest waiting ones
                frame, raw = waiting.popleft()
                result = _with_boxes(raw, iuv)
                self._keep(frame.index, result)
                yield frame, result

        for frame, raw in self.inner.stream(frames, batch_size, times):
            waiting.append((frame, raw))
            tick = time.perf_counter()
            ready = filt.push(raw.iuv, guide_from_rgb(frame.rgb))
            if times is not None:
                times.add("temporal_filter", time.perf_counter() - tick)
            yield from emit(ready)
        tick = time.perf_counter()
        ready = filt.finish()
        if times is not None:
            times.add("temporal_filter", time.perf_counter() - tick)
        yield from emit(ready)

    def _keep(self, index: int, result: DensePoseResult) -> None:
        """Store a filtered frame; if the cache cannot be written (disk full, read-only), keep the
        frames in memory instead, with a note (memory then grows with the clip)."""
        if self._memory is None:
            try:
                self.cache.store(index, result)
                return
            except OSError as exc:
                print(f"note: cannot write the DensePose cache in {self.cache.folder} ({exc.strerror or exc}); "
                      "keeping the filtered frames in memory", file=sys.stderr)
                self._memory = {}
        self._memory[index] = result

    def results(self, indices: Sequence[int], images: Sequence[np.ndarray]) -> list[DensePoseResult]:
        """Filtered results of ``indices``, from the cache; frames not streamed yet (``retarget frames
        --only-densepose`` skips pass 1) are filtered first, streaming the driver from its start."""
        out = []
        for index, image in zip(indices, images):
            hw = image.shape[:2]  # an entry declaring more than one such frame is not read
            result = self._memory.get(index) if self._memory is not None else self.cache.load(index, hw)
            if result is None and self.driver is not None:
                self._fill(index)
                result = self._memory.get(index) if self._memory is not None else self.cache.load(index, hw)
            if result is None or tuple(result.image_hw) != tuple(image.shape[:2]):
                raise InputError(f"filtered DensePose of frame {index} is missing from {self.cache.folder} "
                                 "(was the cache cleared during the run?); run again")
            out.append(result)
        return out

    def _fill(self, index: int) -> None:
        from retarget.io.video import iter_frames, probe_video

        frames = iter_frames(self.driver, probe_video(self.driver).rotation)
        try:
            for frame, _ in self.stream(frames, batch_size=1):
                if frame.index >= index:
                    break
        finally:
            frames.close()


def with_temporal_filter(stage, driver: Path, radius: int):
    """``stage`` behind the temporal filter (``radius`` frames each side), or ``stage`` itself for 0."""
    if radius <= 0:
        return stage
    settings = TemporalSettings(radius=int(radius))
    key = filtered_cache_key(stage.backend, settings)
    keyframes = getattr(stage, "keyframes", None)
    if keyframes is not None:  # a keyframe stage (retarget.pipeline.keyframes): its settings are part of the key
        key = f"{key}|{stage.settings.key()}"
    cache = DensePoseCache(driver, key)
    return FilteredDensePose(stage, settings, cache, Path(driver))


class LiveTemporalFilter:
    """The temporal filter in causal form for live streams (:class:`TemporalIUVFilter` ``causal=True``):
    each raw result is filtered at once over itself and the ``radius`` frames before it."""

    def __init__(self, radius: int):
        self.filter = TemporalIUVFilter(TemporalSettings(radius=int(radius)), causal=True)

    def __call__(self, rgb: np.ndarray, raw: DensePoseResult, hold: bool = False,
                 guide: np.ndarray | None = None) -> DensePoseResult:
        """The filtered result of the next frame (``rgb``: its ``(H, W, 3) uint8`` image, the motion guide;
        ``guide``: its :func:`guide_from_rgb` when already made).

        ``hold``: the frame is not filtered but kept as the previous frame of the next one's window
        (:meth:`TemporalIUVFilter.hold`): for frames carried by flow from a DensePose keyframe, which have
        no per-frame DensePose noise (a live stream with ``--densepose-every``)."""
        guide = guide if guide is not None else guide_from_rgb(rgb)
        if hold:
            self.filter.hold(raw.iuv, guide)
            return raw
        ((_, iuv),) = self.filter.push(raw.iuv, guide)
        return _with_boxes(raw, iuv)
