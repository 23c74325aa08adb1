"""Stages in threads joined by bounded queues: start-up, back-pressure, errors and shutdown in one place.

A :class:`Stream` owns every thread of one run::

    with Stream(maxsize=8) as stream:
        frames = stream.produce("decode", decode())            # decode() iterated in a new thread
        outputs = (render(f) for f in frames)                  # iterated in the calling thread
        stream.consume("encode", encode, outputs)              # encode(iterator) runs in a new thread

- :meth:`Stream.produce` iterates ``items`` in a new thread and returns an iterator over a bounded
  queue of them; chained ``produce`` calls give one thread per stage.
- :meth:`Stream.consume` iterates ``items`` in the calling thread and feeds them through a bounded
  queue to ``sink(iterator)`` running in a new thread; it returns when the sink has finished.

Back-pressure: each queue holds at most ``maxsize`` items, so a fast stage waits for a slow one and
memory does not grow with the input. Errors: the first exception raised in any stage thread stops
every other thread, and the caller gets that very exception object (its type, message and the stage
thread's traceback) from the queue operation it is in, or when the ``with`` block ends. Shutdown:
leaving the block — normally, by an exception or after an early ``break`` — stops and joins every
thread the stream started (each gets ``join_timeout`` seconds; stage threads are daemons, so one
stuck outside the queues cannot keep the process alive).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

_END = object()


class StreamClosed(Exception):
    """Raised inside a stage thread when the stream stops (another stage failed, or the block ended)."""


class Stream:
    """Runs stages in daemon threads joined by queues of at most ``maxsize`` items (see module doc).

    Args:
        maxsize: items each queue holds (the back-pressure bound).
        poll: seconds between checks for a stop while a queue is full or empty.
        join_timeout: seconds :meth:`close` waits for each thread.
    """

    def __init__(self, maxsize: int, *, poll: float = 0.05, join_timeout: float = 10.0):
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.poll = poll
        self.join_timeout = join_timeout
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    # -- public --------------------------------------------------------------------------------
    def produce(self, name: str, items: Iterable[T]) -> Iterator[T]:
        """Iterate ``items`` in a new thread called ``name``; the result reads them in order."""
        q: queue.Queue = queue.Queue(maxsize=self.maxsize)

        def pump() -> None:
            iterator = iter(items)
            try:
                for item in iterator:
                    self._put(q, item)
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            self._put(q, _END)

        self._start(name, pump)
        return self._drain(q)

    def consume(self, name: str, sink: Callable[[Iterator[T]], object], items: Iterable[T]) -> None:
        """Feed ``items`` (iterated here) to ``sink(iterator)`` running in a new thread called ``name``;
        returns once the sink has taken every item and returned."""
        q: queue.Queue = queue.Queue(maxsize=self.maxsize)
        finished = threading.Event()

        def run_sink() -> None:
            sink(self._drain(q, finished))
            if not finished.is_set():
                raise RuntimeError(f"stage {name!r} returned before the end of its input")

        thread = self._start(name, run_sink)
        for item in items:
            self._put(q, item, reader=thread)
        self._put(q, _END, reader=thread)
        thread.join()
        self.check()

    def feed(self, name: str, sink: Callable[[Iterator[T]], object]) -> "Feed":
        """Start ``sink(iterator)`` in a new thread called ``name`` and return a :class:`Feed` whose
        :meth:`~Feed.put` hands it items (waiting while ``maxsize`` are queued) from the calling thread, for
        producers that are a loop rather than an iterator; :meth:`Feed.finish` ends the input and waits."""
        q: queue.Queue = queue.Queue(maxsize=self.maxsize)
        finished = threading.Event()

        def run_sink() -> None:
            sink(self._drain(q, finished))

        return Feed(self, q, self._start(name, run_sink), finished)

    def check(self) -> None:
        """Re-raise the first exception of a stage thread, if there was one."""
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Stop every thread and wait for it (``join_timeout`` seconds each)."""
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(self.join_timeout)

    @property
    def threads(self) -> list[threading.Thread]:
        """The threads this stream started (finished ones included)."""
        return list(self._threads)

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
        if exc_type is None:
            self.check()

    # -- internals -------------------------------------------------------------------------------
    def _start(self, name: str, target: Callable[[], None]) -> threading.Thread:
        if self._stop.is_set():
            raise StreamClosed("the stream is closed")

        def run() -> None:
            try:
                target()
            except StreamClosed:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                with self._lock:
                    if self._error is None:
                        self._error = exc
                self._stop.set()

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    def _stopped(self) -> BaseException:
        """What a queue operation raises once the stream stops: the stage error in the caller's
        thread, :class:`StreamClosed` in stage threads (the error is reported once, by the caller)."""
        if self._error is not None and threading.current_thread() not in self._threads:
            return self._error
        return StreamClosed("the stream stopped")

    def _put(self, q: queue.Queue, item, reader: threading.Thread | None = None) -> None:
        while True:
            if self._stop.is_set():
                raise self._stopped()
            if reader is not None and not reader.is_alive():
                self.check()
                raise RuntimeError(f"stage {reader.name!r} ended before the end of its input")
            try:
                q.put(item, timeout=self.poll)
                return
            except queue.Full:
                continue

    def _drain(self, q: queue.Queue, finished: threading.Event | None = None) -> Iterator:
        while True:
            if self._stop.is_set():
                raise self._stopped()
            try:
                item = q.get(timeout=self.poll)
            except queue.Empty:
                continue
            if item is _END:
                if finished is not None:
                    finished.set()
                return
            yield item


class Feed:
    """The calling thread's end of :meth:`Stream.feed`."""

    def __init__(self, stream: Stream, q: queue.Queue, thread: threading.Thread, finished: threading.Event):
        self.stream, self.q, self.thread, self.finished = stream, q, thread, finished

    def put(self, item) -> None:
        """Queue ``item`` for the sink; raises the sink's exception if it failed."""
        self.stream._put(self.q, item, reader=self.thread)

    def finish(self) -> None:
        """End the input, wait for the sink to return, and raise its exception if it failed."""
        self.stream._put(self.q, _END, reader=self.thread)
        self.thread.join()
        self.stream.check()
