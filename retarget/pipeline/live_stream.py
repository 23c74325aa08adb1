"""``retarget stream``'s runner: a live input through a :class:`~retarget.pipeline.live.LiveSession` to a live
output, with a latency policy, per-frame statistics and a clean stop.

Threads: a reader thread decodes the input (paced with ``--realtime``) into a :class:`FrameQueue`; the
calling thread takes frames from it, renders them and writes them. The queue is bounded:

- ``drop="late"`` (default for cameras, URLs and ``--realtime`` files): it holds at most ``queue``
  waiting frames; when a new frame comes and it is full, the *oldest* waiting frame is dropped. Latency
  stays about one frame's processing time, and the output has gaps in time, not a speed-up.
- ``drop="none"`` (default for pipes and files): the reader waits for room (back-pressure): every frame
  is rendered, latency grows when processing is slower than the input.

Stop: setting ``stop`` (the CLI does on Ctrl-C / SIGTERM) stops the reading; the frames already read are
rendered and the output is closed so that it is valid.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retarget.errors import InputError, UsageError
from retarget.io.stream_io import (
    InputEnded,
    StreamInput,
    check_stream_crf,
    open_output,
    output_format,
    output_kind,
    remove_output,
)
from retarget.io.video import VideoFrame
from retarget.pipeline.live import Retargeter

DROPS = ("late", "none")
#: Test hook: milliseconds added to every frame's warp + refine (an artificially slow refiner).
DELAY_ENV = "RETARGET_STREAM_TEST_DELAY_MS"


#: Longest --timeout accepted (a day): a wait for a first frame or the next one ends within it.
MAX_TIMEOUT = 86400.0


@dataclass
class StreamSettings:
    """What ``retarget stream`` does besides rendering (its I/O options)."""

    input: str
    output: str
    input_format: str | None = None
    output_format: str | None = None
    input_iuv: Path | None = None
    drop: str | None = None  # late | none | None: late for live inputs, none for pipes and files
    queue: int = 1  # frames waiting for the renderer under drop="late"
    realtime: bool = False
    timeout: float = 10.0
    stats: Path | None = None
    overwrite: bool = False
    max_frames: int | None = None  # stop reading after this many input frames
    crf: int | None = None  # H.264 quality of encoded outputs (None: retarget.io.stream_io.STREAM_CRF)

    def validate(self) -> None:
        if self.drop is not None and self.drop not in DROPS:
            raise UsageError(f"--drop {self.drop!r}: expected late or none")
        if self.queue < 1:
            raise UsageError(f"--queue must be at least 1, got {self.queue}")
        if not (0 < self.timeout <= MAX_TIMEOUT):  # also NaN and infinity (a NaN wait never ended)
            raise UsageError(f"--timeout must be from more than 0 to {MAX_TIMEOUT:g} seconds, got {self.timeout:g}")
        if self.realtime and self.input == "-":
            raise UsageError("--realtime paces a file; a pipe comes at its sender's pace")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"--max-frames must be at least 1, got {self.max_frames}")
        check_stream_crf(self.crf, output_format(self.output, self.output_format))  # before any work
        if self.output == "-" and _isatty(sys.stdout):
            raise UsageError("--output -: stdout is a terminal; pipe it into a player (| ffplay -) or give --output "
                             "FILE|URL")
        if self.input == "-" and _isatty(sys.stdin):
            raise UsageError("--input -: stdin is a terminal; pipe a video in (ffmpeg ... -f yuv4mpegpipe - | ...) "
                             "or give --input FILE|URL|/dev/videoN")


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


@dataclass
class StreamSummary:
    """What a stream run did (the stderr summary line, and ``bench/stream.py``'s figures)."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list)
    stopped: str | None = None  # why the run ended early: "interrupted", or the input's note
    times: dict = field(default_factory=dict)
    keyframes: object = None  # the keyframe stage's log (retarget.pipeline.live_keyframes.KeyframeLog), if any
    densepose_calls: int | None = None  # with keyframes: DensePose calls finished

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0

    def line(self) -> str:
        end = f" ({self.stopped})" if self.stopped else ""
        keys = f" keyframes={len(self.keyframes.keyframes)}" if self.keyframes is not None else ""
        return (f"stream: frames in={self.frames_in} out={self.frames_out} dropped={self.dropped} "
                f"fps={self.fps:.2f} latency_p50_ms={self.percentile(50):.1f} "
                f"latency_p95_ms={self.percentile(95):.1f}{keys}{end}")


class FrameQueue:
    """Frames waiting for the renderer: at most ``capacity``; ``drop_oldest`` makes room by dropping the
    oldest waiting frame (reported to ``on_drop``), else :meth:`put` waits for room."""

    def __init__(self, capacity: int, drop_oldest: bool, on_drop=None):
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.on_drop = on_drop
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item, stop: threading.Event) -> bool:
        """Add ``item``; ``False`` when ``stop`` was set while waiting for room."""
        dropped = []
        with self._cond:
            while not self.drop_oldest and len(self._items) >= self.capacity:
                if stop.is_set():
                    return False
                self._cond.wait(0.05)
            while len(self._items) >= self.capacity:
                dropped.append(self._items.popleft())
            self._items.append(item)
            self._cond.notify_all()
        for old in dropped:
            if self.on_drop is not None:
                self.on_drop(old)
        return True

    def close(self) -> None:
        """No more items will come."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float = 0.05):
        """The oldest waiting item; ``None`` after ``timeout`` seconds without one; raises
        :class:`EOFError` once closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            if self._closed:
                raise EOFError
            return None

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class StatsLog:
    """``--stats FILE.jsonl``: one JSON line per input frame, written as the run goes (thread-safe)."""

    def __init__(self, handle, start: float):
        self.handle = handle
        self.start = start
        self._lock = threading.Lock()

    def frame(self, frame: VideoFrame, arrival: float, output: float | None, dropped: bool,
              skipped: bool = False) -> None:
        if self.handle is None:
            return
        record = {"index": frame.index, "pts": frame.pts, "time": round(frame.time, 6),
                  "arrival_s": round(arrival - self.start, 6),
                  "output_s": None if output is None else round(output - self.start, 6),
                  "latency_ms": None if output is None else round(1000 * (output - arrival), 3),
                  "dropped": dropped}
        if skipped:
            record["skipped"] = True
        with self._lock:
            self.handle.write(json.dumps(record) + "\n")


