"""`retarget frames` (stage images, contact sheets, index.html checked in headless Chromium) and
`retarget video --side-by-side`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from retarget.cli import main
from retarget.errors import UsageError
from retarget.inspect.frames import parse_selection
from retarget.io.video import iter_frames
from retarget.inspect.visual import checkerboard, coords_to_rgb, iuv_to_rgb, legend_image
from tests.media import make_driver, read_video, sample_source

N_FRAMES, WIDTH, HEIGHT = 8, 128, 96
SOURCE_FILES = ["photo.png", "iuv.png", "uv.png", "texture_xy_partial.png", "coverage.png",
                "texture_xy_completed.png", "texture_colour_partial.png", "texture_colour.png"]
FRAME_FILES = ["driver.png", "driver_people.png", "driver_iuv.png", "target_uv.png", "coarse.png", "refined.png",
               "final.png", "sheet.png"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames_media")
    photo, _ = sample_source(root)
    driver = root / "dance.mp4"
    make_driver(driver, n=N_FRAMES, width=WIDTH, height=HEIGHT, audio=False, missing=(4,))
    return photo, driver


@pytest.fixture(scope="module")
def inspected(clip, tmp_path_factory):
    photo, driver = clip
    out = tmp_path_factory.mktemp("inspect") / "out"
    assert main(["frames", "--source", str(photo), "--driver", str(driver), "--out", str(out), "--frames", "2:6",
                 "--size", "64", "--weight-free", "-q"]) == 0
    return out


def image_sources(page: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)


def test_frames_writes_source_stages_frame_stages_and_index(inspected):
    out = inspected
    for name in SOURCE_FILES:
        image = cv2.imread(str(out / "source" / name))
        assert image is not None and image.shape[:2] == (64, 64), name
    assert cv2.imread(str(out / "legend.png")) is not None
    assert sorted(p.name for p in out.glob("frame_*")) == [f"frame_{i:06d}" for i in range(2, 6)]
    for i in range(2, 6):
        folder = out / f"frame_{i:06d}"
        assert sorted(p.name for p in folder.iterdir()) == sorted(FRAME_FILES)
        assert cv2.imread(str(folder / "driver.png")).shape[:2] == (HEIGHT, WIDTH)
        assert cv2.imread(str(folder / "final.png")).shape[:2] == (HEIGHT, WIDTH)
        assert cv2.imread(str(folder / "target_uv.png")).shape[:2] == (64, 64)
        assert cv2.imread(str(folder / "sheet.png")).shape[1] > 3 * 64
    page = (out / "index.html").read_text()
    srcs = image_sources(page)
    written = {str(p.relative_to(out)) for p in out.rglob("*.png")}
    assert set(srcs) == written  # every image is shown, every shown image exists
    assert "no person in this frame: last pose held" in page  # frame 4 has no person: the pose is held
    assert "weight-free path" in page and "table clean" in page  # --table auto on the weight-free path


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _dump_dom(browser: str, page: Path, profile: Path) -> str:
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
            "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_index_html_opens_in_headless_chromium_with_every_image(inspected, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run installs it for this test")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    copy = tmp_path / "site"
    shutil.copytree(inspected, copy)
    page = copy / "index.html"
    n_images = len(image_sources(page.read_text()))
    dom = _dump_dom(browser, page, tmp_path / "profile")
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-images="{n_images}"' in body and 'data-broken="0"' in body, body
    # the check is real: a missing image is reported by the page
    (copy / "frame_000003" / "coarse.png").unlink()
    body = re.search(r"<body[^>]*>", _dump_dom(browser, page, tmp_path / "profile2")).group(0)
    assert 'data-broken="1"' in body, body


def test_frames_only_densepose(clip, tmp_path):
    _, driver = clip
    out = tmp_path / "dp"
    assert main(["frames", "--driver", str(driver), "--out", str(out), "--only-densepose", "--every", "3", "-q"]) == 0
    assert sorted(p.name for p in out.glob("frame_*")) == ["frame_000000", "frame_000003", "frame_000006"]
    for folder in out.glob("frame_*"):
        assert sorted(p.name for p in folder.iterdir()) == ["driver.png", "driver_iuv.png", "driver_uv.png",
                                                             "overlay.png", "sheet.png"]
    srcs = image_sources((out / "index.html").read_text())
    assert srcs and all((out / s).is_file() for s in srcs)


def test_frames_usage_errors(clip, tmp_path, capsys):
    photo, driver = clip
    base = ["frames", "--driver", str(driver), "--size", "64", "--weight-free"]
    assert main(base + ["--source", str(photo), "--out", str(tmp_path / "a"), "--frames", "1:3", "--every", "2"]) == 2
    assert main(base + ["--source", str(photo), "--out", str(tmp_path / "b"), "--only-densepose"]) == 2
    assert main(base + ["--out", str(tmp_path / "c")]) == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    assert main(base + ["--source", str(photo), "--out", str(busy)]) == 2
    assert main(base + ["--source", str(photo), "--out", str(tmp_path / "d"), "--frames", "100:120"]) == 1
    err = capsys.readouterr().err
    assert "not both" in err and "not empty" in err and "not in the video" in err
    assert (busy / "keep.txt").read_text() == "x"


def test_frames_beyond_the_video_are_named_not_dropped_silently(clip, tmp_path, capsys):
    _, driver = clip
    out = tmp_path / "dp"
    assert main(["frames", "--driver", str(driver), "--out", str(out), "--only-densepose", "--frames", "3,70",
                 "-q"]) == 0
    assert sorted(p.name for p in out.glob("frame_*")) == ["frame_000003"]
    n = len(list(iter_frames(driver)))
    assert f"note: {driver}: frame 70 is beyond the video's {n} frames (0..{n - 1}); skipped" in capsys.readouterr().err
    assert parse_selection("2:40", None, n).beyond(n) == f"frames {n}..39 are beyond the video's {n} frames; skipped"
    assert parse_selection("2:5", None, n).beyond(n) == parse_selection(None, 2, n).beyond(n) == ""


def test_frame_selection_parsing():
    sel = parse_selection("10:40", None, 100)
    assert 10 in sel and 39 in sel and 40 not in sel and 9 not in sel
    sel = parse_selection("0:10:3", None, 100)
    assert [i for i in range(12) if i in sel] == [0, 3, 6, 9]
    assert [i for i in range(50) if i in parse_selection(None, 15, 100)] == [0, 15, 30, 45]
    assert [i for i in range(20) if i in parse_selection("3,7, 12", None, 100)] == [3, 7, 12]
    assert [i for i in range(20) if i in parse_selection(None, None, 8)] == list(range(8))
    for bad in ("5:2", "a:b", "x"):
        with pytest.raises(UsageError):
            parse_selection(bad, None, 10)


def test_colour_codes_and_legend():
    corners = np.array([[[-1, -1], [1, -1]], [[-1, 1], [1, 1]]], np.float32)  # (H, W, 2) x, y
    rgb = coords_to_rgb(corners).astype(int)
    assert rgb[0, 0].tolist() == [0, 0, 255] and rgb[0, 1].tolist() == [255, 0, 128]
    assert rgb[1, 0].tolist() == [0, 255, 128] and rgb[1, 1].tolist() == [255, 255, 0]
    holes = coords_to_rgb(np.full((16, 16, 2), np.nan, np.float32))
    assert np.array_equal(holes, checkerboard(16, 16))
    iuv = np.zeros((4, 4, 3), np.uint8)
    iuv[1:3, 1:3, 0] = 2
    vis = iuv_to_rgb(iuv)
    assert (vis[0, 0] == 0).all() and (vis[1, 1] > 0).any()
    assert legend_image(np.zeros((64, 64, 3), np.uint8)).shape[0] > 256


def test_video_side_by_side_is_driver_then_result(clip, tmp_path):
    photo, driver = clip
    out = tmp_path / "sbs.mp4"
    assert main(["video", "--source", str(photo), "--driver", str(driver), "-o", str(out), "--size", "64",
                 "--weight-free", "--background", "#204080", "--side-by-side", "-q"]) == 0
    frames, info = read_video(out)
    driver_frames, driver_info = read_video(driver)
    assert (info["width"], info["height"]) == (2 * driver_info["width"], driver_info["height"])
    assert len(frames) == len(driver_frames)
    colour = np.array([0x20, 0x40, 0x80])
    for frame, original in zip(frames, driver_frames):
        left, right = frame[:, :WIDTH].astype(int), frame[:, WIDTH:].astype(int)
        assert np.abs(left - original).mean() < 4  # the driver, unchanged up to coding noise
        assert np.abs(right[:8, :8] - colour).mean() < 6  # the result over its background colour
        assert np.abs(right - colour).max() > 40  # with the person in it
