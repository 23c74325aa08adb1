"""The live (causal, frame-by-frame) pipeline: retarget/pipeline/live.py and its causal helpers."""

from __future__ import annotations

import numpy as np
import pytest

from densepose_adapter.precomputed import PrecomputedIUV
from densepose_adapter.temporal import TemporalIUVFilter, TemporalSettings
from retarget.errors import UsageError
from retarget.io.video import iter_frames
from retarget.pipeline.background import LiveScenePlate
from retarget.pipeline.framing import CausalTrackSmoother
from retarget.pipeline.live import KEEP_FRAMES, Retargeter
from tests.media import make_driver, sample_source


@pytest.fixture
def clip(tmp_path):
    driver = tmp_path / "driver.mp4"
    iuvs = make_driver(driver, n=12, audio=False, missing=(5, 6))
    photo, _ = sample_source(tmp_path)
    frames = [f.rgb for f in iter_frames(driver)]
    return {"driver": driver, "photo": photo, "frames": frames, "iuvs": list(iuvs), "dir": tmp_path}


def test_stream_matches_video_frame_for_frame_without_the_non_causal_parts(clip):
    """With the parts that need the future switched off (temporal filter, crop smoothing) and a fixed
    background, a stream renders exactly what `video` renders: the same stages on the same crops (--steady
    included: it is causal)."""
    from retarget.pipeline.job import VideoJob, run_video_job
    from retarget.pipeline.video import VideoOptions

    rendered = {}
    options = VideoOptions(background="#204060", temporal_radius=0, smooth_sigma_seconds=0.0, quiet=True,
                           batch_size=3)
    run_video_job(VideoJob(source=clip["photo"], driver=clip["driver"], output=clip["dir"] / "v.mp4",
                           options=options), None, on_frame=lambda i, rgb: rendered.__setitem__(i, rgb.copy()))
    sidecar = PrecomputedIUV(clip["dir"] / "driver.iuv")
    live = Retargeter(clip["photo"], models=None, background="#204060", temporal_radius=0,
                      smooth_sigma_seconds=0.0)
    out = list(live.stream(clip["frames"], iuv=[sidecar.get(i).iuv for i in range(12)], fps=10))
    assert len(out) == len(rendered) == 12
    for i in range(12):
        np.testing.assert_array_equal(out[i], rendered[i], err_msg=f"frame {i}")


def test_stream_with_defaults_follows_the_person_and_holds_missing_frames(clip):
    live = Retargeter(clip["photo"], models=None)  # scene plate, causal filter, one-euro smoothing
    out = list(live.stream(clip["frames"], iuv=clip["iuvs"], fps=10))
    assert len(out) == 12 and all(o.shape == (120, 160, 3) and o.dtype == np.uint8 for o in out)
    # the person moves left to right: the changed pixels' centre follows it
    centres = []
    for i in (1, 10):
        person = clip["iuvs"][i][..., 0] > 0
        centres.append(np.nonzero(person)[1].mean())
        ys, xs = np.nonzero(np.abs(out[i].astype(int) - clip["frames"][i].astype(int)).sum(axis=2) > 60)
        assert abs(xs.mean() - centres[-1]) < 12
    assert centres[1] > centres[0] + 30


def test_on_missing_skip_leaves_frames_out_in_order(clip):
    live = Retargeter(clip["photo"], models=None, on_missing="skip", temporal_radius=0)
    assert len(list(live.stream(clip["frames"], iuv=clip["iuvs"]))) == 10


def test_a_session_keeps_a_bounded_state(clip):
    live = Retargeter(clip["photo"], models=None)
    session = live.session(160, 120, fps=10)
    for k in range(40):
        i = k % 12
        assert session.process(clip["frames"][i], clip["iuvs"][i]) is not None
    assert len(session.track.boxes) <= KEEP_FRAMES and len(session.track.crops) <= KEEP_FRAMES
    assert len(session.raw._results) <= KEEP_FRAMES and len(session.filtered._results) <= KEEP_FRAMES
    assert session.filter.filter.held <= 1 + 2


