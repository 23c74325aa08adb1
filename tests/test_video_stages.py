"""The video runner's stages one by one (retarget/pipeline/video.py), and its threads as a whole."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from densepose_adapter.precomputed import PrecomputedIUV
from retarget.io import video as video_io
from retarget.pipeline import video as video_module
from retarget.pipeline.densepose_stage import FrameDensePose
from retarget.pipeline.job import VideoJob, load_source, run_video_job
from retarget.pipeline.source import prepare_source_crop
from retarget.pipeline.video import (
    CompositeStage,
    EncodeStage,
    FrameTargets,
    StageTimes,
    TargetStage,
    VideoOptions,
    WarpRefineStage,
    batched,
    decode_stage,
    plan_render,
)
from tests.media import make_driver, sample_source

N = 6
MISSING = (2, 3)  # no person in these frames of the driver


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 6-frame driver (no person in frames 2 and 3), the weight-free source, and pass 1's plan."""
    folder = tmp_path_factory.mktemp("stages")
    with pytest.MonkeyPatch.context() as env:  # (the autouse home fixture is per test: keep caches out of home)
        env.setenv("RETARGET_HOME", str(folder / "home"))
        env.setenv("RETARGET_CACHE_DIR", str(folder / "home" / "cache"))
        return _setup(folder)


def _setup(folder):
    photo, _ = sample_source(folder)
    driver = folder / "dance.mp4"
    make_driver(driver, n=N, missing=MISSING)
    options = VideoOptions(quiet=True, temporal_radius=0, hold_seconds=10.0, background="#204080")
    job = VideoJob(source=photo, driver=driver, size=64, options=options)
    source = load_source(job)
    state = prepare_source_crop(source, None, "cpu")
    densepose = FrameDensePose(PrecomputedIUV(driver.with_name("dance.iuv")))
    plan = plan_render(source, state, driver, densepose, None, options)
    frames = list(decode_stage(driver, plan.info.rotation, N, StageTimes()))
    return dict(driver=driver, state=state, densepose=densepose, plan=plan, frames=frames)


def _with(plan, **changes):
    return dataclasses.replace(plan, options=dataclasses.replace(plan.options, **changes))


def test_pass_one_plans_the_output(setup):
    plan = setup["plan"]
    assert plan.track.frame_count == N and plan.size == 64
    assert plan.output_size == (160, 120)
    assert _with(plan, side_by_side=True).output_size == (320, 120)
    assert _with(plan, output_mode="crop").output_size == (64, 64)
    assert _with(plan, output_mode="crop", side_by_side=True).output_size == (128, 64)
    assert plan.hold_frames == 100  # 10 s at 10 frames/s
    assert set(plan.track.times) >= {"track_and_plate"}


def test_decode_stops_at_the_limit_and_times_itself(setup):
    times = StageTimes()
    frames = list(decode_stage(setup["driver"], 0, 4, times))
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert times["decode"] > 0
    assert [f.index for f in decode_stage(setup["driver"], 0, 100, StageTimes())] == list(range(N))


def test_batched_keeps_order_and_a_short_last_batch():
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []


def test_target_stage_holds_the_last_pose_across_batches(setup):
    plan, frames = setup["plan"], setup["frames"]
    times = StageTimes()
    targets = TargetStage(plan, setup["densepose"], times)
    jobs = targets(frames[:3]).jobs + targets(frames[3:]).jobs  # frame 3 is held from the previous batch
    assert [j[0] for j in jobs] == list(range(N))
    for index in MISSING:
        assert jobs[index][1] == jobs[1][1] and jobs[index][2] is jobs[1][2]
    assert jobs[4][2] is not None and not np.array_equal(jobs[4][2], jobs[1][2])
    assert jobs[0][2].shape == (64, 64, 2)
    assert times["iuv_crop_to_uv"] > 0

    no_hold = TargetStage(_with(plan, on_missing="background"), setup["densepose"], StageTimes())
    jobs = no_hold(frames).jobs
    assert [j[1] is None for j in jobs] == [i in MISSING for i in range(N)]
    assert [j[2] is None for j in jobs] == [i in MISSING for i in range(N)]


