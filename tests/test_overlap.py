"""Overlap in the video runner (issue 30): the refiner renders ahead in its own thread during pass 1 (DensePose),
with thread counts of torch, OpenVINO and OpenCV within the cores. The frames are the same as with the passes
in turn, and an error on either side stops the run without a hung thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from retarget.engine.threads import applied, plan_threads
from retarget.pipeline import video as video_module
from retarget.pipeline.densepose_stage import FrameDensePose
from retarget.pipeline.job import VideoJob, run_video_job
from retarget.pipeline.pair import Models
from retarget.pipeline.video import VideoOptions
from tests.assets import coordinpaint_dir
from tests.media import make_driver, sample_source

N = 14


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("overlap")
    photo, _ = sample_source(folder)
    driver = folder / "dance.mp4"
    make_driver(driver, n=N, missing=(5, 6))  # two frames without a person: --on-missing hold across batches
    from retarget.io.progress import progress_bar

    progress_bar(1, "warm-up", quiet=True).close()  # tqdm's monitor thread starts with the first bar: not ours
    return photo, driver


@pytest.fixture(scope="module")
def models():
    return Models.from_checkpoint_dir(coordinpaint_dir())


def _run(clip, models, tmp_path, name, **options):
    photo, driver = clip
    frames = {}
    job = VideoJob(source=photo, driver=driver, output=tmp_path / f"{name}.mp4", size=64,
                   options=VideoOptions(quiet=True, batch_size=2, hold_seconds=10.0, **{"overlap": True, **options}))
    summary = run_video_job(job, models, on_frame=lambda i, rgb: frames.__setitem__(i, rgb.copy()))
    return summary, frames


@pytest.mark.parametrize("temporal_radius", [0, 2])
def test_overlap_gives_the_same_frames(clip, models, tmp_path, monkeypatch, no_leaked_threads, temporal_radius):
    monkeypatch.setattr("retarget.engine.threads.available_cores", lambda: 2)  # overlap even on a 1-core runner
    ahead, frames = _run(clip, models, tmp_path, "ahead", temporal_radius=temporal_radius)
    turns, reference = _run(clip, models, tmp_path, "turns", temporal_radius=temporal_radius, overlap=False)
    assert ahead.overlap["rendered_ahead"] >= N // 2  # most of the refiner work was done during pass 1
    assert turns.overlap["rendered_ahead"] == 0
    assert sorted(frames) == sorted(reference) == list(range(N))
    for index in reference:
        np.testing.assert_array_equal(frames[index], reference[index], err_msg=f"frame {index}")


def test_a_batch_rendered_from_other_target_uvs_is_not_used(clip, models, tmp_path, monkeypatch):
    """The look-ahead guesses crops from the boxes seen so far; pass 2 uses a batch only if its UVs are the same."""
    monkeypatch.setattr("retarget.engine.threads.available_cores", lambda: 2)
    monkeypatch.setattr(video_module, "_uv_digest", lambda uv: np.random.bytes(16))  # every guess "wrong"
    summary, frames = _run(clip, models, tmp_path, "miss", temporal_radius=0)
    assert summary.overlap["rendered_ahead"] == 0 and len(frames) == N
    _, reference = _run(clip, models, tmp_path, "ref", temporal_radius=0, overlap=False)
    for index in reference:
        np.testing.assert_array_equal(frames[index], reference[index])


@pytest.mark.parametrize("error", [RuntimeError("DensePose exploded"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_an_error_in_densepose_stops_the_refiner_thread(clip, models, tmp_path, monkeypatch, no_leaked_threads,
                                                         error):
    monkeypatch.setattr("retarget.engine.threads.available_cores", lambda: 2)
    original = FrameDensePose.results
    before = torch.get_num_threads()

    def failing(self, indices, images):
        if max(indices) >= 9:  # batches 0-3 are rendering ahead by now
            raise error
        return original(self, indices, images)

    monkeypatch.setattr(FrameDensePose, "results", failing)
    with pytest.raises(type(error)):
        _run(clip, models, tmp_path, "broken", temporal_radius=0)
    assert torch.get_num_threads() == before
    assert not list(tmp_path.iterdir())  # no output, no temporary
    assert not [t for t in threading.enumerate() if t.name == "retarget-render-ahead" and t.is_alive()]


def test_an_error_in_the_refiner_thread_stops_pass_one(clip, models, tmp_path, monkeypatch, no_leaked_threads):
    monkeypatch.setattr("retarget.engine.threads.available_cores", lambda: 2)
    where = []

    def broken(*args, **kwargs):
        where.append(threading.current_thread().name)
        raise RuntimeError("refiner exploded")

    monkeypatch.setattr(video_module, "_render_batch", broken)
    with pytest.raises(RuntimeError, match="refiner exploded"):
        _run(clip, models, tmp_path, "broken", temporal_radius=0)
    assert where == ["retarget-render-ahead"]
    assert not list(tmp_path.iterdir())


def test_the_refiner_thread_runs_within_the_thread_budget(clip, models, tmp_path, monkeypatch):
    monkeypatch.setattr("retarget.engine.threads.available_cores", lambda: 2)
    seen = []
    original = video_module._render_batch

    def spy(*args, **kwargs):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return original(*args, **kwargs)

    monkeypatch.setattr(video_module, "_render_batch", spy)
    before = torch.get_num_threads()
    _run(clip, models, tmp_path, "budget", temporal_radius=0)
    ahead = [n for name, n in seen if name == "retarget-render-ahead"]
    assert ahead and ahead[0] == 1  # during pass 1 on 2 cores: 1 for DensePose's side, 1 for the refiner's
    assert max(ahead) <= 2  # batches still queued when pass 1 ends render with every core
    assert torch.get_num_threads() == before  # restored for pass 2 and after


def test_thread_counts_never_exceed_the_cores():
    for cores in range(1, 257):
        for overlap in (False, True):
            plan = plan_threads(cores, overlap)
            counts = (plan.torch, plan.opencv, plan.openvino_refiner, plan.openvino_densepose)
            assert min(counts) >= 1 and max(counts) <= cores, (cores, overlap)
            assert plan.peak() <= cores and plan.peak(refiner_on_torch=True) <= cores, (cores, overlap)
            if plan.overlap:
                assert plan.densepose + plan.refiner == cores
    assert not plan_threads(1).overlap and plan_threads(2).overlap


def test_applied_sets_and_restores_the_counts():
    import cv2

    class FakeOpenVINO:
        def __init__(self):
            self.calls = []

        def set_threads(self, n):
            self.calls.append(n)

    refiner, backbone = FakeOpenVINO(), FakeOpenVINO()
    before = torch.get_num_threads(), cv2.getNumThreads()
    plan = plan_threads(8)
    with applied(plan, refiner, [backbone]):
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (4, 4)
        assert refiner.calls == [4] and backbone.calls == [4]
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before
    assert refiner.calls == [4, None] and backbone.calls == [4, None]
