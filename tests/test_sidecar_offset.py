"""A driver IUV folder numbered from an offset (frames cut from a longer video, keeping its numbers): read in
order when it is one run of exactly the driver's frame count, refused with the mismatch named otherwise."""

from __future__ import annotations

import shutil

import av
import numpy as np

from retarget.cli import main
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO, one_error_line
from tests.media import make_driver

N = 4


def _frames(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def _renumber(folder, target, first):
    target.mkdir()
    for k, file in enumerate(sorted(folder.glob("*.png"))):
        shutil.copyfile(file, target / f"{first + k:07d}_IUV.png")


def _video(tmp_path, iuv, name):
    return main(["video", "--source", str(tmp_path / "photo.jpg"), "--driver", str(tmp_path / "dance.mp4"),
                 "--driver-iuv", str(iuv), "--weight-free", "--size", "64", "--crf", "0",
                 "-o", str(tmp_path / name)])


def test_an_offset_folder_renders_what_the_same_folder_from_zero_renders(tmp_path, capsys):
    shutil.copyfile(EXAMPLE_PHOTO, tmp_path / "photo.jpg")
    shutil.copyfile(EXAMPLE_IUV, tmp_path / "photo_IUV.png")
    make_driver(tmp_path / "dance.mp4", n=N, width=96, height=80, audio=False)
    _renumber(tmp_path / "dance.iuv", tmp_path / "offset", 263)
    assert _video(tmp_path, tmp_path / "dance.iuv", "zero.mp4") == 0
    capsys.readouterr()
    assert _video(tmp_path, tmp_path / "offset", "offset.mp4") == 0
    err = capsys.readouterr().err
    assert "IUV frames 263..266 read as the driver's frames 0..3" in err
    zero, offset = _frames(tmp_path / "zero.mp4"), _frames(tmp_path / "offset.mp4")
    assert len(zero) == len(offset) == N
    for a, b in zip(zero, offset):
        np.testing.assert_array_equal(a, b)

    _renumber(tmp_path / "dance.iuv", tmp_path / "longer", 263)  # one frame more than the driver: refused
    shutil.copyfile(tmp_path / "longer" / "0000263_IUV.png", tmp_path / "longer" / f"{263 + N:07d}_IUV.png")
    assert _video(tmp_path, tmp_path / "longer", "longer.mp4") == 1
    assert "has IUV for frame 263" in one_error_line(capsys)
    assert not (tmp_path / "longer.mp4").exists()
