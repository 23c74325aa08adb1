"""The weight-free ``body`` renderer reads the photo itself where the photo saw the body (issue 31)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from retarget import ops
from retarget.pipeline import prepare_source, render_targets
from retarget.pipeline.texture import GARMENT_REGIONS, export_texture, region_mask, with_texture
from retarget.uvmap import iuv_to_uv
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO

SIZE = 128


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def example():
    """The example photo and its own UV at SIZE², prepared weight-free with the default fill."""
    photo = cv2.resize(cv2.imread(str(EXAMPLE_PHOTO)), (SIZE, SIZE), interpolation=cv2.INTER_AREA)[..., ::-1]
    iuv = cv2.resize(cv2.imread(str(EXAMPLE_IUV)), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    image = torch.from_numpy(photo.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    uv = torch.from_numpy(iuv_to_uv(iuv)).permute(2, 0, 1)[None]
    state = prepare_source(image, uv, None)
    plain = render_targets(state, uv)
    return {"image": image, "uv": uv, "iuv": iuv, "state": state, "plain": plain}


def _on_person(result, image):
    """The output pasted on ``image`` (the frame's own background, as `video --background scene` pastes it) with
    its ``paste_alpha``, and ``image``, over the target's person mask."""
    mask = result.target_mask[0, 0].numpy() > 0.5
    alpha = result.paste_alpha[0].numpy()
    assert (alpha[0] < 0.5)[mask].mean() < 0.05  # only the wall at the silhouette is left to the background
    pasted = result.output[0].numpy() * alpha + image[0].numpy() * (1 - alpha)
    return pasted.transpose(1, 2, 0)[mask], image[0].permute(1, 2, 0).numpy()[mask]


def test_identity_render_reproduces_the_photo(example):
    """Rendering the photo onto its own pose gives the photo back; the colour texture alone did not."""
    state, plain = example["state"], example["plain"]
    assert state.reads_photo and state.seen.shape[-1] == 4 * SIZE
    out, ref = _on_person(plain, example["image"])
    assert _psnr(out, ref) >= 34.5  # 34.96 dB; 33.59 without despeckling the coordinates read from the photo
    # the renderer before issue 31: the 256² (here SIZE²) colour texture read at the target UV
    uv, mask = ops.split_uv_mask(example["uv"])
    old = ops.render_target(state.pred_textures, uv, mask)[0].permute(1, 2, 0).numpy()[mask[0, 0].numpy() > 0.5]
    assert _psnr(old, ref) < 24.0
    # where the photo saw the texel the output pixel comes from the photo (target_xy = that pixel's own place)
    xy = plain.target_xy[0].numpy()
    grid = ops.make_meshgrid(SIZE, SIZE).numpy()
    m = mask[0, 0].numpy() > 0.5
    assert np.median(np.abs(xy - grid).max(axis=0)[m]) * (SIZE - 1) / 2 < 0.25


def _render_photo_at(uv: torch.Tensor, despeckle: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A 24² random pattern whose pixel (r, c) has UV ``(-0.8 + 1.6 c / 23, -0.8 + 1.6 r / 23)``, rendered
    weight-free at the target UV ``uv`` (every texel seen); and the photo."""
    side = 24
    photo = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(3))
    grid = ops.make_meshgrid(side, side)[None]
    own_uv, mask = grid * 0.8, torch.ones(1, 1, side, side)
    xy, _, _ = ops.nearest_splat(grid, own_uv, mask, (4 * side, 4 * side))
    seen = torch.cat([xy, torch.ones_like(xy[:, :1])], dim=1)
    texture = torch.zeros(1, 5, 2 * side, 2 * side)
    image, _, _ = ops.render_from_photo(photo, seen, texture, uv, fold=2.0 / (side - 1), despeckle=despeckle)
    return image, photo


def test_despeckle_reads_a_jittered_pixel_where_its_neighbours_say():
    """DensePose's UV of one pixel off by two pixels' worth against its neighbours: without ``despeckle`` that
    pixel shows the photo two pixels away; with it, the photo's own pixel; a part border (every pixel of a
    half reading 5 pixels further) is kept."""
    side, step = 24, 1.6 / 23
    uv = ops.make_meshgrid(side, side)[None] * 0.8
    clean, photo = _render_photo_at(uv, despeckle=False)
    torch.testing.assert_close(clean, photo, rtol=0, atol=1e-4)  # the identity
    jittered = uv.clone()
    jittered[0, 0, 10, 10] += 2 * step
    raw, _ = _render_photo_at(jittered, despeckle=False)
    assert (raw[0, :, 10, 10] - photo[0, :, 10, 10]).abs().max() > 0.05
    torch.testing.assert_close(raw[0, :, 10, 10], photo[0, :, 10, 12], rtol=0, atol=1e-4)
    fixed, _ = _render_photo_at(jittered, despeckle=True)
    torch.testing.assert_close(fixed, photo, rtol=0, atol=1e-4)
    border = uv.clone()
    border[0, 0, :, 12:] += 5 * step
    border[0, 0].clamp_(max=0.8)
    torch.testing.assert_close(_render_photo_at(border, True)[0], _render_photo_at(border, False)[0], rtol=0, atol=1e-5)


def test_nearest_fill_keeps_the_classical_renderer(example):
    state = prepare_source(example["image"], example["uv"], None, fill="nearest")
    assert not state.reads_photo and state.seen is None
    uv, mask = ops.split_uv_mask(example["uv"])
    torch.testing.assert_close(render_targets(state, example["uv"]).pred_img,
                               ops.render_target(state.pred_textures, uv, mask), rtol=0, atol=0)


def test_edited_texture_shows_and_the_rest_still_reads_the_photo(example):
    state, plain = example["state"], example["plain"]
    region = torch.from_numpy(region_mask("upper", (SIZE, SIZE)))[None, None]
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    edited = with_texture(state, torch.where(region, red, state.pred_textures))
    out = render_targets(edited, example["uv"]).output[0].permute(1, 2, 0).numpy()
    before = plain.output[0].permute(1, 2, 0).numpy()
    parts = example["iuv"][..., 0]
    inside = cv2.erode(np.isin(parts, GARMENT_REGIONS["upper"]).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert inside.sum() > 200
    assert (np.abs(out[inside] - [1.0, 0.0, 0.0]).max(axis=1) < 0.05).mean() > 0.97  # the edit shows
    head = cv2.erode(np.isin(parts, (23, 24)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert head.sum() > 50
    np.testing.assert_array_equal(out[head], before[head])  # untouched texels: still the photo itself
    # the state itself is unchanged (edits make a new state)
    assert float(state.seen[:, 2].sum()) > float(edited.seen[:, 2].sum())


def test_exported_texture_read_back_keeps_the_photo_detail(example):
    """``retarget texture`` → ``--texture`` without edits: 8-bit rounding is not an edit."""
    state = example["state"]
    rgb = export_texture(state).rgb.astype(np.float32) / 255.0
    back = with_texture(state, rgb)
    torch.testing.assert_close(back.seen, state.seen, rtol=0, atol=0)
    out, ref = _on_person(render_targets(back, example["uv"]), example["image"])
    assert _psnr(out, ref) >= 28.0


def test_a_magnified_part_is_read_between_the_photo_pixels_not_pixel_by_pixel():
    """11 × 11 photo pixels spread 3× over the head's chart; a target showing that square texel by texel
    reads the photo at the interpolated places (x0 + col / 3), not at the nearest pixel (a staircase of
    1-pixel steps), and the identity render still reads every pixel within 0.1 pixel of its own place."""
    from scipy import ndimage

    from retarget.uvmap.layout import texture_layout

    n = 128
    layout = texture_layout(n, n)
    rows, cols = np.nonzero(ndimage.binary_erosion(layout.part == 23, iterations=16))
    r0, c0 = rows[len(rows) // 2] - 15, cols[len(cols) // 2] - 15
    y0 = x0 = 40
    yy, xx = np.mgrid[0:11, 0:11]
    uv = torch.full((1, 2, n, n), float("nan"))  # texel (r, c) is read at u = (2c + 1) / n - 1
    uv[0, 0, y0:y0 + 11, x0:x0 + 11] = torch.from_numpy((2 * (c0 + 3 * xx) + 1) / n - 1.0).float()
    uv[0, 1, y0:y0 + 11, x0:x0 + 11] = torch.from_numpy((2 * (r0 + 3 * yy) + 1) / n - 1.0).float()
    image = torch.rand(1, 3, n, n, generator=torch.Generator().manual_seed(0))
    state = prepare_source(image, uv, None)
    target = torch.full((1, 2, n, n), float("nan"))
    tr, tc = np.mgrid[0:31, 0:31]
    target[0, 0, 10:41, 10:41] = torch.from_numpy((2 * (c0 + tc) + 1) / n - 1.0).float()
    target[0, 1, 10:41, 10:41] = torch.from_numpy((2 * (r0 + tr) + 1) / n - 1.0).float()
    xy = render_targets(state, target).target_xy[0].numpy() * (n - 1) / 2 + (n - 1) / 2
    inner = (slice(12, 39), slice(12, 39))
    np.testing.assert_allclose(xy[0][inner], x0 + tc[2:29, 2:29] / 3, atol=0.02)
    np.testing.assert_allclose(xy[1][inner], y0 + tr[2:29, 2:29] / 3, atol=0.02)
    own = render_targets(state, uv).target_xy[0].numpy() * (n - 1) / 2 + (n - 1) / 2
    np.testing.assert_allclose(own[0][y0:y0 + 11, x0:x0 + 11], x0 + xx, atol=0.1)
    np.testing.assert_allclose(own[1][y0:y0 + 11, x0:x0 + 11], y0 + yy, atol=0.1)


def test_the_render_is_softened_at_coordinate_seams_only(example, monkeypatch):
    """Where neighbouring output pixels read far-apart places of the photo (here: a band of rows reading 10
    rows lower), the weight-free render is smoothed (``SEAMS`` of :mod:`retarget.pipeline.pair`); every other
    pixel is exactly the unsmoothed render."""
    import dataclasses

    from retarget.pipeline import pair

    uv = example["uv"].clone()
    uv[..., 50:70, :] = example["uv"][..., 60:80, :]
    smoothed = render_targets(example["state"], uv)
    monkeypatch.setattr(pair, "SEAMS", dataclasses.replace(pair.SEAMS, sigma=0.0))
    raw = render_targets(example["state"], uv)
    seam = ops.coordinate_seams(raw.target_xy, raw.target_mask, (SIZE, SIZE), pair.SEAMS.jump_px,
                                grow=pair.SEAMS.grow)
    rows = seam[0, 0].any(dim=1).nonzero()[:, 0].tolist()
    assert {48, 49, 50, 51, 68, 69, 70, 71} <= set(rows)  # both borders of the band are seams
    torch.testing.assert_close(smoothed.output * ~seam, raw.output * ~seam, rtol=0, atol=0)
    # across the band's borders the step between neighbouring rows is smaller
    steps = [(r.output[0, :, 50] - r.output[0, :, 49]).abs().sum(0)[seam[0, 0, 49] & seam[0, 0, 50]].mean()
             for r in (smoothed, raw)]
    assert steps[0] < 0.7 * steps[1], steps
    # the identity render has few seams: its output (the fixture's, smoothed) is nearly all the unsmoothed one
    changed = (example["plain"].output != render_targets(example["state"], example["uv"]).output).any(dim=1)
    person = example["plain"].target_mask[:, 0] > 0.5
    assert float(changed[person].float().mean()) < 0.15