def test_warp_refine_renders_a_batch_in_order_with_gaps(setup):
    plan, frames = _with(setup["plan"], on_missing="background"), setup["frames"]
    targets = TargetStage(plan, setup["densepose"], StageTimes())(frames)
    times = StageTimes()
    warp = WarpRefineStage(setup["state"], None, plan.options, times)
    rendered = warp(targets)
    assert rendered.frames == frames and rendered.jobs == targets.jobs
    assert [p is None for p in rendered.persons] == [i in MISSING for i in range(N)]
    rgb, mask = rendered.persons[0]
    assert rgb.shape == (64, 64, 3) and mask.shape == (64, 64) and mask.any()
    assert times["warp_and_refine"] > 0
    details = warp.details(targets.jobs[0][2])  # what `retarget frames` shows: the same crop
    np.testing.assert_allclose(details.output[0].permute(1, 2, 0).numpy(), rgb, atol=1e-6)
    assert warp(FrameTargets(frames[2:4], targets.jobs[2:4])).persons == [None, None]


class _Progress:
    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


@pytest.mark.parametrize("policy", ["skip", "background"])
def test_composite_yields_output_frames_and_counts(setup, policy):
    plan, frames = _with(setup["plan"], on_missing=policy), setup["frames"]
    targets = TargetStage(plan, setup["densepose"], StageTimes())
    rendered = WarpRefineStage(setup["state"], None, plan.options, StageTimes())(targets(frames))
    seen, progress, times = [], _Progress(), StageTimes()
    composite = CompositeStage(plan, times, on_frame=lambda i, rgb: seen.append(i), progress=progress)
    out = list(composite([rendered]))
    kept = [i for i in range(N) if policy != "skip" or i not in MISSING]
    assert seen == kept and [pts for _, pts in out] == [frames[i].pts for i in kept]
    assert all(rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8 for rgb, _ in out)
    assert composite.frames == len(kept) and composite.missing == len(MISSING) and progress.n == N
    assert times["composite"] > 0
    if policy == "background":  # a frame without a person is the plain background colour
        assert (out[MISSING[0]][0] == np.array([0x20, 0x40, 0x80])).all()
        assert not (out[0][0] == np.array([0x20, 0x40, 0x80])).all()


def test_encode_writes_every_frame_in_order():
    class Writer:
        def __init__(self):
            self.written = []

        def write(self, rgb, pts):
            self.written.append((int(rgb[0, 0, 0]), pts))

    writer, times = Writer(), StageTimes()
    EncodeStage(writer, times)((np.full((2, 2, 3), i, np.uint8), 10 * i) for i in range(5))
    assert writer.written == [(i, 10 * i) for i in range(5)]
    assert "encode" in times


def _job(setup, tmp_path, **options):
    photo = setup["driver"].with_name("photo.jpg")
    return VideoJob(source=photo, driver=setup["driver"], output=tmp_path / "out.mp4", size=64,
                    options=VideoOptions(quiet=True, temporal_radius=0, **options))


def test_render_video_leaves_no_thread_behind(setup, tmp_path, no_leaked_threads):
    summary = run_video_job(_job(setup, tmp_path), None)
    assert summary.frames == N and summary.output.is_file()
    for key in ("analysis_s", "total_s", "track_and_plate", "decode", "iuv_crop_to_uv", "warp_and_refine",
                "composite", "encode"):
        assert key in summary.timings


def test_an_encoder_error_stops_the_run_with_its_own_message(setup, tmp_path, monkeypatch, no_leaked_threads):
    calls = []

    def write(self, rgb, pts=None):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(video_io.VideoWriter, "write", write)
    with pytest.raises(OSError, match="No space left on device"):
        run_video_job(_job(setup, tmp_path), None)
    assert set(calls) == {"retarget-encode"}
    assert list(tmp_path.iterdir()) == []  # no output, no temporary


def test_an_error_in_a_middle_stage_stops_decode_and_encode(setup, tmp_path, monkeypatch, no_leaked_threads):
    def broken(*args, **kwargs):
        raise RuntimeError("refiner exploded")

    monkeypatch.setattr(video_module, "_render_batch", broken)
    with pytest.raises(RuntimeError, match="refiner exploded"):
        run_video_job(_job(setup, tmp_path, batch_size=2), None)
    assert list(tmp_path.iterdir()) == []