def check_outputs(settings: StreamSettings, inputs: list) -> None:
    """Refuse an existing output file (without ``overwrite``), one that is an input, or stats written over the
    output, before any work."""
    import os

    from retarget.io.atomic import check_output_path

    if (settings.stats is not None and output_kind(settings.output) == "file"
            and os.path.realpath(settings.stats) == os.path.realpath(settings.output)):
        raise UsageError(f"--stats {settings.stats}: the same file as --output; give the stats another name")
    existing = [p for p in inputs if p is not None]
    if output_kind(settings.output) == "file":
        check_output_path(Path(settings.output), overwrite=settings.overwrite, inputs=existing)
    if settings.stats is not None:
        check_output_path(Path(settings.stats), overwrite=settings.overwrite,
                          inputs=existing + ([settings.output] if output_kind(settings.output) == "file" else []))


class SidecarFrames:
    """``--input-iuv`` frames by input index (``__call__(index, rgb) -> result``), counting the frames asked for
    that have no entry (:meth:`note`)."""

    def __init__(self, sidecar):
        self.sidecar = sidecar
        self.asked = self.missing = 0

    def __call__(self, index: int, rgb: np.ndarray):
        self.asked += 1
        self.missing += index not in self.sidecar
        return self.sidecar.get(index, rgb.shape[:2])

    def align(self, frame_count: int) -> str | None:
        """Read a folder numbered from an offset in order when the input file has exactly its frames
        (:meth:`densepose_adapter.precomputed.PrecomputedIUV.align_to`); the note saying so, or None."""
        offset = self.sidecar.align_to(frame_count)
        return self.sidecar.align_note(offset, frame_count, "input's") if offset else None

    def note(self, on_missing: str) -> str | None:
        """The frames read without an entry, or None."""
        if not self.missing:
            return None
        return (f"{self.sidecar.path}: no IUV for {self.missing} of the {self.asked} input frames it was read for "
                f"(its frames: {_index_span(self.sidecar.frame_indices)}); they count as frames without a person "
                f"(--on-missing {on_missing})")


def _index_span(indices: list[int]) -> str:
    return "none" if not indices else f"{indices[0]}" if len(indices) == 1 else f"{indices[0]}..{indices[-1]}"


