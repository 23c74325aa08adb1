"""DensePose keyframes in live streams (retarget/pipeline/live_keyframes.py, `stream --densepose-every`)."""

from __future__ import annotations

import hashlib
import sys
import threading
import time

import numpy as np
import pytest

from densepose_adapter.precomputed import PrecomputedIUV
from densepose_adapter.types import DensePoseResult
from retarget.cli.app import main
from retarget.io.video import iter_frames
from retarget.pipeline.live import Retargeter
from retarget.pipeline.live_keyframes import DensePoseWorker, LiveKeyframes, thread_budget, usable_cores
from retarget.pipeline.live_stream import StreamSettings, run_stream
from tests.conftest import one_error_line
from tests.media import make_driver, sample_source


@pytest.fixture
def clip(tmp_path):
    driver = tmp_path / "driver.mp4"
    make_driver(driver, n=12, audio=False)
    photo, _ = sample_source(tmp_path)
    frames = [f.rgb for f in iter_frames(driver)]
    sidecar = PrecomputedIUV(tmp_path / "driver.iuv")
    iuvs = [sidecar.get(i, f.shape[:2]).iuv for i, f in enumerate(frames)]
    return {"driver": driver, "iuv": tmp_path / "driver.iuv", "photo": photo, "frames": frames, "iuvs": iuvs,
            "dir": tmp_path}


def _key(bgr: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(bgr).tobytes()).hexdigest()


class SlowDensePose:
    """A DensePose backend that takes ``seconds`` per call and answers the clip's IUV of the frame it is shown."""

    name = "slow-fake"

    def __init__(self, frames, iuvs, seconds: float, gate: threading.Event | None = None):
        self.table = {_key(rgb[..., ::-1]): iuv for rgb, iuv in zip(frames, iuvs)}
        self.seconds = seconds
        self.gate = gate  # when given, every call also waits until it is set (a DensePose that hangs)
        self.calls = 0
        self.threads: set[str] = set()

    def predict(self, images):
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(timeout=60), "the test never released DensePose"
        time.sleep(self.seconds)
        return [DensePoseResult.from_iuv(self.table[_key(image)]) for image in images]


def _paced(frames, seconds: float, repeat: int = 1):
    for _ in range(repeat):
        for rgb in frames:
            time.sleep(seconds)
            yield rgb


def test_async_keyframes_never_block_a_frame_on_densepose(clip):
    """DensePose hangs in its first call until the test releases it: frames keep coming out meanwhile (no
    wall-clock bound, so a slow or busy machine cannot fail it), every input frame comes out, DensePose runs
    on its own thread only, and the frames after the first keyframe arrived show the person."""
    gate = threading.Event()
    backend = SlowDensePose(clip["frames"], clip["iuvs"], 0.1, gate=gate)
    live = Retargeter(clip["photo"], models=None, densepose_model=backend, densepose_every="auto",
                      background="#204060", temporal_radius=0)
    frames = list(clip["frames"]) * 3  # 36 frames
    out, while_hanging = [], 0
    start = time.perf_counter()
    try:
        for rgb in live.stream(_paced(frames, 0.04)):  # 25 fps
            out.append(rgb)
            if not gate.is_set() and backend.calls >= 1:
                while_hanging += 1  # rendered while DensePose's first call had not returned
                if while_hanging == 12:
                    gate.set()
    finally:
        gate.set()
    elapsed = time.perf_counter() - start
    assert len(out) == len(frames) and while_hanging == 12
    # one call at a time (each ≥ 0.1 s once released), not one per frame
    assert 1 <= backend.calls <= 2 + elapsed / 0.1 and backend.calls < len(frames) / 2, (backend.calls, elapsed)
    assert backend.threads == {"retarget-densepose"}
    # before the first keyframe: --on-missing hold with no pose yet shows the background; after it, the person
    background = np.array([0x20, 0x40, 0x60])
    assert np.abs(out[0].astype(int) - background).sum(axis=2).max() < 40
    person = [np.count_nonzero(np.abs(o.astype(int) - background).sum(axis=2) > 60) for o in out]
    assert not any(person[:12]) and max(person) > 300 and person[-1] > 100 and sum(p > 100 for p in person) >= 8, \
        person


