"""`retarget video` end to end on synthetic clips: timing, audio, placement, cache, interruption, batching."""

from __future__ import annotations

import numpy as np
import pytest

from retarget.cli import main
from retarget.pipeline import Models
from retarget.pipeline.densepose_stage import DensePoseCache
from retarget.pipeline.job import VideoJob, run_video_job
from retarget.pipeline.video import VideoOptions
from tests.assets import coordinpaint_dir
from tests.media import LookupDensePose, make_driver, person_track, read_video, sample_source

COLOUR = "#204080"
COLOUR_RGB = np.array([0x20, 0x40, 0x80])


@pytest.fixture
def clip(tmp_path):
    photo, _ = sample_source(tmp_path)
    driver = tmp_path / "dance.mp4"
    iuvs = make_driver(driver)
    return photo, driver, iuvs


def capture(job: VideoJob, models=None, model_backend=None) -> tuple[list[np.ndarray], object]:
    frames: list[np.ndarray] = []
    summary = run_video_job(job, models, model_backend, on_frame=lambda i, rgb: frames.append(rgb.copy()))
    return frames, summary


def test_cli_round_trip_keeps_timing_audio_and_size(clip, capsys):
    photo, driver, iuvs = clip
    assert main(["video", "--source", str(photo), "--driver", str(driver), "--size", "64",
                 "--weight-free"]) == 0
    out = driver.with_name("dance_as_photo.mp4")
    assert capsys.readouterr().out.strip() == str(out)
    frames, info = read_video(out)
    _, driver_info = read_video(driver)
    assert len(frames) == len(iuvs)
    assert info["fps"] == driver_info["fps"] and info["audio"]
    assert (info["width"], info["height"]) == (driver_info["width"], driver_info["height"])
    assert abs(info["duration"] - driver_info["duration"]) <= 1 / driver_info["fps"] + 1e-6
    # never overwrite: the same command again needs --overwrite
    assert main(["video", "--source", str(photo), "--driver", str(driver), "--size", "64", "--weight-free"]) == 2
    assert list(driver.parent.glob("*.part*")) == []


def test_person_follows_driver_and_background_is_exact(clip):
    photo, driver, iuvs = clip
    job = VideoJob(source=photo, driver=driver, output=driver.with_name("o.mp4"), size=64,
                   options=VideoOptions(background=COLOUR, quiet=True))
    frames, summary = capture(job)
    assert summary.frames == len(iuvs) and summary.densepose_calls == 0  # precomputed sidecar
    xs = person_track(len(iuvs), frames[0].shape[1])
    centres = []
    for frame in frames:
        person = np.abs(frame.astype(int) - COLOUR_RGB).sum(axis=2) > 0
        assert person.any()
        centres.append(np.nonzero(person)[1].mean())
        # far from the person every pixel is exactly the background colour (checked before encoding)
        rows, cols = np.nonzero(person)
        far = np.ones_like(person)
        far[max(0, rows.min() - 3):rows.max() + 4, max(0, cols.min() - 3):cols.max() + 4] = False
        assert (frame[far] == COLOUR_RGB).all()
    assert np.corrcoef(centres, xs)[0, 1] > 0.99
    assert abs(centres[-1] - centres[0] - (xs[-1] - xs[0])) < 0.15 * (xs[-1] - xs[0])


def test_scene_background_removes_the_driver(clip):
    photo, driver, iuvs = clip
    job = VideoJob(source=photo, driver=driver, output=driver.with_name("o.mp4"), size=64,
                   options=VideoOptions(background="scene", quiet=True))
    frames, _ = capture(job)
    # where the driver person stood in frame 0 but the rendered person is not (it moved on by the
    # last frame), the scene plate shows the driver's background colour, not the driver.
    first_driver = iuvs[0][..., 0] > 0
    last_driver = iuvs[-1][..., 0] > 0
    region = first_driver & ~np.pad(last_driver, 0)
    pixels = frames[-1][region].astype(int)
    assert region.sum() > 50
    assert np.abs(pixels - np.array([90, 110, 130])).max() <= 12


def test_cache_second_run_skips_densepose_and_interrupt_leaves_nothing(clip, tmp_path):
    photo, driver, iuvs = clip
    # move the sidecar away so that the (stand-in) model backend is used
    sidecar = driver.with_name("dance.iuv")
    sidecar.rename(tmp_path / "elsewhere")
    out = tmp_path / "out.mp4"

    failing = LookupDensePose(iuvs, fail_after=5)
    job = VideoJob(source=photo, driver=driver, source_iuv=photo.with_name("photo_IUV.png"), output=out, size=64,
                   densepose_backend="torchvision", options=VideoOptions(batch_size=2, quiet=True))
    with pytest.raises(RuntimeError, match="injected"):
        run_video_job(job, None, failing)
    assert not out.exists() and list(tmp_path.glob("*.part*")) == []
    cache = DensePoseCache(driver, failing.cache_key())
    assert len(list(cache.folder.glob("*.npz"))) == 4  # batches of 2 written before the failure

    backend = LookupDensePose(iuvs)
    frames_a, summary = capture(job, None, backend)
    assert summary.densepose_calls == len(iuvs) - 4 and out.exists()

    # corrupt one entry: it is detected and recomputed, not trusted
    entry = sorted(cache.folder.glob("*.npz"))[3]
    entry.write_bytes(entry.read_bytes()[:-40] + b"\0" * 40)
    again = LookupDensePose(iuvs)
    job.overwrite = True
    frames_b, summary = capture(job, None, again)
    assert summary.densepose_calls == 1
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b))

    # an exception mid-render leaves no output either
    out.unlink()

    def boom(index, rgb):
        if index == 6:
            raise RuntimeError("injected render failure")

    with pytest.raises(RuntimeError, match="injected render"):
        run_video_job(job, None, LookupDensePose(iuvs), on_frame=boom)
    assert not out.exists() and list(tmp_path.glob("*.part*")) == []