def test_frames_of_another_size_and_unknown_options_are_refused(clip):
    with pytest.raises(TypeError, match="bogus"):
        Retargeter(clip["photo"], models=None, bogus=1)
    with pytest.raises(UsageError, match="--background"):
        Retargeter(clip["photo"], models=None, background="plaid")
    live = Retargeter(clip["photo"], models=None)
    frames = [clip["frames"][0], np.zeros((60, 80, 3), np.uint8)]
    with pytest.raises(Exception, match="one frame size"):
        list(live.stream(frames, iuv=[clip["iuvs"][0], np.zeros((60, 80, 3), np.uint8)]))


def test_the_causal_temporal_filter_uses_past_frames_only(clip):
    iuvs = clip["iuvs"]
    changed = [iuv.copy() for iuv in iuvs]
    for iuv in changed[7:]:  # the future differs from frame 7 on
        iuv[..., 1] = 255 - iuv[..., 1]
    settings = TemporalSettings(radius=2)
    a, b = TemporalIUVFilter(settings, causal=True), TemporalIUVFilter(settings, causal=True)
    out_a = [a.push(x) for x in iuvs]
    out_b = [b.push(x) for x in changed]
    assert all(len(o) == 1 and o[0][0] == t for t, o in enumerate(out_a))  # each frame at once, no delay
    for t in range(7):
        np.testing.assert_array_equal(out_a[t][0][1], out_b[t][0][1])
    assert a.held <= settings.radius + 2
    # it does filter: a part label flipped in one frame is voted back by the frames before it
    noisy = [iuv.copy() for iuv in iuvs[:4]]
    person = noisy[3][..., 0] > 0
    noisy[3][person & (noisy[3][..., 0] == noisy[3][..., 0][person].max()), 0] = 1
    c = TemporalIUVFilter(settings, causal=True)
    last = [c.push(x) for x in noisy][-1][0][1]
    assert (last[..., 0] != noisy[3][..., 0]).sum() > 0


def test_causal_track_smoother():
    smoother = CausalTrackSmoother(sigma_frames=2.0)
    still = [smoother.step(np.array([50.0, 60.0, 100.0])) for _ in range(5)]
    np.testing.assert_allclose(still, [[50, 60, 100]] * 5)  # a still person never jitters
    assert np.isnan(smoother.step(np.full(3, np.nan))).all()
    jittery = CausalTrackSmoother(sigma_frames=2.0)
    noise = np.random.default_rng(0).normal(0, 2, (60, 3))
    out = np.array([jittery.step(np.array([50.0, 60.0, 100.0]) + n) for n in noise])
    assert (out[10:].std(axis=0) / noise[10:].std(axis=0)).max() < 0.7  # jitter smoothed
    moving = CausalTrackSmoother(sigma_frames=2.0)
    track = [moving.step(np.array([10.0 + 8 * t, 60.0, 100.0])) for t in range(30)]
    assert abs(track[-1][0] - (10 + 8 * 29)) < 8  # a steady move is followed within a frame's motion


def test_live_scene_plate_reveals_the_background_as_the_person_moves():
    rng = np.random.default_rng(1)
    scene = rng.integers(0, 255, (40, 60, 3), np.uint8)
    plate = LiveScenePlate(40, 60)
    mask = np.zeros((40, 60), bool)
    mask[10:30, 5:15] = True  # the person on the left ...
    frame = scene.copy()
    frame[mask] = 0
    plate.add(frame, mask)
    first = plate.plate()
    assert first.shape == (40, 60, 3) and first.dtype == np.float32
    np.testing.assert_allclose(first[0, 40], scene[0, 40] / 255.0, atol=1e-6)  # seen: the scene
    moved = np.zeros((40, 60), bool)
    moved[10:30, 45:55] = True  # ... walks to the right
    frame = scene.copy()
    frame[moved] = 0
    plate.add(frame, moved)
    np.testing.assert_allclose(plate.plate()[20, 10], scene[20, 10] / 255.0, atol=1e-6)  # revealed