def test_synchronous_keyframes_would_block_every_keyframe(clip):
    """The same slow DensePose with ``densepose_async=False``: the keyframes themselves wait for it (what
    the asynchronous path avoids)."""
    backend = SlowDensePose(clip["frames"], clip["iuvs"], 0.3)
    live = Retargeter(clip["photo"], models=None, densepose_model=backend, densepose_every="4",
                      densepose_async=False, temporal_radius=0)
    tick = time.perf_counter()
    out = list(live.stream(clip["frames"][:8]))
    assert len(out) == 8 and 2 <= backend.calls < 8  # frames 0 and 4, and any a check forced
    assert time.perf_counter() - tick >= 0.3 * backend.calls
    assert backend.threads == {threading.current_thread().name}


def test_realtime_stream_with_a_slow_densepose_keeps_latency_and_every_frame(clip, tmp_path):
    """`stream --realtime --drop none --densepose-every auto` with a 0.5 s DensePose: no frame's latency
    comes near a DensePose call, no frame is dropped, and fewer calls than frames."""
    backend = SlowDensePose(clip["frames"], clip["iuvs"], 0.5)
    live = Retargeter(clip["photo"], models=None, densepose_model=backend, densepose_every="auto",
                      temporal_radius=0)
    settings = StreamSettings(input=str(clip["driver"]), output=str(tmp_path / "out.ts"), realtime=True,
                              drop="none")
    summary = run_stream(live, settings, quiet=True)
    assert summary.frames_in == summary.frames_out == 12 and summary.dropped == 0
    assert max(summary.latencies_ms) < 350, summary.latencies_ms
    assert 1 <= backend.calls <= 4 and backend.calls - 1 <= summary.densepose_calls <= backend.calls
    assert summary.keyframes.missing >= 1 and summary.keyframes.carried >= 4
    assert "keyframes=" in summary.line()