def test_learned_path_batch_sizes_agree(clip):
    photo, driver, iuvs = clip
    models = Models.from_checkpoint_dir(coordinpaint_dir())
    results = []
    for batch in (1, 4):
        job = VideoJob(source=photo, driver=driver, output=driver.with_name(f"b{batch}.mp4"), size=64,
                       options=VideoOptions(batch_size=batch, background=COLOUR, quiet=True))
        frames, summary = capture(job, models)
        assert summary.frames == len(iuvs)
        results.append(np.stack(frames).astype(int))
    diff = np.abs(results[0] - results[1])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("policy,expected_frames", [("hold", 12), ("background", 12), ("skip", 9)])
def test_frames_without_person_follow_on_missing(tmp_path, policy, expected_frames):
    photo, _ = sample_source(tmp_path)
    driver = tmp_path / "gap.mp4"
    make_driver(driver, missing=(4, 5, 9))
    job = VideoJob(source=photo, driver=driver, output=tmp_path / "o.mp4", size=64,
                   options=VideoOptions(background=COLOUR, on_missing=policy, hold_seconds=0.1, quiet=True,
                                        temporal_radius=0))  # the filter would fill the single-frame gap 9
    frames, summary = capture(job)
    assert summary.frames == expected_frames
    shows_person = [bool((np.abs(f.astype(int) - COLOUR_RGB).sum(axis=2) > 0).any()) for f in frames]
    if policy == "hold":  # 0.1 s at 10 fps = 1 frame held, then background
        assert shows_person == [True] * 5 + [False] + [True] * 4 + [True] + [True]
    elif policy == "background":
        assert shows_person == [True] * 4 + [False, False] + [True] * 3 + [False] + [True] * 2
    else:
        assert all(shows_person)


def test_crop_mode_and_side_by_side(clip):
    photo, driver, iuvs = clip
    job = VideoJob(source=photo, driver=driver, output=driver.with_name("c.mp4"), size=64,
                   options=VideoOptions(output_mode="crop", side_by_side=True, quiet=True))
    frames, _ = capture(job)
    assert frames[0].shape == (64, 128, 3)
    _, info = read_video(driver.with_name("c.mp4"))
    assert (info["width"], info["height"]) == (128, 64)


def test_driver_without_densepose_gives_clear_error(tmp_path, capsys):
    photo, _ = sample_source(tmp_path)
    driver = tmp_path / "plain.mp4"
    make_driver(driver, sidecar=False)
    code = main(["video", "--source", str(photo), "--driver", str(driver), "--weight-free"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("error:") and "densepose" in err[-1].lower()
    assert not list(tmp_path.glob("*.mp4"))[1:]  # only the driver itself


def test_bf16_precision_is_close_to_fp32(clip, monkeypatch):
    from retarget.pipeline import precision as precision_module

    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)  # bf16 even where it is emulated
    photo, driver, iuvs = clip
    models = Models.from_checkpoint_dir(coordinpaint_dir())
    frames = {}
    for precision in ("fp32", "bf16"):
        job = VideoJob(source=photo, driver=driver, output=driver.with_name(f"{precision}.mp4"), size=64,
                       options=VideoOptions(precision=precision, background=COLOUR, quiet=True))
        frames[precision] = np.stack(capture(job, models)[0]).astype(int)
    diff = np.abs(frames["fp32"] - frames["bf16"])
    assert 0 < diff.max() <= 12 and diff.mean() < 0.5  # it really ran in bf16, and stays close
    with pytest.raises(Exception, match="fp16 needs --device cuda"):
        VideoOptions(precision="fp16").validate()


def test_ctrl_c_gives_one_line_and_no_output(clip, capsys):
    import os
    import signal

    import retarget.pipeline.video as video_module

    photo, driver, _ = clip
    out = driver.with_name("interrupted.mp4")
    original = video_module._composite

    def interrupt_on_third_frame(frame, *args, **kwargs):
        if frame.index == 2:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
        return original(frame, *args, **kwargs)

    video_module._composite = interrupt_on_third_frame
    # Python's own Ctrl-C handler, whatever this process inherited (background jobs start with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main(["video", "--source", str(photo), "--driver", str(driver), "-o", str(out), "--size", "64",
                     "--weight-free", "--quiet"])
    finally:
        video_module._composite = original
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err[-1].startswith("error: interrupted")
    assert not out.exists() and not list(driver.parent.glob(".*part*"))
