"""DensePose keyframes as a stage of the video pipeline (``--densepose-every K|auto``).

:class:`KeyframeDensePose` wraps a :class:`~retarget.pipeline.densepose_stage.FrameDensePose` (model
or precomputed). Its :meth:`~KeyframeDensePose.stream` (pass 1) runs the raw stage on keyframes only
— a model on those frames, a precomputed sidecar read at those frames only — and carries their IUV
to the frames between by optical flow (:func:`densepose_adapter.keyframes.propagate`: both ways
between two keyframes, the clip's last frame a keyframe). Every frame's result is written to its own
cache entry with a ``keyframe`` flag (whether DensePose ran on it); pass 2 and ``retarget frames``
read them back with :meth:`~KeyframeDensePose.results`. The temporal filter, when on, runs on the
output of this stage.

Cache folder: ``cache_dir()/densepose/<driver-sha256[:20]>-<settings-sha256[:12]>/`` where the
settings are the raw source's key plus the keyframe settings' (:func:`keyframe_cache_key`), so
runs with another K never share entries. ``every = 1`` is no stage at all (today's behaviour).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from densepose_adapter.keyframes import KeyframeSettings, parse_every, propagate
from densepose_adapter.temporal import guide_from_rgb
from densepose_adapter.types import DensePoseResult
from retarget.errors import InputError, UsageError
from retarget.pipeline.densepose_stage import DensePoseCache, FrameDensePose, WrappingDensePose

#: largest fixed interval accepted (frames between keyframes wait in memory for the next one)
MAX_EVERY = 30


def check_every(value: str | int) -> int | None:
    """``--densepose-every`` → interval (``None`` = auto); a one-line :class:`UsageError` (exit 2) otherwise."""
    try:
        every = parse_every(value)
    except ValueError as exc:
        raise UsageError(f"--densepose-every {value}: {exc}") from None
    if every is not None and every > MAX_EVERY:
        raise UsageError(f"--densepose-every {value}: at most {MAX_EVERY} frames between keyframes (or auto)")
    return every


def keyframe_cache_key(backend, settings: KeyframeSettings) -> str:
    """Key of the keyframe stage's entries: the raw source's and the keyframe settings'."""
    from retarget.pipeline.temporal import source_signature

    return f"{source_signature(backend)}|{settings.key()}"


class KeyframeDensePose(WrappingDensePose):
    """DensePose on keyframes, IUV carried by flow in between (see the module docstring).

    Args:
        raw: the per-frame stage (only asked for keyframes).
        settings: keyframe settings (``every != 1``).
        cache: where every frame's result goes between the passes (with its keyframe flag).
        driver: the driver video, to stream frames asked for before pass 1 ran.
    """

    WRAPS = "raw"

    def __init__(self, raw: FrameDensePose, settings: KeyframeSettings, cache: DensePoseCache,
                 driver: Path | None = None):
        self.raw = raw  # not ``inner``: pass 2 must never ask the raw stage for a frame between keyframes
        self.settings = settings
        self.cache = cache
        self.driver = driver
        self.keyframes: list[int] = []  # frames DensePose ran on (or was read at), in the last stream
        self.reasons: dict[int, str] = {}  # keyframe → why (first, interval, cut, unreliable, ...)
        self._memory: dict[int, tuple[DensePoseResult, bool]] | None = None

    def stream(self, frames: Iterable, batch_size: int, times=None) -> Iterator[tuple[object, DensePoseResult]]:
        """``(frame, result)`` for every frame of ``frames`` (``VideoFrame``), in order; each written to the
        cache first. ``times.add`` gets the seconds of ``densepose`` (keyframes) and ``keyframe_flow``."""
        self.keyframes, self.reasons = [], {}
        spent = [0.0]

        def densepose(frame) -> DensePoseResult:
            tick = time.perf_counter()
            result = self.raw.results([frame.index], [frame.rgb])[0]
            spent[0] += time.perf_counter() - tick
            return result

        def guided() -> Iterator[tuple[object, np.ndarray]]:
            for frame in frames:
                yield frame, guide_from_rgb(frame.rgb)

        tick = time.perf_counter()
        for frame, carried in propagate(guided(), densepose, self.settings):
            if carried.keyframe:
                self.keyframes.append(frame.index)
                self.reasons[frame.index] = carried.reason
            self._keep(frame.index, carried.result, carried.keyframe)
            if times is not None:
                now = time.perf_counter()
                times.add("densepose", spent[0])
                times.add("keyframe_flow", now - tick - spent[0])
                spent[0], tick = 0.0, now
            yield frame, carried.result
            tick = time.perf_counter()

    def _keep(self, index: int, result: DensePoseResult, keyframe: bool) -> None:
        """Store a frame; when the cache cannot be written, keep the frames in memory (with a note)."""
        if self._memory is None:
            try:
                self.cache.store(index, result, keyframe=keyframe)
                return
            except OSError as exc:
                print(f"note: cannot write the DensePose cache in {self.cache.folder} ({exc.strerror or exc}); "
                      "keeping the keyframe results in memory", file=sys.stderr)
                self._memory = {}
        self._memory[index] = (result, keyframe)

    def entry(self, index: int) -> tuple[DensePoseResult | None, bool | None]:
        """``(result, keyframe)`` of a streamed frame (``(None, None)`` when not there)."""
        if self._memory is not None:
            return self._memory.get(index, (None, None))
        return self.cache.load_entry(index)

    def results(self, indices: Sequence[int], images: Sequence[np.ndarray]) -> list[DensePoseResult]:
        """Results of ``indices`` from the cache; frames not streamed yet are streamed first (from the start)."""
        out = []
        for index, image in zip(indices, images):
            result = self.entry(index)[0]
            if result is None and self.driver is not None:
                self._fill(index)
                result = self.entry(index)[0]
            if result is None or tuple(result.image_hw) != tuple(image.shape[:2]):
                raise InputError(f"DensePose of frame {index} is missing from {self.cache.folder} "
                                 "(was the cache cleared during the run?); run again")
            out.append(result)
        return out

    def _fill(self, index: int) -> None:
        from retarget.io.video import iter_frames, probe_video

        frames = iter_frames(self.driver, probe_video(self.driver).rotation)
        try:
            for frame, _ in self.stream(frames, batch_size=1):
                if frame.index >= index:  # yielded frames are stored already
                    break
        finally:
            frames.close()


def with_keyframes(stage: FrameDensePose, driver: Path, every: int | None) -> FrameDensePose | KeyframeDensePose:
    """``stage`` on keyframes every ``every`` frames (``None`` = auto), or ``stage`` itself for 1."""
    if every == 1:
        return stage
    settings = KeyframeSettings(every=every)
    cache = DensePoseCache(driver, keyframe_cache_key(stage.backend, settings))
    return KeyframeDensePose(stage, settings, cache, Path(driver))
