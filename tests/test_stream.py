"""The bounded-queue/thread helper of the video runner (retarget/pipeline/stream.py)."""

from __future__ import annotations

import itertools
import threading
import time
import traceback

import pytest

from retarget.pipeline.stream import Stream


def _doubled(items):
    for item in items:
        yield 2 * item


def test_a_chain_of_threads_passes_every_item_in_order(no_leaked_threads):
    names = []

    def record(items):
        for item in items:
            names.append(threading.current_thread().name)
            yield item + 1

    with Stream(maxsize=3) as stream:
        out = list(stream.produce("plus", record(stream.produce("double", _doubled(stream.produce("source",
                                                                                                   range(50)))))))
    assert out == [2 * i + 1 for i in range(50)]
    assert set(names) == {"plus"}  # a produced generator runs in its own thread, not the caller's
    assert [t.name for t in stream.threads] == ["source", "double", "plus"]


def test_consume_runs_the_sink_in_its_thread_and_the_items_in_the_callers(no_leaked_threads):
    seen, where = [], []
    caller = threading.current_thread().name

    def items():
        for i in range(20):
            where.append(threading.current_thread().name)
            yield i

    def sink(frames):
        for frame in frames:
            seen.append((threading.current_thread().name, frame))

    with Stream(maxsize=2) as stream:
        stream.consume("sink", sink, items())
        assert seen == [("sink", i) for i in range(20)]  # finished when consume returns
    assert set(where) == {caller}


def test_back_pressure_bounds_what_a_fast_stage_runs_ahead(no_leaked_threads):
    made = itertools.count()
    produced = []

    def endless():
        while True:
            produced.append(next(made))
            yield produced[-1]

    with Stream(maxsize=4) as stream:
        items = stream.produce("fast", endless())
        assert next(items) == 0
        time.sleep(0.3)  # the reader stalls: the producer fills the queue and waits
        # one taken + 4 queued + 1 in hand, waiting for space
        assert len(produced) <= 1 + 4 + 1
        assert next(items) == 1
    # an endless producer stopped with the block (checked by the fixture)


def test_back_pressure_bounds_the_sink_queue(no_leaked_threads):
    fed = []
    release = threading.Event()

    def items():
        for i in range(100):
            fed.append(i)
            yield i

    def slow_sink(frames):
        release.wait(5)
        for _ in frames:
            pass

    def unblock():
        time.sleep(0.3)
        peak.append(len(fed))
        release.set()

    peak: list[int] = []
    helper = threading.Thread(target=unblock)
    helper.start()
    with Stream(maxsize=3) as stream:
        stream.consume("slow", slow_sink, items())
    helper.join()
    assert peak[0] <= 3 + 1  # the queue's 3 + one waiting in the caller
    assert len(fed) == 100


def test_an_error_in_a_middle_stage_surfaces_with_its_type_and_message_and_stops_the_others(no_leaked_threads):
    sink_got = []
    source_made = itertools.count()

    def endless():
        while True:
            yield next(source_made)

    def middle(items):
        for item in items:
            if item == 5:
                raise ValueError("bad item 5 in the middle stage")
            yield item

    def sink(items):
        for item in items:
            sink_got.append(item)

    with pytest.raises(ValueError, match="bad item 5 in the middle stage") as caught:
        with Stream(maxsize=2) as stream:
            stream.consume("sink", sink, stream.produce("middle", middle(stream.produce("source", endless()))))
    assert sink_got == list(range(len(sink_got))) and len(sink_got) <= 5  # never past the failing item
    assert "middle" in "".join(traceback.format_tb(caught.value.__traceback__))  # the stage's own frames
    assert not any(t.is_alive() for t in stream.threads)


def test_an_error_in_the_sink_reaches_the_caller_and_stops_the_producer(no_leaked_threads):
    def sink(items):
        for item in items:
            if item == 3:
                raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        with Stream(maxsize=2) as stream:
            stream.consume("sink", sink, stream.produce("source", itertools.count()))
    assert not any(t.is_alive() for t in stream.threads)


def test_an_error_in_the_caller_stops_every_thread_and_is_not_masked(no_leaked_threads):
    def caller_side(items):
        for item in items:
            if item == 4:
                raise KeyError("caller")
            yield item

    with pytest.raises(KeyError, match="caller"):
        with Stream(maxsize=2) as stream:
            stream.consume("sink", lambda items: sum(items), caller_side(stream.produce("source", itertools.count())))
    assert not any(t.is_alive() for t in stream.threads)


def test_an_early_break_shuts_down_cleanly(no_leaked_threads):
    with Stream(maxsize=2) as stream:
        for item in stream.produce("source", _doubled(itertools.count())):
            if item > 10:
                break
    assert not any(t.is_alive() for t in stream.threads)


def test_a_sink_that_stops_reading_early_is_an_error_not_a_hang(no_leaked_threads):
    def lazy(items):
        next(items)

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="'lazy' returned before the end of its input"):
        with Stream(maxsize=1) as stream:
            stream.consume("lazy", lazy, range(100))
    assert time.monotonic() - start < 5


def test_a_producer_is_closed_when_the_stream_stops(no_leaked_threads):
    closed = threading.Event()

    def source():
        try:
            yield from itertools.count()
        finally:
            closed.set()

    with Stream(maxsize=1) as stream:
        next(stream.produce("source", source()))
    assert closed.is_set()


def test_maxsize_must_be_positive():
    with pytest.raises(ValueError, match="maxsize"):
        Stream(0)
