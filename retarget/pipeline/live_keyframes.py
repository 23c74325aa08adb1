"""DensePose keyframes in a live stream (``retarget stream --densepose-every K|auto``).

:class:`LiveKeyframes` stands where a stream's per-frame DensePose stands (``callable(index, rgb) ->
DensePoseResult``, :class:`retarget.pipeline.live.LiveSession`'s ``densepose``). DensePose runs on
keyframes only; every other frame gets the newest keyframe's IUV carried *forward* to it by optical flow
(:class:`densepose_adapter.keyframes.KeyframePropagator`: DIS flow straight from the frame to the keyframe,
the silhouette moved with the person, its cut / forward-backward / area / new-content checks), on the
person's window only (:func:`live_settings`). Past frames only: a stream has no later keyframe to carry
back from. Carried frames have no DensePose noise of their own, so the live temporal filter passes them
through and filters the frames whose IUV is new (``carried_last``; :class:`retarget.pipeline.live.LiveSession`).

Two modes:

- **synchronous** (``asynchronous=False``: a file read as fast as possible with ``--drop none``, or
  ``--input-iuv``): a frame the propagator refuses to carry to (the first, every K-th, a cut, unreliable
  flow, ...; ``auto``: the measured motion, at most 5 frames apart) *is* a keyframe: DensePose runs on it
  (a sidecar is read at it) before it is rendered. Deterministic: the same frames give the same keyframes
  and the same output, run after run.
- **asynchronous** (a DensePose model on a live input): DensePose runs in a worker thread
  (:class:`DensePoseWorker`: at most one call in flight, no queue; a keyframe wanted while it is busy goes
  to the newest frame once it is free). Every frame is rendered at once from the newest *finished* keyframe
  carried to it, so a frame never waits for DensePose. When a keyframe is asked for: ``auto`` — as soon as
  the previous DensePose finished (the interval follows how long DensePose takes); ``K`` — K input frames
  after the previous request; and at once whenever a check fails (unreliable flow, a changed area, new
  content, a cut). A frame that cannot be carried to — before the first keyframe has arrived, or after a
  cut until the next one — gets an empty result: ``--on-missing`` decides what it shows (``hold``: the last
  pose for 0.5 s).

Threads (asynchronous mode, while the stream runs; :func:`thread_budget`): torch's intra-op threads are set
to half the usable cores (at least 1) — the DensePose worker and the renderer each run torch, so together
they use the cores, not twice as many — and OpenCV to 1 thread (the flow already runs on one); both are
restored when the stream ends. (A lower scheduling priority for the worker was tried twice and left out:
on cores loaded by other processes it starved DensePose — one keyframe in 12 s — and, with the cheaper
window carry, lowered the renderer's p95 latency from 132–155 to 110–115 ms only at that price;
docs/performance.md.) At the end of a stream a DensePose call still in flight is waited for (its
result unused). OpenVINO, when it runs the DensePose backbone, sizes its own pool
(one stream) on top of this; the counts are printed by ``bench/stream.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from densepose_adapter.keyframes import KeyframePropagator, KeyframeSettings, KeyIUV
from densepose_adapter.temporal import guide_from_rgb
from densepose_adapter.types import DensePoseResult


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


#: Python's GIL switch interval while an asynchronous stream runs (seconds; Python's default is 0.005). The
#: DensePose worker gives the GIL up around every torch op and must wait for it back; with the renderer busy
#: in Python, each wait lasts up to the interval, which at the default made a DensePose call several times
#: slower inside the stream than alone.
SWITCH_INTERVAL = 0.0005


@contextlib.contextmanager
def thread_budget(cores: int | None = None):
    """torch at ``max(1, cores // 2)`` intra-op threads, OpenCV at 1 and the GIL switch interval at
    :data:`SWITCH_INTERVAL` while the block runs (two torch users: the DensePose worker and the renderer);
    previous settings restored after."""
    import cv2
    import torch

    cores = cores or usable_cores()
    torch_before, cv_before, switch_before = torch.get_num_threads(), cv2.getNumThreads(), sys.getswitchinterval()
    torch.set_num_threads(max(1, cores // 2))
    cv2.setNumThreads(1)
    sys.setswitchinterval(min(switch_before, SWITCH_INTERVAL))
    try:
        yield {"torch": torch.get_num_threads(), "opencv": 1, "cores": cores}
    finally:
        torch.set_num_threads(torch_before)
        cv2.setNumThreads(cv_before)
        sys.setswitchinterval(switch_before)


#: Long side of the person window's optical flow in a live stream (``KeyframeSettings.flow_side`` with
#: ``crop``): a window up to 384 px (the example driver's dancer) gets its flow at full resolution, a larger
#: one (a person filling an HD camera frame) at 1/2, 1/3, ... (half resolution on the example: about 4 ms
#: less CPU per carried frame, agreement with every-frame DensePose within ±0.01 on the real clips but 0.025
#: lower on the example's fast dancer 12 frames from its keyframe; docs/performance.md).
LIVE_FLOW_SIDE = 384


def live_settings(every: int | None) -> KeyframeSettings:
    """The keyframe settings of a live stream: the offline checks, with the carrying on the person's window
    (``crop``: flows at :data:`LIVE_FLOW_SIDE`, each starting from the previous frame's flow to the same
    keyframe; the cut and new-content checks on a coarse whole-frame flow)."""
    return KeyframeSettings(every=every, crop=True, flow_side=LIVE_FLOW_SIDE)


def empty_result(hw: tuple[int, int]) -> DensePoseResult:
    """No person (``--on-missing`` decides the frame)."""
    return DensePoseResult(image_hw=(int(hw[0]), int(hw[1])), boxes=np.zeros((0, 4), np.float32),
                           scores=np.zeros(0, np.float32), iuv=np.zeros((hw[0], hw[1], 3), np.uint8))


class DensePoseWorker:
    """DensePose in one background thread: at most one call in flight, nothing queued.

    :meth:`submit` hands a frame over when the worker is idle (else returns ``False``); :meth:`poll` returns
    the newest finished ``(index, grey, result, seconds)`` once, or ``None``, and re-raises a failed call.
    """

    def __init__(self, densepose):
        self.densepose = densepose
        self._cond = threading.Condition()
        self._job = None
        self._done = None
        self._error: BaseException | None = None
        self._busy = False
        self._closed = False
        self.calls = 0
        self.seconds: list[float] = []
        self._thread = threading.Thread(target=self._loop, name="retarget-densepose", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy

    def submit(self, index: int, rgb: np.ndarray, grey: np.ndarray) -> bool:
        with self._cond:
            if self._busy or self._closed:
                return False
            self._busy = True
            self._job = (index, rgb, grey)
            self._cond.notify_all()
            return True

    def poll(self):
        with self._cond:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            done, self._done = self._done, None
            return done

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no call is in flight (tests, benchmarks); ``False`` on timeout."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._busy:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left if left is not None else 0.1)
            return True

    def close(self, wait: float = 60.0) -> None:
        """Stop the worker: a call in flight is discarded, but waited for (up to ``wait`` seconds) so that no
        DensePose runs while the interpreter shuts down (torch would abort the process)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(wait)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                index, rgb, grey = self._job
                self._job = None
            tick = time.perf_counter()
            try:
                result = self.densepose(index, rgb)
                error = None
            except BaseException as exc:  # noqa: BLE001 - handed to the rendering thread by poll()
                result, error = None, exc
            spent = time.perf_counter() - tick
            with self._cond:
                if error is not None:
                    self._error = error
                else:
                    self._done = (index, grey, result, spent)  # a newer result replaces one not taken yet
                self.calls += 1
                self.seconds.append(spent)
                del self.seconds[:-64]
                self._busy = False
                self._cond.notify_all()


@dataclass
class KeyframeLog:
    """What the keyframe stage did in a stream (``bench/stream.py``, tests)."""

    keyframes: list = field(default_factory=list)  # input indices DensePose ran on (finished and used)
    reasons: dict = field(default_factory=dict)  # keyframe index -> why it was asked for
    carried: int = 0  # frames given a carried keyframe
    missing: int = 0  # frames given no person (no keyframe yet, or a cut): --on-missing
    lag: list = field(default_factory=list)  # async: frames between a keyframe and the frame it arrived at


class LiveKeyframes:
    """``callable(index, rgb) -> DensePoseResult`` on keyframes + flow (see the module docstring).

    Args:
        densepose: ``callable(index, rgb) -> DensePoseResult`` (a model, or a sidecar read at that index).
        every: keyframe interval K (≥ 2), or ``None`` for ``auto``.
        asynchronous: run ``densepose`` in a worker thread (live inputs), else on the keyframe itself.
        settings: the propagator's checks (default: :func:`live_settings`).
    """

    def __init__(self, densepose, every: int | None, asynchronous: bool, settings: KeyframeSettings | None = None):
        self.densepose = densepose
        self.every = every
        self.asynchronous = asynchronous
        self.settings = settings or live_settings(every)
        self.prop = KeyframePropagator(self.settings)
        self.log = KeyframeLog()
        self.worker = DensePoseWorker(self._densepose_prepared) if asynchronous else None
        self._last_request: int | None = None
        self._requests: dict[int, str] = {}
        #: whether the last result was carried by flow (or empty), not DensePose's own (the live temporal
        #: filter holds such frames: :meth:`retarget.pipeline.temporal.LiveTemporalFilter.__call__`)
        self.carried_last = False
        self.grey_last: np.ndarray | None = None  # the last frame's grey guide (the filter's too)

    @property
    def stage_name(self) -> str:
        """Name of this stage's time in :class:`~retarget.pipeline.video.StageTimes` (the renderer's thread)."""
        return "keyframe_flow" if self.worker is not None else "densepose_and_flow"

    @property
    def calls(self) -> int:
        """DensePose calls so far (finished)."""
        return self.worker.calls if self.worker is not None else len(self.log.keyframes)

    def __call__(self, index: int, rgb: np.ndarray) -> DensePoseResult:
        grey = guide_from_rgb(rgb)
        self.grey_last, self.carried_last = grey, True
        if self.worker is None:
            return self._sync(index, rgb, grey)
        return self._async(index, rgb, grey)

    def _sync(self, index: int, rgb: np.ndarray, grey: np.ndarray) -> DensePoseResult:
        carried = self.prop.carry(grey)
        if carried is not None:
            self.log.carried += 1
            return carried.result
        reason = self.prop.reason
        result = self.densepose(index, rgb)
        self.carried_last = False
        self.prop.keyframe(grey, result)
        self.log.keyframes.append(index)
        self.log.reasons[index] = reason
        return result

    def _async(self, index: int, rgb: np.ndarray, grey: np.ndarray) -> DensePoseResult:
        done = self.worker.poll()
        if done is not None:
            key_index, key_grey, (key_result, prepared), _ = done
            if key_grey.shape == grey.shape:
                self.prop.keyframe(key_grey, key_result, prepared=prepared)
                self.log.keyframes.append(key_index)
                self.log.reasons[key_index] = self._requests.get(key_index, "")
                self.log.lag.append(index - key_index)
                self.carried_last = False  # a new keyframe's IUV: the switch to it is filtered
            self._requests = {k: v for k, v in self._requests.items() if k > key_index}
        carried = self.prop.carry(grey, lenient=True)
        wants = self.prop.reason if carried is None else carried.wants
        if not wants:
            if self.every is None:
                wants = "auto"  # a new keyframe as soon as DensePose is free: K follows its time
            elif self._last_request is None or index - self._last_request >= self.every:
                wants = "interval"
        if wants and self.worker.submit(index, rgb, grey):
            self._last_request = index
            self._requests[index] = wants
        if carried is None:
            self.log.missing += 1
            return empty_result(rgb.shape[:2])
        self.log.carried += 1
        return carried.result

    def _densepose_prepared(self, index: int, rgb: np.ndarray):
        """The worker's call: DensePose, then what carrying from its result needs (in the worker thread,
        off the rendering path: :class:`~densepose_adapter.keyframes.KeyIUV`, its silhouette sources)."""
        result = self.densepose(index, rgb)
        prepared = KeyIUV(result.iuv)
        prepared.sources()
        return result, prepared

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
