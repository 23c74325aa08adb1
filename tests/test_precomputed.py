"""The precomputed DensePose backend: PNG folders and .npz sidecars (streamed frame by frame)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from densepose_adapter.precomputed import PrecomputedIUV, SidecarError, frame_index_from_name


def _iuvs(n=5, h=12, w=16):
    rng = np.random.default_rng(0)
    iuv = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    iuv[..., 0] = rng.integers(0, 25, (n, h, w))
    iuv[2] = 0  # a frame without a person
    return iuv


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_frames_in_any_order_and_missing_frames(tmp_path, compressed):
    iuv = _iuvs()
    path = tmp_path / "clip.iuv.npz"
    (np.savez_compressed if compressed else np.savez)(path, iuv=iuv, frame_indices=np.array([0, 1, 2, 5, 6]))
    source = PrecomputedIUV(path)
    assert source.frame_indices == [0, 1, 2, 5, 6]
    for index, k in [(0, 0), (1, 1), (5, 3), (1, 1), (6, 4)]:  # forwards, backwards, forwards
        np.testing.assert_array_equal(source.get(index).iuv, iuv[k])
    assert not source.get(2).has_person and not source.get(3).has_person  # empty frame / no entry
    with pytest.raises(SidecarError, match=r"IUV frame is 16x12 but the driver frame is 32x24"):
        source.get(5, image_hw=(24, 32))  # never resized silently


def test_png_folder_uses_the_number_in_the_name(tmp_path):
    iuv = _iuvs(3)
    for i, frame in enumerate(iuv):
        cv2.imwrite(str(tmp_path / f"dance_{i * 10:04d}_IUV.png"), frame)
    source = PrecomputedIUV(tmp_path)
    assert source.frame_indices == [0, 10, 20]
    np.testing.assert_array_equal(source.get(20).iuv, iuv[2])
    assert frame_index_from_name("clip7_000123_IUV.png") == 123 and frame_index_from_name("x.png") is None


def test_bad_sidecars_are_value_errors(tmp_path):
    np.savez(tmp_path / "a.npz", other=np.zeros(3))
    with pytest.raises(ValueError, match="no 'iuv'"):
        PrecomputedIUV(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", iuv=np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        PrecomputedIUV(tmp_path / "b.npz")
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        PrecomputedIUV(tmp_path / "c.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no IUV PNGs"):
        PrecomputedIUV(tmp_path / "empty")


def test_npz_boxes_per_frame_or_per_detection_as_retarget_densepose_writes(tmp_path):
    iuv = np.zeros((3, 20, 30, 3), np.uint8)
    iuv[:, 2:18, 2:10, 0] = 1
    iuv[:2, 2:18, 20:28, 0] = 2
    plain = tmp_path / "plain.npz"
    np.savez(plain, iuv=iuv)
    assert not PrecomputedIUV(plain).has_boxes and len(PrecomputedIUV(plain).get(0).boxes) == 1  # around both
    per_frame = tmp_path / "per_frame.npz"
    slots = np.array([[[2, 2, 10, 18], [20, 2, 28, 18]]] * 3, np.float32)
    np.savez(per_frame, iuv=iuv, boxes=slots, scores=np.array([[0.9, 0.8], [0.9, 0.8], [0.9, 0.0]], np.float32))
    flat = tmp_path / "flat.npz"
    np.savez(flat, iuv=iuv, boxes=slots.reshape(-1, 4)[:5], scores=np.full(5, 0.9, np.float32),
             frame_index=np.array([0, 0, 1, 1, 2]))
    for path in (per_frame, flat):
        side = PrecomputedIUV(path)
        assert side.has_boxes
        assert [len(side.get(i).boxes) for i in range(3)] == [2, 2, 1]
        assert np.array_equal(side.get(1).boxes, slots[1])
    np.savez(flat, iuv=iuv, boxes=slots.reshape(-1, 4)[:5], frame_index=np.array([0.0, 0, 1, 1, 2]))
    with pytest.raises(SidecarError, match="frame_index"):
        PrecomputedIUV(flat)


def _folder(tmp_path, numbers):
    iuv = _iuvs(len(numbers))
    for frame, number in zip(iuv, numbers):
        cv2.imwrite(str(tmp_path / f"{number:07d}_IUV.png"), frame)
    return iuv


def test_a_folder_numbered_from_an_offset_is_read_in_order_when_it_is_one_run_of_the_drivers_length(tmp_path):
    iuv = _folder(tmp_path, range(263, 268))  # a clip cut from a longer video, keeping its frame numbers
    source = PrecomputedIUV(tmp_path)
    assert source.align_to(5) == 263
    assert source.frame_indices == [0, 1, 2, 3, 4] and source.coverage(5) == (0, [])
    assert 0 in source and 4 in source and 5 not in source and 263 not in source
    for k in range(5):
        np.testing.assert_array_equal(source.get(k).iuv, iuv[k])


@pytest.mark.parametrize("numbers, count", [
    (range(263, 268), 6),  # one frame fewer than the driver: which one is missing is a guess
    (range(263, 268), 4),  # one more
    ((263, 264, 266, 267, 268), 5),  # a gap
    (range(0, 5), 5),  # already from 0
    (range(263, 268), 0),  # the driver's frame count is unknown
])
def test_any_other_numbering_is_left_as_it_is(tmp_path, numbers, count):
    _folder(tmp_path, numbers)
    source = PrecomputedIUV(tmp_path)
    assert source.align_to(count) == 0
    assert source.frame_indices == list(numbers)


def test_an_npz_keeps_its_explicit_frame_indices(tmp_path):
    path = tmp_path / "clip.iuv.npz"
    np.savez(path, iuv=_iuvs(3), frame_indices=np.array([7, 8, 9]))
    source = PrecomputedIUV(path)
    assert source.align_to(3) == 0 and source.frame_indices == [7, 8, 9]
