"""``--person`` end to end on a synthetic two-person driver: the chosen one is replaced for the whole
clip, the other keeps its driver pixels; bad choices are one-line errors with no output."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from retarget.cli import main
from retarget.pipeline.job import VideoJob, run_video_job
from retarget.pipeline.video import VideoOptions
from tests.media import OVERLAPPING, make_group_driver, read_video, tinted_source

LEFT, RIGHT = 0, 1
#: Which person (left 0, right 1) each choice replaces in :func:`make_group_driver`'s clip.
CHOICES = {"largest": RIGHT, "left": LEFT, "right": RIGHT, "center": LEFT, "1": LEFT, "2": RIGHT}


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    folder = tmp_path_factory.mktemp("group")
    driver = folder / "group.mp4"
    masks = make_group_driver(driver, sidecar="png")
    decoded, _ = read_video(driver)
    return tinted_source(folder), driver, folder, masks, decoded


def _render(source, driver, person: str, **options) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    job = VideoJob(source=source, driver=driver, output=driver.with_name(f"{driver.stem}_{person}.mp4"), size=64,
                   overwrite=True, options=VideoOptions(person=person, quiet=True, **options))
    run_video_job(job, None, on_frame=lambda i, rgb: frames.append(rgb.copy()))
    return frames


def _check(frames, decoded, masks, chosen: int) -> None:
    assert len(frames) == len(decoded) == len(masks)
    for out, drv, both in zip(frames, decoded, masks):
        diff = np.abs(out.astype(int) - drv.astype(int)).max(axis=2)
        other = both[1 - chosen]
        assert diff[other].max() <= 2, "the other person's pixels must stay the driver's"
        core = cv2.erode(both[chosen].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        r, g, b = (out[core][:, c].astype(float).mean() for c in range(3))
        assert b > r + 25 and b > g + 25, "the chosen person must be the (blue) source person"
        assert diff[core].mean() > 25


@pytest.mark.parametrize("person", list(CHOICES))
def test_each_choice_replaces_its_person_for_the_whole_clip_and_keeps_the_other(group, person):
    source, driver, _, masks, decoded = group
    _check(_render(source, driver, person), decoded, masks, CHOICES[person])


@pytest.mark.parametrize("person, sidecar", [("left", "npz"), ("2", "detections")])
def test_model_like_boxes_in_an_npz_sidecar_choose_alike(group, person, sidecar):
    source, _, folder, _, _ = group
    driver = folder / f"{sidecar}.mp4"
    masks = make_group_driver(driver, sidecar=sidecar)
    decoded, _ = read_video(driver)
    _check(_render(source, driver, person, temporal_radius=0), decoded, masks, CHOICES[person])


def test_a_number_beyond_the_people_found_lists_them_and_writes_nothing(group, capsys):
    source, driver, _, _, _ = group
    out = driver.with_name("three.mp4")
    code = main(["video", "--source", str(source), "--driver", str(driver), "--weight-free", "--size", "64",
                 "--person", "3", "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and not out.exists() and not list(out.parent.glob("three*"))
    assert len(err.splitlines()) == 1
    assert err.startswith("error: --person 3: frame 0") and "has 2 people" in err
    assert "1 at x " in err and "2 at x " in err and "choose 1..2" in err


@pytest.mark.parametrize("value", ["0", "middle", "-1", "1.5"])
@pytest.mark.parametrize("command", ["video", "frames"])
def test_invalid_values_are_one_line_usage_errors(group, capsys, value, command, tmp_path):
    source, driver, _, _, _ = group
    out = tmp_path / ("o.mp4" if command == "video" else "inspect")
    code = main([command, "--source", str(source), "--driver", str(driver), "--weight-free", "--person", value,
                 "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: --person") and not out.exists()


def test_frames_numbers_the_people_and_highlights_the_chosen_one(group, tmp_path, capsys):
    source, driver, _, masks, _ = group
    out = tmp_path / "inspect"
    assert main(["frames", "--source", str(source), "--driver", str(driver), "--weight-free", "--size", "64",
                 "--person", "right", "--frames", "0", "-o", str(out), "-q"]) == 0
    html = (out / "index.html").read_text()
    assert "2 people (numbered from the left); yellow: person 2, replaced (--person right)" in html
    drawn = cv2.imread(str(out / "frame_000000" / "driver_people.png"))[..., ::-1]
    yellow = (drawn[..., 0] > 200) & (drawn[..., 1] > 180) & (drawn[..., 2] < 80)
    xs = np.nonzero(yellow)[1]
    right_cols = np.nonzero(masks[0, RIGHT].any(axis=0))[0]
    assert xs.size and right_cols.min() - 4 <= xs.min() and xs.max() <= right_cols.max() + 4


def test_batch_jobs_take_a_person_key(group, tmp_path, capsys):
    source, driver, _, masks, decoded = group
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(f"source,driver,output,person\n{source},{driver},bad.mp4,middle\n")
    assert main(["batch", "--jobs", str(jobs), "--weight-free", "-q", "--fail-fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "jobs.csv:2" in err and "--person 'middle'" in err
    assert main(["batch", "--jobs", str(jobs), "--weight-free", "-q"]) == 1  # without --fail-fast: that job fails
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 of 1 job failed" in err
    record = json.loads((tmp_path / "batch_report.json").read_text())["jobs"][0]
    assert record["status"] == "failed" and "jobs.csv:2" in record["error"] and "--person 'middle'" in record["error"]
    jobs.write_text(f"source,driver,output,person\n{source},{driver},right.mp4,right\n")
    assert main(["batch", "--jobs", str(jobs), "--size", "64", "--weight-free", "--workers", "1", "-q"]) == 0
    capsys.readouterr()
    frames, _ = read_video(tmp_path / "right.mp4")
    assert len(frames) == len(decoded)
    for out, drv, both in zip(frames, decoded, masks):
        core = cv2.erode(both[RIGHT].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        r, g, b = (out[core][:, c].astype(float).mean() for c in range(3))
        assert b > r + 25 and b > g + 25
        assert np.abs(out.astype(int) - drv.astype(int))[both[LEFT]].mean() < 8  # after H.264 twice


def test_a_chosen_person_runs_the_densepose_model_on_whole_frames(tmp_path, monkeypatch):
    from retarget.pipeline import job as job_module

    seen = []
    monkeypatch.setattr(job_module, "open_model_backend", lambda *args, **kwargs: seen.append(args[-1]) or "backend")
    for person, track in (("largest", True), ("left", False), ("2", False)):
        job = VideoJob(source=tmp_path / "a.jpg", driver=tmp_path / "b.mp4", densepose_track=True,
                       options=VideoOptions(person=person))
        assert job_module._model_backend(job, "driver") == "backend" and seen[-1] is track
    job = VideoJob(source=tmp_path / "a.jpg", driver=tmp_path / "b.mp4", densepose_track=False)
    job_module._model_backend(job, "driver")
    assert seen[-1] is False


@pytest.mark.parametrize("person, chosen", [("left", LEFT), ("right", RIGHT)])
def test_overlapping_people_the_one_in_front_stays_over_the_replaced_one(group, person, chosen):
    source, _, folder, _, _ = group
    driver = folder / f"overlap_{person}.mp4"
    masks = make_group_driver(driver, sidecar="npz", people=OVERLAPPING)
    decoded, _ = read_video(driver)
    frames = _render(source, driver, person, temporal_radius=0)
    for out, drv, both in zip(frames, decoded, masks):
        assert (both[LEFT] & (cv2.dilate(both[RIGHT].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)).any()
        diff = np.abs(out.astype(int) - drv.astype(int)).max(axis=2)
        core = cv2.erode(both[chosen].astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert out[core][:, 2].mean() > out[core][:, 0].mean() + 20  # replaced by the blue source
        if chosen == LEFT:  # the person in front keeps every pixel, also over the replaced one
            assert diff[both[RIGHT]].max() <= 2
        else:  # the one behind keeps the pixels the replaced (front) person does not cover
            assert np.median(diff[both[LEFT]]) <= 2