def frame_densepose(retargeter: Retargeter, settings: StreamSettings):
    """``(callable(index, rgb) -> result, split_blobs)``: ``--input-iuv`` frames by input index
    (:class:`SidecarFrames`), or the model."""
    if settings.input_iuv is not None:
        from densepose_adapter.precomputed import PrecomputedIUV

        try:
            sidecar = PrecomputedIUV(settings.input_iuv)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return SidecarFrames(sidecar), not sidecar.has_boxes
    if retargeter.settings.densepose_backend == "precomputed" and retargeter.settings.densepose_model is None:
        raise UsageError("--densepose-backend precomputed needs the input's IUV: --input-iuv FOLDER|FILE.npz")
    return retargeter.model_densepose(settings.input), False


def keyframes_asynchronous(retargeter: Retargeter, settings: StreamSettings, source: StreamInput) -> bool:
    """Whether DensePose keyframes run in a worker thread: yes for a DensePose model on a live input (camera,
    URL, pipe, ``--realtime`` file); no for ``--input-iuv`` (read at the keyframes) and for a file read as
    fast as possible (deterministic). ``Retargeter(densepose_async=...)`` overrides it for a model."""
    if settings.input_iuv is not None:
        return False
    chosen = retargeter.settings.densepose_async
    if chosen is not None:
        return bool(chosen)
    return not (source.kind == "file" and not settings.realtime)


def open_input(source: StreamInput, stop: threading.Event, poll: float = 0.1) -> StreamInput:
    """``source.open()`` in a thread of its own, so that ``stop`` (Ctrl-C, SIGTERM) ends the wait at once.

    Opening a network input or a pipe blocks inside FFmpeg, where Python's signal handlers do not run: a silent
    sender held Ctrl-C off until ``--timeout`` ran out, a silent pipe for ever. No output exists yet, so the
    blocked thread (a daemon) is left behind.

    Raises:
        KeyboardInterrupt: ``stop`` was set before the input opened.
    """
    box: dict = {}

    def target() -> None:
        try:
            box["input"] = source.open()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="retarget-stream-open", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(poll)
        if stop.is_set() and thread.is_alive():
            raise KeyboardInterrupt()
    if "error" in box:
        raise box["error"]
    return box["input"]


def run_stream(retargeter: Retargeter, settings: StreamSettings, stop: threading.Event | None = None,
               quiet: bool = False) -> StreamSummary:
    """Stream ``settings.input`` through ``retargeter`` to ``settings.output`` (see the module docstring).

    Bad inputs fail before any output exists; a file output that got no frame is removed. An error
    after frames were written closes the output validly (what was streamed stays) and is raised.
    """
    settings.validate()
    stop = stop or threading.Event()
    densepose, split_blobs = frame_densepose(retargeter, settings)  # missing weights: before opening anything
    source = open_input(StreamInput(settings.input, settings.input_format, settings.timeout, settings.realtime), stop)
    given = densepose if isinstance(densepose, SidecarFrames) else None
    if given is not None and (aligned := given.align(source.frame_count)) and not quiet:
        print(f"note: {aligned}", file=sys.stderr)
    readers: list[threading.Thread] = []
    session = None
    budget = contextlib.ExitStack()
    try:
        drop = settings.drop or ("late" if source.live else "none")
        asynchronous = keyframes_asynchronous(retargeter, settings, source)
        densepose = retargeter.keyframes(densepose, asynchronous)
        if getattr(densepose, "worker", None) is not None:  # DensePose in the background: the thread budget
            from retarget.pipeline.live_keyframes import thread_budget

            budget.enter_context(thread_budget())
        session = retargeter.session(source.width, source.height, source.fps, densepose, split_blobs)
        delay = float(os.environ.get(DELAY_ENV, "0") or 0) / 1000.0
        if delay > 0:
            warp = session.warp

            def slow_warp(targets):
                time.sleep(delay)
                return warp(targets)

            session.warp = slow_warp
        if settings.stats is not None:
            from retarget.io.atomic import atomic_output

            with atomic_output(Path(settings.stats)) as tmp, open(tmp, "w", encoding="utf-8") as handle:
                summary = _run(source, session, settings, drop, stop, handle, quiet, readers)
        else:
            summary = _run(source, session, settings, drop, stop, None, quiet, readers)
        if given is not None and (missing := given.note(retargeter.options.on_missing)) and not quiet:
            print(f"note: {missing}", file=sys.stderr)
        return summary
    finally:
        if session is not None:
            session.close()
        budget.close()
        # A reader still blocked inside the input (a silent network stream, a pipe without data) must
        # not have its container closed under it (PyAV would crash): it ends with the process.
        if not any(thread.is_alive() for thread in readers):
            source.close()


