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


def test_contact_sheet_wraps_long_captions_and_keeps_the_title():
    """A caption wider than its image wraps over more lines instead of widening its column (a one-person
    caption made the sheet three times wider than its images), and the sheet is as wide as its title."""
    import cv2
    import numpy as np

    from retarget.inspect.visual import contact_sheet, labelled, wrap_caption

    image = np.full((96, 96, 3), 200, np.uint8)
    long = "1 person (numbered from the left); yellow: person 1, replaced (--person largest)"
    lines = wrap_caption(long, 110)
    assert len(lines) > 2 and " ".join(lines) == long
    assert all(cv2.getTextSize(x, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] <= 110 for x in lines)
    assert wrap_caption("supercalifragilisticexpialidocious word", 20) == ["supercalifragilisticexpialidocious",
                                                                           "word"]
    tile = labelled(image, long, height=96)
    assert tile.shape[1] == 120 and tile.shape[0] == 96 + 22 + 16 * (len(wrap_caption(long, 110)) - 1)
    assert labelled(image, "short", height=96).shape == (118, 120, 3)
    sheet = contact_sheet([("a", image), (long, image), ("c", image)], title="t" * 150, height=96)
    title_px = cv2.getTextSize("t" * 150, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)[0][0]
    assert sheet.shape[1] >= title_px + 12 and sheet.shape[1] < 3 * 200 + title_px
    plain = contact_sheet([("a", image), (long, image), ("c", image)], height=96)
    assert plain.shape[1] == 3 * (120 + 6) + 6
