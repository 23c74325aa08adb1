"""``retarget image`` on photos it cannot render at their own size: framed around the people, pasted back
(retarget/pipeline/image_pair.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from densepose_adapter.iuv import read_iuv_png
from retarget.cli import main
from retarget.io.image import read_image_rgb
from retarget.io.iuv import write_iuv_png
from retarget.pipeline.image_pair import NATIVE_MAX, frame_pair, framing_reason
from retarget.uvmap import iuv_to_uv
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO, one_error_line


def _example():
    return read_image_rgb(EXAMPLE_PHOTO), read_iuv_png(EXAMPLE_IUV)


def _write(folder, name, photo, iuv):
    cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    write_iuv_png(folder / f"{name}_IUV.png", iuv)
    return folder / f"{name}.png", folder / f"{name}_IUV.png"


def _psnr(a, b, mask):
    """PSNR over ``mask`` (eroded 2 px) of the two images blurred (σ 2 px): resampling to the crop and back blurs the
    shirt's 1-px stripes, which a sharp comparison would count; a person misplaced by 2 px scores about 7 dB less."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    a, b = (cv2.GaussianBlur(x.astype(np.float32), (0, 0), 2.0)[inner] for x in (a, b))
    return 10 * np.log10(255.0 ** 2 / max(float(np.mean((a - b) ** 2)), 1e-12))


def _image(args, capsys):
    code = main(["image", "--weight-free", *map(str, args)])
    return code, capsys.readouterr().err


def test_framing_reason_says_when_the_photo_size_is_kept():
    assert framing_reason((256, 256), (256, 256)) is None
    assert framing_reason((NATIVE_MAX, 512), (NATIVE_MAX, 512)) is None
    assert "multiple of 4" in framing_reason((255, 201), (255, 201))
    assert "above" in framing_reason((NATIVE_MAX + 4, 512), (NATIVE_MAX + 4, 512))
    assert "target map is 300x200" in framing_reason((256, 256), (200, 300))


def test_iuv_maps_are_cut_before_conversion_with_the_same_result():
    photo, iuv = _example()
    from_iuv = frame_pair(photo, iuv, iuv, 128, "clean")
    from_uv = frame_pair(photo, iuv_to_uv(iuv, table="clean"), iuv_to_uv(iuv, table="clean"), 128, "clean")
    np.testing.assert_array_equal(from_iuv.image, from_uv.image)
    np.testing.assert_array_equal(np.isnan(from_iuv.uv), np.isnan(from_uv.uv))
    np.testing.assert_allclose(np.nan_to_num(from_iuv.target_uv), np.nan_to_num(from_uv.target_uv), atol=1e-6)
    assert from_iuv.target_crop == from_uv.target_crop and from_iuv.frame_hw == (256, 256)


def test_a_photo_whose_sides_are_not_multiples_of_4_renders_itself(tmp_path, capsys):
    photo, iuv = _example()
    photo, iuv = photo[0:255, 30:231], iuv[0:255, 30:231]  # 201 x 255
    src, src_iuv = _write(tmp_path, "odd", photo, iuv)
    out = tmp_path / "out.png"
    code, err = _image(["--source", src, "--source-iuv", src_iuv, "--target-iuv", src_iuv, "-o", out], capsys)
    assert code == 0, err
    assert "not a multiple of 4" in err and "256x256 crop" in err
    result = read_image_rgb(out)
    assert result.shape == photo.shape
    assert _psnr(result, photo, iuv[..., 0] > 0) > 23  # the photo's person, through a 256 crop and back


def test_a_large_photo_is_rendered_at_a_crop_like_the_small_one(tmp_path, capsys):
    photo, iuv = _example()
    big = NATIVE_MAX + 76  # 1100: above the native limit, so framed
    src, src_iuv = _write(tmp_path, "big", cv2.resize(photo, (big, big), interpolation=cv2.INTER_CUBIC),
                          cv2.resize(iuv, (big, big), interpolation=cv2.INTER_NEAREST))
    out = tmp_path / "big_out.png"
    code, err = _image(["--source", src, "--source-iuv", src_iuv, "--target-iuv", src_iuv, "-o", out], capsys)
    assert code == 0, err
    assert f"above {NATIVE_MAX} px" in err
    result = read_image_rgb(out)
    assert result.shape == (big, big, 3)
    small = cv2.resize(result, (256, 256), interpolation=cv2.INTER_AREA)
    assert _psnr(small, photo, iuv[..., 0] > 0) > 23