def _run(source: StreamInput, session, settings: StreamSettings, drop: str, stop: threading.Event, handle,
         quiet: bool, readers: list) -> StreamSummary:
    start = time.monotonic()
    stats = StatsLog(handle, start)
    summary = StreamSummary()
    counts = {"dropped": 0}

    def on_drop(item) -> None:
        frame, arrival = item
        counts["dropped"] += 1
        stats.frame(frame, arrival, None, dropped=True)

    queue = FrameQueue(settings.queue if drop == "late" else max(2, settings.queue), drop == "late", on_drop)
    reader_state: dict = {}

    def read() -> None:
        try:
            for frame in source.frames():
                if stop.is_set():
                    break
                reader_state["in"] = frame.index + 1
                if not queue.put((frame, time.monotonic()), stop):
                    break
                if settings.max_frames is not None and frame.index + 1 >= settings.max_frames:
                    break
        except InputEnded as exc:
            reader_state["ended"] = str(exc)
        except BaseException as exc:  # noqa: BLE001 - handed to the rendering thread
            reader_state["error"] = exc
        finally:
            queue.close()

    reader = threading.Thread(target=read, name="retarget-stream-read", daemon=True)
    readers.append(reader)
    reader.start()
    writer = None
    first_arrival = last_output = None
    try:
        while True:
            if stop.is_set() and not reader_state.get("stop_seen"):
                reader_state["stop_seen"] = True
                queue.close()  # the reader may be blocked in the input: render what is here, then end
            try:
                item = queue.get()
            except EOFError:
                break
            if item is None:
                continue
            frame, arrival = item
            first_arrival = arrival if first_arrival is None else first_arrival
            rgb = session.process(frame)
            if rgb is None:  # no person and --on-missing skip: nothing to show
                stats.frame(frame, arrival, None, dropped=False, skipped=True)
                continue
            if writer is None:
                width, height = session.output_size
                writer = open_output(settings.output, width, height, source.fps, source.time_base,
                                     settings.output_format, settings.crf)
            try:
                writer.write(rgb, frame.pts)
            except Exception as exc:  # noqa: BLE001 - only a closed reader is an end; the rest re-raised
                if not _broken_pipe(exc):
                    raise
                reader_state["output_gone"] = f"{settings.output}: the reader of the output went away; stopping"
                stop.set()
                writer.abort()
                _silence_stdout(settings.output)
                break
            last_output = time.monotonic()
            summary.frames_out += 1
            summary.latencies_ms.append(1000 * (last_output - arrival))
            stats.frame(frame, arrival, last_output, dropped=False)
        if "error" in reader_state:
            raise reader_state["error"]
        if writer is None:
            raise InputError(f"{settings.input}: no frame had a person to render (with --on-missing skip); "
                             "nothing was written")
        if not reader_state.get("output_gone"):
            writer.close()
        reader.join(0.5)
    except BaseException:
        if writer is not None and writer.frames_written > 0:
            with contextlib.suppress(Exception):
                writer.close()  # a live output keeps what was streamed, as a valid file
        else:
            if writer is not None:
                writer.abort()
            remove_output(settings.output)
        raise
    summary.frames_in = reader_state.get("in", 0)
    summary.dropped = counts["dropped"]
    summary.seconds = (last_output - first_arrival) if last_output and first_arrival else 0.0
    summary.stopped = ("output closed" if reader_state.get("output_gone") else "input ended"
                       if reader_state.get("ended") else "interrupted" if stop.is_set() else None)
    summary.times = dict(session.times)
    summary.keyframes = getattr(session.densepose, "log", None)
    summary.densepose_calls = getattr(session.densepose, "calls", None) if summary.keyframes is not None else None
    for key in ("ended", "output_gone"):
        if not quiet and reader_state.get(key):
            print(f"note: {reader_state[key]}", file=sys.stderr)
    return summary


def _broken_pipe(exc: BaseException) -> bool:
    """Whether writing failed because the reader of a pipe or socket went away (``ffplay`` closed)."""
    import errno

    return isinstance(exc, BrokenPipeError) or getattr(exc, "errno", None) in (errno.EPIPE, errno.ECONNRESET)


def _silence_stdout(output: str) -> None:
    """After the reader of stdout went away, point stdout at /dev/null (no error at exit)."""
    if output != "-":
        return
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
