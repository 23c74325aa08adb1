"""``retarget densepose`` on videos: --iuv input, --temporal-filter, --render segm / iuv."""

from __future__ import annotations

import numpy as np
import pytest

from densepose_adapter.precomputed import PrecomputedIUV
from densepose_adapter.render import iuv_image, segm_image
from densepose_adapter.temporal import filter_sequence, guide_from_rgb
from retarget.cli import main
from retarget.io.video import iter_frames, probe_video
from tests.conftest import REPO

DRIVER = REPO / "examples" / "driver.mp4"
SIDECAR = REPO / "examples" / "driver.iuv"


def _frames(path):
    return list(iter_frames(path))


@pytest.mark.parametrize("kind", ["segm", "iuv"])
def test_render_keeps_frame_count_size_and_timing(tmp_path, kind):
    out = tmp_path / f"{kind}.mp4"
    assert main(["densepose", str(DRIVER), "--iuv", str(SIDECAR), "--render", kind, "--out", str(out), "-q"]) == 0
    src, got = probe_video(DRIVER), probe_video(out)
    assert (got.width, got.height, got.fps) == (src.width, src.height, src.fps)
    inputs, frames = _frames(DRIVER), _frames(out)
    assert len(frames) == len(inputs) == 60
    assert [f.time for f in frames] == pytest.approx([f.time for f in inputs], abs=1e-6)
    draw = segm_image if kind == "segm" else iuv_image
    iuvs = PrecomputedIUV(SIDECAR)
    for index in (0, 31, 59):  # what was drawn, up to H.264 loss
        expected = draw(iuvs.get(index).iuv).astype(np.int16)
        assert np.mean(np.abs(frames[index].rgb.astype(np.int16) - expected)) < 3.0


def test_segm_colours_follow_densepose_fine_segmentation_look():
    iuv = np.zeros((1, 25, 3), np.uint8)
    iuv[0, :, 0] = np.arange(25)
    rgb = segm_image(iuv)[0]
    assert not rgb[0].any()  # background stays black
    assert len({tuple(c) for c in rgb[1:]}) == 24  # every part its own colour
    # PARULA runs from dark blue (low parts) to yellow (head, 23-24), drawn at opacity 0.7
    assert rgb[1, 2] > rgb[1, 0] and rgb[24, 0] > rgb[24, 2] and rgb[24, 1] > rgb[24, 2]
    assert rgb.max() <= int(255 * 0.7)


def test_iuv_input_with_temporal_filter_matches_the_offline_filter(tmp_path):
    out = tmp_path / "stable.npz"
    assert main(["densepose", str(DRIVER), "--iuv", str(SIDECAR), "--temporal-filter", "--max-frames", "12",
                 "--out", str(out), "-q"]) == 0
    data = np.load(out)
    frames = _frames(DRIVER)[:12]
    raw = [PrecomputedIUV(SIDECAR).get(i, f.rgb.shape[:2]).iuv for i, f in enumerate(frames)]
    offline = filter_sequence(raw, [guide_from_rgb(f.rgb) for f in frames])
    assert data["iuv"].shape == (12, 360, 480, 3)
    for got, want in zip(data["iuv"], offline):
        np.testing.assert_array_equal(got, want)
    assert main(["densepose", str(DRIVER), "--iuv", str(SIDECAR), "--max-frames", "3",
                 "--out", str(tmp_path / "pngs"), "-q"]) == 0  # unfiltered PNGs are the sidecar's
    for i in range(3):
        np.testing.assert_array_equal(PrecomputedIUV(tmp_path / "pngs").get(i).iuv, raw[i])


def test_render_and_iuv_usage_errors(tmp_path, capsys):
    assert main(["densepose", str(DRIVER), "--iuv", str(SIDECAR), "--render", "segm", "--out",
                 str(tmp_path / "o.npz")]) == 2
    assert "--out FILE.mp4" in capsys.readouterr().err
    assert main(["densepose", str(DRIVER), "--iuv", str(SIDECAR), "--render", "dp_u", "--out",
                 str(tmp_path / "o.mp4")]) == 2
    assert main(["densepose", str(REPO / "examples" / "source.jpg"), "--iuv", str(SIDECAR), "--out",
                 str(tmp_path / "o.npz")]) == 2
    assert main(["densepose", str(DRIVER), "--iuv", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "o.npz")]) == 1
    assert main(["densepose", str(DRIVER), "--iuv", str(SIDECAR), "--max-frames", "-1", "--out",
                 str(tmp_path / "o.npz")]) == 2  # was an internal error from itertools.islice
    assert "--max-frames must be 0 (every frame) or more, got -1" in capsys.readouterr().err