def test_the_output_has_the_target_maps_size_with_the_person_where_the_target_is(tmp_path, capsys):
    photo, iuv = _example()
    target = np.zeros((400, 320, 3), np.uint8)
    target[100:356, 40:296] = iuv  # the example's pose, moved, in a larger frame of another shape
    src, src_iuv = _write(tmp_path, "photo", photo, iuv)
    write_iuv_png(tmp_path / "target_IUV.png", target)
    out = tmp_path / "moved.png"
    code, err = _image(["--source", src, "--source-iuv", src_iuv, "--target-iuv", tmp_path / "target_IUV.png",
                        "-o", out], capsys)
    assert code == 0, err
    result = read_image_rgb(out).astype(np.int32)
    background = result[0, 0]
    drawn = np.abs(result - background).sum(axis=2) > 30
    person = target[..., 0] > 0
    assert drawn[~person].mean() < 0.01  # nothing drawn away from the target person
    assert drawn[person].mean() > 0.5  # the person is drawn where the target is (some of it near the colour)
    assert _psnr(result[100:356, 40:296], photo, iuv[..., 0] > 0) > 23


def test_size_renders_the_pair_at_that_crop(tmp_path, capsys):
    photo, iuv = _example()
    out, dump = tmp_path / "s.png", tmp_path / "s.npz"
    code, err = _image(["--source", EXAMPLE_PHOTO, "--source-iuv", EXAMPLE_IUV, "--target-iuv", EXAMPLE_IUV,
                        "--size", "128", "-o", out, "--dump-stages", dump], capsys)
    assert code == 0, err
    assert read_image_rgb(out).shape == photo.shape  # pasted back at the target's size
    assert np.load(dump)["source_textures"].shape[-1] == 128  # the stages are the crop's
    code, err = _image(["--source", EXAMPLE_PHOTO, "--source-iuv", EXAMPLE_IUV, "--target-iuv", EXAMPLE_IUV,
                        "--size", "130", "-o", tmp_path / "t.png"], capsys)
    assert code == 2 and "--size must be a multiple of 4" in err


@pytest.mark.parametrize("framed", [False, True], ids=["native", "framed"])
def test_a_source_without_a_person_is_one_error_line_and_no_output(tmp_path, capsys, framed):
    photo, iuv = _example()
    if framed:
        photo, iuv = photo[:, :250], iuv[:, :250]
    blank = np.zeros_like(iuv)
    src, _ = _write(tmp_path, "p", photo, iuv)
    write_iuv_png(tmp_path / "blank_IUV.png", blank)
    out = tmp_path / "o.png"
    code = main(["image", "--weight-free", "--source", str(src), "--source-iuv", str(tmp_path / "blank_IUV.png"),
                 "--target-iuv", str(tmp_path / "p_IUV.png"), "-o", str(out)])
    assert code == 1
    assert "no person found in the source photo's DensePose map" in one_error_line(capsys)
    assert not out.exists()


def test_a_target_without_a_person_gives_the_background_and_says_so(tmp_path, capsys):
    photo, iuv = _example()
    write_iuv_png(tmp_path / "empty_IUV.png", np.zeros((300, 200, 3), np.uint8))
    out = tmp_path / "e.png"
    code, err = _image(["--source", EXAMPLE_PHOTO, "--source-iuv", EXAMPLE_IUV, "--target-iuv",
                        tmp_path / "empty_IUV.png", "-o", out], capsys)
    assert code == 0, err
    assert "the target pose shows no person" in err
    result = read_image_rgb(out)
    assert result.shape == (300, 200, 3) and np.ptp(result.reshape(-1, 3), axis=0).max() == 0
