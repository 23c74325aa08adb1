"""Coordinate seams of a render (:mod:`retarget.ops.seams`) and the filters under them."""

from __future__ import annotations

import torch

from retarget import ops
from retarget.ops.filters import gaussian_kernel, masked_gaussian_blur, median3, separable_filter


def _grid(h: int, w: int) -> torch.Tensor:
    return ops.make_meshgrid(h, w)[None].clone()  # (1, 2, H, W): every pixel reads its own place


def test_a_continuous_map_has_no_seams_and_a_jump_marks_both_sides():
    h, w = 20, 30
    xy, mask = _grid(h, w), torch.ones(1, 1, h, w)
    assert not ops.coordinate_seams(xy, mask, (h, w), 3.0).any()
    # columns 15.. read 10 photo pixels further right: a vertical seam between columns 14 and 15
    xy[:, 0, :, 15:] += 10 * 2 / (w - 1)
    seam = ops.coordinate_seams(xy, mask, (h, w), 3.0)[0, 0]
    assert seam[:, 14:16].all() and seam.sum() == 2 * h
    grown = ops.coordinate_seams(xy, mask, (h, w), 3.0, grow=1)[0, 0]
    assert grown[:, 13:17].all() and grown.sum() == 4 * h
    # a jump below the threshold is no seam (a magnified or minified part of the photo)
    xy2 = _grid(h, w)
    xy2[:, 0, :, 15:] += 2 * 2 / (w - 1)
    assert not ops.coordinate_seams(xy2, mask, (h, w), 3.0).any()


def test_jumps_are_measured_in_the_photo_pixels_of_each_axis():
    """A photo twice as tall as wide: the same normalised step is twice as many pixels in y as in x."""
    xy, mask = torch.zeros(1, 2, 10, 10), torch.ones(1, 1, 10, 10)
    xy[:, 1, 5:] = 0.1  # a step of 0.1 · (H − 1) / 2 photo pixels in y
    assert ops.coordinate_seams(xy, mask, (81, 41), 3.0).any()  # 4 px
    assert not ops.coordinate_seams(xy, mask, (41, 81), 3.0).any()  # 2 px


def test_the_background_next_to_the_person_is_no_seam():
    h, w = 12, 12
    xy, mask = _grid(h, w), torch.zeros(1, 1, h, w)
    mask[..., 3:9, 3:9] = 1
    xy = xy * mask  # background pixels read (0, 0): far from the person's coordinates
    assert not ops.coordinate_seams(xy, mask, (h, w), 3.0).any()


def test_smooth_seams_changes_only_seam_pixels_and_keeps_out_what_is_not_the_person():
    h, w = 16, 24
    xy, mask = _grid(h, w), torch.zeros(1, 1, h, w)
    mask[..., 2:14, 2:22] = 1
    xy[:, 0, :, 12:] += 8 * 2 / (w - 1)
    image = torch.zeros(1, 3, h, w)
    image[:, 0, :, :12] = 1.0  # red | blue, with a hard edge at the seam
    image[:, 2, :, 12:] = 1.0
    image = image * mask + torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1) * (1 - mask)  # green background
    out = ops.smooth_seams(image, xy, mask, (h, w), jump_px=3.0, sigma=1.0, grow=1)
    seam = ops.coordinate_seams(xy, mask, (h, w), 3.0, grow=1)
    assert seam.sum() == 4 * 12
    torch.testing.assert_close(out * ~seam, image * ~seam, rtol=0, atol=0)  # the rest untouched
    inside = out[0][:, seam[0, 0]]
    assert inside[1].abs().max() < 1e-6  # no green bled in from the background
    step = (out[0, :, 2:14, 12] - out[0, :, 2:14, 11]).abs().sum(0)
    assert (step < 1.0).all()  # the hard red→blue edge (step 2) is softened
    # keep_out pixels are neither smoothed nor averaged in
    keep = torch.zeros(1, 1, h, w, dtype=torch.bool)
    keep[..., 2:14, 12] = True
    image_k = image.clone()
    image_k[:, :, 2:14, 12] = torch.tensor([1.0, 1.0, 1.0]).view(3, 1)  # a white wall column
    out_k = ops.smooth_seams(image_k, xy, mask, (h, w), jump_px=3.0, sigma=1.0, grow=1, keep_out=keep)
    torch.testing.assert_close(out_k[..., 2:14, 12], image_k[..., 2:14, 12], rtol=0, atol=0)
    assert torch.cat([out_k[0, 1, 2:14, 9:12], out_k[0, 1, 2:14, 13:16]]).max() < 1e-6  # no white bled out
    assert ops.smooth_seams(image, xy, mask, (h, w), jump_px=3.0, sigma=0.0) is image


def test_filters():
    k = gaussian_kernel(1.0)
    assert len(k) == 5 and abs(float(k.sum()) - 1) < 1e-6 and k[2] == k.max()
    x = torch.zeros(1, 1, 7, 7)
    x[..., 3, 3] = 1
    torch.testing.assert_close(separable_filter(x, torch.ones(3)).sum(), torch.tensor(9.0))
    # a constant blurred under any mask stays that constant where the mask reaches
    weight = (torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    out = masked_gaussian_blur(torch.full((1, 2, 9, 9), 0.3), weight, 1.5)
    torch.testing.assert_close(out, torch.full_like(out, 0.3))


def test_strength_moves_a_seam_pixel_part_of_the_way():
    h, w = 8, 12
    xy, mask = _grid(h, w), torch.ones(1, 1, h, w)
    xy[:, 0, :, 6:] += 8 * 2 / (w - 1)
    image = torch.zeros(1, 3, h, w)
    image[:, :, :, 6:] = 1.0
    full = ops.smooth_seams(image, xy, mask, (h, w), jump_px=3.0, sigma=1.0)
    strength = torch.zeros(1, 1, h, w)
    assert torch.equal(ops.smooth_seams(image, xy, mask, (h, w), jump_px=3.0, sigma=1.0, strength=strength), image)
    half = ops.smooth_seams(image, xy, mask, (h, w), jump_px=3.0, sigma=1.0, strength=strength + 0.5)
    torch.testing.assert_close(half, (image + full) / 2)
    assert not torch.equal(full, image)


def test_median3_is_the_3x3_median_and_keeps_affine_fields_and_steps():
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 5, (2, 3, 9, 11), generator=gen).float()  # many ties
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    shifted = torch.stack([padded[..., i:i + 9, j:j + 11] for i in range(3) for j in range(3)], dim=2)
    torch.testing.assert_close(median3(x), shifted.median(dim=2).values, rtol=0, atol=0)
    # an affine coordinate field and a straight step (a part border) are left as they are
    grid = _grid(12, 16)
    torch.testing.assert_close(median3(grid)[..., 1:-1, 1:-1], grid[..., 1:-1, 1:-1], rtol=0, atol=1e-6)
    grid[:, 0, :, 8:] += 1.0
    torch.testing.assert_close(median3(grid)[..., 1:-1, 1:-1], grid[..., 1:-1, 1:-1], rtol=0, atol=1e-6)
    # one pixel off its neighbours' trend is put back on it
    grid[0, 0, 5, 4] += 0.5
    assert abs(float(median3(grid)[0, 0, 5, 4] - (grid[0, 0, 5, 3] + grid[0, 0, 5, 5]) / 2)) < 1e-6
