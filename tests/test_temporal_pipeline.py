"""The temporal filter inside the video pipeline: streamed in pass 1, cached, read back in pass 2."""

from __future__ import annotations

import itertools

import numpy as np

from densepose_adapter.precomputed import PrecomputedIUV
from densepose_adapter.temporal import TemporalSettings, filter_sequence, guide_from_rgb
from retarget.io.video import iter_frames
from retarget.pipeline.densepose_stage import FrameDensePose
from retarget.pipeline.job import VideoJob, driver_densepose
from retarget.pipeline.temporal import FilteredDensePose, with_temporal_filter
from retarget.pipeline.video import VideoOptions
from tests.conftest import REPO

DRIVER = REPO / "examples" / "driver.mp4"
SIDECAR = REPO / "examples" / "driver.iuv"
N = 14


def _stage(radius=2):
    return with_temporal_filter(FrameDensePose(PrecomputedIUV(SIDECAR)), DRIVER, radius)


def _offline():
    frames = list(itertools.islice(iter_frames(DRIVER), N))
    raw = [PrecomputedIUV(SIDECAR).get(i, f.rgb.shape[:2]).iuv for i, f in enumerate(frames)]
    return frames, filter_sequence(raw, [guide_from_rgb(f.rgb) for f in frames], TemporalSettings(radius=2))


def test_stream_is_in_order_cached_and_equal_to_the_offline_filter():
    stage = _stage()
    assert isinstance(stage, FilteredDensePose)
    frames, offline = _offline()
    streamed = list(stage.stream(itertools.islice(iter_frames(DRIVER), N), batch_size=3))
    assert [f.index for f, _ in streamed] == list(range(N))
    for (_, result), want in zip(streamed, offline):
        np.testing.assert_array_equal(result.iuv, want)
        assert len(result.boxes) == 1
    again = _stage().results(list(range(N)), [f.rgb for f in frames])  # pass 2: a new stage, the cache
    for result, want in zip(again, offline):
        np.testing.assert_array_equal(result.iuv, want)
    assert len(list(stage.cache.folder.glob("*.npz"))) == N


def test_frames_asked_for_before_streaming_are_filtered_on_demand():
    frames, offline = _offline()
    result = _stage().results([5], [frames[5].rgb])[0]
    np.testing.assert_array_equal(result.iuv, offline[5])


def test_unwritable_cache_keeps_frames_in_memory(capsys):
    stage = _stage()

    def refuse(index, result):
        raise OSError(28, "No space left on device")

    stage.cache.store = refuse
    frames, offline = _offline()
    list(stage.stream(itertools.islice(iter_frames(DRIVER), N), batch_size=4))
    assert "note: cannot write the DensePose cache" in capsys.readouterr().err
    for result, want in zip(stage.results(list(range(N)), [f.rgb for f in frames]), offline):
        np.testing.assert_array_equal(result.iuv, want)


def test_video_job_filters_by_default_and_not_with_radius_zero(tmp_path):
    source = REPO / "examples" / "source.jpg"
    on = driver_densepose(VideoJob(source=source, driver=DRIVER))
    off = driver_densepose(VideoJob(source=source, driver=DRIVER, options=VideoOptions(temporal_radius=0)))
    assert isinstance(on, FilteredDensePose) and on.settings.radius == 2
    assert isinstance(off, FrameDensePose)
    strong = driver_densepose(VideoJob(source=source, driver=DRIVER, options=VideoOptions(temporal_radius=4)))
    assert strong.cache.folder != on.cache.folder  # the settings are part of the cache key


def test_video_cli_options(tmp_path):
    from retarget.cli import main

    base = ["video", "--source", str(REPO / "examples" / "source.jpg"), "--driver", str(DRIVER), "-o",
            str(tmp_path / "o.mp4"), "--weight-free", "-q"]
    assert main([*base, "--temporal-strength", "9"]) == 2
    assert main([*base, "--temporal-strength", "0"]) == 2
    options = VideoOptions(temporal_radius=9)
    try:
        options.validate()
    except Exception as exc:  # noqa: BLE001 - the usage error names the flag
        assert "--temporal-strength" in str(exc)
    else:
        raise AssertionError("radius 9 accepted")


def test_every_entry_point_has_the_same_default_filter_window():
    """`retarget video`, `frames`, `batch`, `densepose --temporal-filter`, batch job files, VideoOptions and
    TemporalSettings agree on the window (2 frames each side; docs/temporal.md, "The window")."""
    import typer

    from retarget.batch.jobs import DEFAULT_OPTIONS, temporal_radius
    from retarget.cli import app

    commands = typer.main.get_command(app).commands
    cli = {name: {p.name: p.default for p in commands[name].params}["temporal_strength"]
           for name in ("video", "frames", "batch", "densepose")}
    expected = VideoOptions().temporal_radius
    assert expected == TemporalSettings().radius == 2
    assert cli == dict.fromkeys(cli, expected), cli
    assert DEFAULT_OPTIONS["temporal_strength"] == temporal_radius({}) == expected
    assert temporal_radius({"temporal_filter": False}) == 0 and temporal_radius({"temporal_strength": 5}) == 5