def test_keyframes_of_a_file_are_deterministic_and_read_only_the_keyframes_iuv(clip, tmp_path, monkeypatch,
                                                                                 capsys):
    reads = []
    get = PrecomputedIUV.get

    def counting(self, index, *args, **kwargs):
        reads.append(index)
        return get(self, index, *args, **kwargs)

    monkeypatch.setattr(PrecomputedIUV, "get", counting)
    outputs = []
    for run in range(2):
        reads.clear()
        out = tmp_path / f"out{run}.y4m"
        code = main(["stream", "--source", str(clip["photo"]), "--input-iuv", str(clip["iuv"]), "--input",
                     str(clip["driver"]), "--output", str(out), "--densepose-every", "3"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert "in=12 out=12 dropped=0" in err and f"keyframes={len(reads)}" in err
        assert reads[0] == 0 and len(reads) <= 8 and all(b - a <= 3 for a, b in zip(reads, reads[1:]))
        outputs.append((out.read_bytes(), list(reads)))
    assert outputs[0] == outputs[1]
    outputs[0] = outputs[0][0]
    reads.clear()
    code = main(["stream", "--source", str(clip["photo"]), "--input-iuv", str(clip["iuv"]), "--input",
                 str(clip["driver"]), "--output", str(tmp_path / "every.y4m")])
    assert code == 0 and reads == list(range(12))
    assert (tmp_path / "every.y4m").read_bytes() != outputs[0]  # the carried frames differ a little


def test_api_keyframes_on_given_iuv_are_deterministic(clip):
    runs = []
    for _ in range(2):
        live = Retargeter(clip["photo"], models=None, densepose_every="auto")
        runs.append(list(live.stream(clip["frames"], iuv=clip["iuvs"])))
    assert len(runs[0]) == 12
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_the_temporal_filter_runs_on_keyframes_and_holds_carried_frames(clip, monkeypatch):
    """Carried frames have no DensePose noise of their own: the live filter passes them through (``hold``)
    and filters the frames whose IUV is DensePose's own."""
    from densepose_adapter.temporal import TemporalIUVFilter

    seen = []
    push, hold = TemporalIUVFilter.push, TemporalIUVFilter.hold
    monkeypatch.setattr(TemporalIUVFilter, "push", lambda self, *a: seen.append("push") or push(self, *a))
    monkeypatch.setattr(TemporalIUVFilter, "hold", lambda self, *a: seen.append("hold") or hold(self, *a))
    live = Retargeter(clip["photo"], models=None, densepose_every="3", temporal_radius=1)
    session = None
    out = []
    for rgb, iuv in zip(clip["frames"], clip["iuvs"]):
        if session is None:
            given = {}
            keyframes = live.keyframes(lambda index, frame: DensePoseResult.from_iuv(given["iuv"]), False)
            session = live.session(rgb.shape[1], rgb.shape[0], 25, keyframes)
        given["iuv"] = iuv
        out.append(session.process(rgb))
    log = session.densepose.log
    assert len(out) == 12 and len(log.keyframes) >= 4 and log.carried >= 4
    assert seen.count("push") == len(log.keyframes) and seen.count("hold") == log.carried
    assert [seen[i] for i in log.keyframes] == ["push"] * len(log.keyframes)


def test_a_file_read_as_fast_as_possible_runs_densepose_in_the_calling_thread(clip, tmp_path):
    backend = SlowDensePose(clip["frames"], clip["iuvs"], 0.0)
    live = Retargeter(clip["photo"], models=None, densepose_model=backend, densepose_every="4",
                      temporal_radius=0)
    summary = run_stream(live, StreamSettings(input=str(clip["driver"]), output=str(tmp_path / "o.ts")), quiet=True)
    assert summary.frames_out == 12 and 3 <= backend.calls < 12 and summary.keyframes.keyframes[:1] == [0]
    assert len(summary.keyframes.keyframes) == backend.calls
    assert backend.threads == {threading.current_thread().name}


def test_worker_holds_at_most_one_call_and_reports_errors():
    gate = threading.Event()

    def densepose(index, rgb):
        gate.wait(5)
        if index == 2:
            raise RuntimeError("boom")
        return DensePoseResult.from_iuv(np.zeros((4, 4, 3), np.uint8))

    worker = DensePoseWorker(densepose)
    image = np.zeros((4, 4, 3), np.uint8)
    assert worker.submit(0, image, image[..., 0])
    assert not worker.submit(1, image, image[..., 0])  # busy: no queue
    gate.set()
    assert worker.wait_idle(5)
    assert worker.poll()[0] == 0 and worker.poll() is None
    assert worker.submit(2, image, image[..., 0]) and worker.wait_idle(5)
    with pytest.raises(RuntimeError, match="boom"):
        worker.poll()
    worker.close()


def test_a_cut_gives_no_pose_until_the_next_keyframe(clip):
    """After a cut the old keyframe is not carried (``--on-missing`` decides) and a keyframe is asked for."""
    done = threading.Event()

    def densepose(index, rgb):
        done.set()
        return DensePoseResult.from_iuv(clip["iuvs"][index % 12])

    stage = LiveKeyframes(densepose, 3, asynchronous=True)
    assert not stage(0, clip["frames"][0]).has_person  # no keyframe yet
    assert stage.worker.wait_idle(5)
    assert stage(1, clip["frames"][1]).has_person  # keyframe 0 carried to frame 1
    cut = np.ascontiguousarray(255 - clip["frames"][2])
    stage.worker.wait_idle(5)
    assert not stage(2, cut).has_person and stage.prop.reason == "cut"
    assert stage.worker.wait_idle(5) and stage._requests.get(2) == "cut"
    stage.close()


def test_thread_budget_keeps_the_sum_within_the_cores():
    import cv2
    import torch

    before = (torch.get_num_threads(), cv2.getNumThreads(), sys.getswitchinterval())
    with thread_budget(cores=4) as counts:
        assert torch.get_num_threads() == 2 and cv2.getNumThreads() == 1 and counts["torch"] * 2 <= 4
        assert sys.getswitchinterval() <= 0.001
    with thread_budget() as counts:
        assert 2 * counts["torch"] <= max(2, usable_cores())
    assert (torch.get_num_threads(), cv2.getNumThreads(), sys.getswitchinterval()) == before


@pytest.mark.parametrize("value, fragment", [("0", "--densepose-every 0"), ("often", "--densepose-every often"),
                                             ("31", "at most 30")])
def test_bad_densepose_every_is_a_usage_error(clip, tmp_path, capsys, value, fragment):
    code = main(["stream", "--source", str(clip["photo"]), "--input-iuv", str(clip["iuv"]), "--input",
                 str(clip["driver"]), "--output", str(tmp_path / "o.ts"), "--densepose-every", value])
    assert code == 2
    assert fragment in one_error_line(capsys)
    assert not (tmp_path / "o.ts").exists()
