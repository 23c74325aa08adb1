"""`retarget.inspect.frames.prepare_frames_job`: the checks of `retarget frames` as a Python call."""

from __future__ import annotations

import pytest

from retarget.errors import UsageError
from retarget.inspect.frames import FrameSelection, prepare_frames_job
from retarget.pipeline.video import VideoOptions
from tests.media import make_driver, sample_source


def _options():
    return VideoOptions(command="frames", quiet=True)


def test_prepare_returns_the_job_the_selection_and_the_created_folder(tmp_path):
    photo, _ = sample_source(tmp_path)
    driver = tmp_path / "dance.mp4"
    make_driver(driver, n=5, audio=False)
    job, selection, out = prepare_frames_job(driver, tmp_path / "inspect", source=photo, frames="1:4",
                                             options=_options(), size=64, no_such_field=1)
    assert (job.source, job.driver, job.size, job.options.command) == (photo, driver, 64, "frames")
    assert selection == FrameSelection(start=1, stop=4) and out.is_dir() and list(out.iterdir()) == []
    with pytest.raises(UsageError, match="pass --overwrite"):
        (out / "x").write_text("x")
        prepare_frames_job(driver, out, source=photo, options=_options(), size=64)


@pytest.mark.parametrize("kwargs, message", [
    (dict(source=None), "give --source"),
    (dict(only_densepose=True), "leave out --source"),
    (dict(size=66), "--size must be a multiple of 4"),
    (dict(frames="5:2"), "empty range"),
])
def test_bad_arguments_fail_before_the_folder_is_made(tmp_path, kwargs, message):
    photo, _ = sample_source(tmp_path)
    driver = tmp_path / "dance.mp4"
    make_driver(driver, n=3, audio=False)
    values = dict(source=photo, options=_options(), size=64)
    values.update(kwargs)
    with pytest.raises(UsageError, match=message):
        prepare_frames_job(driver, tmp_path / "inspect", **values)
    assert not (tmp_path / "inspect").exists()
