"""Coordinate ops on tiny tensors: conventions, reference equivalence, non-square sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retarget import ops


def reference_meshgrid(h: int, w: int) -> torch.Tensor:
    """The reference implementation's meshgrid (only meaningful for h == w)."""
    x, y = torch.arange(0, w), torch.arange(0, h)
    xx, yy = torch.meshgrid([x, y], indexing="ij")
    grid = torch.stack([yy, xx], dim=0).float()
    grid[0] = (2 * grid[0] / (h - 1)) - 1
    grid[1] = (2 * grid[1] / (w - 1)) - 1
    return grid


def naive_splat(values: np.ndarray, uv: np.ndarray, th: int, tw: int):
    """Pixel-by-pixel bilinear splat following the reference's description.

    Texel positions are computed in float32 like the reference (it matters at the clamped border);
    accumulation is float64.
    """
    n, c, h, w = values.shape
    f32 = np.float32
    rows = np.clip((uv[:, 1].astype(f32) + f32(1)) / f32(2) * f32(th) + f32(1), 0, f32(th + 1 - 2e-10))
    cols = np.clip((uv[:, 0].astype(f32) + f32(1)) / f32(2) * f32(tw) + f32(1), 0, f32(tw + 1 - 2e-10))
    num = np.zeros((n, c, th + 3, tw + 3))
    den = np.zeros((n, 1, th + 3, tw + 3))
    for b in range(n):
        for i in range(h):
            for j in range(w):
                r, k = float(rows[b, i, j]), float(cols[b, i, j])
                r0, k0 = int(r), int(k)
                for dr in (0, 1):
                    for dc in (0, 1):
                        wt = max(0, 1 - abs(r - (r0 + dr))) * max(0, 1 - abs(k - (k0 + dc)))
                        num[b, :, r0 + dr, k0 + dc] += wt * values[b, :, i, j]
                        den[b, 0, r0 + dr, k0 + dc] += wt
    num, den = num[..., 1:th + 1, 1:tw + 1], den[..., 1:th + 1, 1:tw + 1]
    tex = np.where(den > 1e-10, num / (den + 1e-10), 0.0)
    return tex, (den > 1e-10).astype(np.float64)


@pytest.mark.parametrize("size", [2, 5, 256])
def test_meshgrid_matches_reference_when_square(size):
    assert torch.equal(ops.make_meshgrid(size, size), reference_meshgrid(size, size))


def test_meshgrid_non_square_is_x_then_y():
    grid = ops.make_meshgrid(3, 5)
    assert grid.shape == (2, 3, 5)
    assert torch.allclose(grid[0, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    assert torch.allclose(grid[1, :, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.equal(grid[0, 0], grid[0, 2]) and torch.equal(grid[1, :, 0], grid[1, :, 4])
    assert ops.make_meshgrid(1, 4).shape == (2, 1, 4)


def test_split_uv_mask_replaces_nan_and_masks_any_valid_channel():
    uv = torch.tensor([[[[0.5, float("nan")], [float("nan"), 0.1]],
                        [[0.2, float("nan")], [0.3, float("nan")]]]])
    filled, mask = ops.split_uv_mask(uv)
    assert mask.shape == (1, 1, 2, 2)
    assert mask.flatten().tolist() == [1.0, 0.0, 1.0, 1.0]
    assert not torch.isnan(filled).any()
    assert filled[0, 0, 0, 1] == ops.BACKGROUND_UV and filled[0, 1, 1, 0] == 0.3


@pytest.mark.parametrize("image_hw,texture_hw", [((6, 6), None), ((4, 7), None), ((5, 3), (8, 6))])
def test_inverse_grid_sample_matches_pixelwise_splat(image_hw, texture_hw):
    gen = torch.Generator().manual_seed(0)
    h, w = image_hw
    values = torch.rand(2, 3, h, w, generator=gen)
    uv = torch.rand(2, 2, h, w, generator=gen) * 2.2 - 1.1  # some points outside the texture
    uv[0, :, 0, 0] = ops.BACKGROUND_UV
    th, tw = texture_hw or image_hw
    texture, coverage = ops.inverse_grid_sample(values, uv, texture_hw)
    expected_tex, expected_cov = naive_splat(values.double().numpy(), uv.numpy(), th, tw)
    assert texture.shape == (2, 3, th, tw) and coverage.shape == (2, 1, th, tw)
    np.testing.assert_allclose(texture.numpy(), expected_tex, atol=1e-5)
    np.testing.assert_array_equal(coverage.numpy(), expected_cov)
    assert 0 < coverage.mean() < 1  # the test really has both holes and covered texels


def test_splat_then_sample_recovers_values_on_texel_centres():
    # A pixel whose uv lands exactly on a texel centre puts its whole value there, and grid_sample
    # at the same uv reads it back.
    th = tw = 8
    rows, cols = torch.tensor([1, 4, 6]), torch.tensor([2, 5, 7])
    u = (2 * cols.float() + 1) / tw - 1
    v = (2 * rows.float() + 1) / th - 1
    # splat puts value at accumulator index (v+1)/2*th + 1 → texel (v+1)/2*th, i.e. the centre uses +0.5
    uv_splat = torch.stack([2 * cols.float() / tw - 1, 2 * rows.float() / th - 1])[None, :, None, :]
    values = torch.tensor([0.2, 0.5, 0.9])[None, None, None, :]
    texture, coverage = ops.inverse_grid_sample(values, uv_splat, (th, tw))
    assert coverage.sum() == 3
    assert torch.allclose(texture[0, 0, rows, cols], values.flatten())
    sampled = ops.sample_texture(texture, torch.stack([u, v])[None, :, None, :])
    assert torch.allclose(sampled.flatten(), values.flatten(), atol=1e-6)


def test_sample_texture_with_identity_grid_is_identity_and_background_is_zero():
    tex = torch.rand(1, 3, 4, 6)
    # align_corners=False: texel centres are at (2*i + 1)/size - 1
    xs = (2 * torch.arange(6) + 1) / 6 - 1
    ys = (2 * torch.arange(4) + 1) / 4 - 1
    uv = torch.stack([xs.expand(4, 6), ys[:, None].expand(4, 6)])[None]
    assert torch.allclose(ops.sample_texture(tex, uv), tex, atol=1e-6)
    uv_bg = torch.full((1, 2, 2, 2), ops.BACKGROUND_UV)
    assert torch.count_nonzero(ops.sample_texture(tex, uv_bg)) == 0


def test_nearest_fill_takes_nearest_covered_texel():
    tex = torch.zeros(1, 2, 5, 5)
    cov = torch.zeros(1, 1, 5, 5)
    tex[0, :, 0, 0] = torch.tensor([1.0, -1.0])
    tex[0, :, 4, 4] = torch.tensor([0.5, 0.25])
    cov[0, 0, 0, 0] = cov[0, 0, 4, 4] = 1
    out = ops.nearest_fill(tex, cov)
    assert torch.equal(out[0, :, 1, 0], tex[0, :, 0, 0])
    assert torch.equal(out[0, :, 3, 4], tex[0, :, 4, 4])
    assert torch.equal(out[0, :, 4, 3], tex[0, :, 4, 4])
    assert torch.equal(out[0, :, 0, 1], tex[0, :, 0, 0])
    # nothing covered: unchanged
    assert torch.equal(ops.nearest_fill(tex, torch.zeros_like(cov)), tex)


def test_forward_warps_zero_off_person_and_batch():
    coord = torch.rand(2, 2, 8, 8) * 2 - 1
    uv = torch.rand(2, 2, 4, 4) * 2 - 1
    mask = torch.ones(2, 1, 4, 4)
    mask[:, :, 0] = 0
    target_xy = ops.coordinates_to_target(coord, uv, mask)
    assert target_xy.shape == (2, 2, 4, 4)
    assert torch.count_nonzero(target_xy[:, :, 0]) == 0
    colour = ops.colour_texture_from_source(torch.rand(2, 3, 6, 10), coord)
    assert colour.shape == (2, 3, 8, 8)
    assert ops.render_target(colour, uv, mask).shape == (2, 3, 4, 4)


def test_nearest_splat_takes_one_pixel_never_an_average():
    # 1x3 image: two pixels land in texel (0, 0) of a 2x2 texture (centre u = v = -0.5), one closer to it
    values = torch.tensor([[[[10.0, 20.0, 30.0]]]])
    uv = torch.tensor([[[[-0.45, -0.9, 0.5]], [[-0.5, -0.9, 0.5]]]])
    mask = torch.tensor([[[[1.0, 1.0, 0.0]]]])  # the third pixel is background: never splatted
    texture, distance, owner = ops.nearest_splat(values, uv, mask, (2, 2))
    assert texture[0, 0, 0, 0] == 10.0  # the pixel nearest the centre, not the mean 15
    assert distance[0, 0, 0, 0] == 0.0 and owner[0, 0, 0, 0] == 0
    # every other texel takes the owner of the nearest owned texel, at its distance in texels
    assert torch.equal(texture[0, 0], torch.full((2, 2), 10.0))
    assert torch.allclose(distance[0, 0], torch.tensor([[0.0, 1.0], [1.0, 2.0 ** 0.5]]))
    empty = ops.nearest_splat(values, uv, torch.zeros_like(mask), (2, 2))
    assert torch.isinf(empty[1]).all() and (empty[2] == -1).all()


def test_nearest_splat_keeps_each_pixel_apart_on_a_fine_texture():
    h = w = 8
    xy = ops.batched_meshgrid(1, h, w, like=torch.zeros(1))
    uv = (xy * 14 - 1) / 32  # pixel j lands on the centre of texel 2j + 8 of a 32x32 texture: 2 texels per pixel
    texture, distance, _ = ops.nearest_splat(xy, uv, torch.ones(1, 1, h, w), (32, 32))
    back = ops.read_seen(texture, uv, fold=2.0 / (w - 1))
    assert torch.allclose(back, xy, atol=1e-5)  # every pixel's own coordinate comes back exactly
    assert float(distance.max()) > 1.0  # texels outside the middle half are far from any pixel


def test_read_seen_is_bilinear_except_across_a_fold():
    # a 1x4 texture: x = -1, -0.5 (smooth), then a jump to +1, +0.9 (a fold)
    seen = torch.tensor([[[[-1.0, -0.5, 1.0, 0.9]], [[0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 1.0]]]])
    v = torch.zeros(1, 1, 1, 2)
    u = torch.tensor([[[[-0.5, 0.0]]]])  # between texels 0|1 (centre at -0.5) and exactly at the 1|2 border
    uv = torch.cat([u, v], dim=1)
    out = ops.read_seen(seen, uv, fold=0.3)
    assert torch.allclose(out[0, 0, 0, 0], torch.tensor(-0.75))  # smooth: the bilinear blend
    assert out[0, 0, 0, 1] in (-0.5, 1.0)  # fold: one texel's own value, never the blend 0.25
    assert torch.allclose(out[0, 2, 0], torch.tensor([0.0, 0.5]))  # further channels: bilinear everywhere


def test_sample_image_reads_pixel_centres():
    image = torch.arange(12.0).view(1, 1, 3, 4)
    xy = ops.batched_meshgrid(1, 3, 4, like=image)
    assert torch.equal(ops.sample_image(image, xy), image)
    half = torch.tensor([[[[-1.0 + 1.0 / 3]], [[-1.0]]]])  # halfway between the first two pixels of row 0
    assert torch.allclose(ops.sample_image(image, half), torch.tensor([[[[0.5]]]]))


def _magnified_patch(k: int = 11, scale: float = 3.0, offset=(5.3, 7.2), size: int = 64):
    """A ``k × k`` photo whose pixel (row, col) lies at texel ``(offset[1] + scale·row, offset[0] + scale·col)``
    of a ``size²`` texture (splat placement: ``col = (u + 1) / 2 · W``)."""
    yy, xx = np.mgrid[0:k, 0:k]
    u = 2 * (offset[0] + scale * xx) / size - 1
    v = 2 * (offset[1] + scale * yy) / size - 1
    return torch.from_numpy(np.stack([u, v]).astype(np.float32))[None], torch.ones(1, 1, k, k)


def test_rasterize_to_texture_interpolates_exactly_and_fills_the_splat_lattice():
    """A magnified patch: every texel inside the placed pixel grid gets the exact (x, y) it shows; the splats
    of the same pixels cover a lattice of at most 4 texels per pixel (about half of them here)."""
    uv, mask = _magnified_patch()
    grid = ops.batched_meshgrid(1, 11, 11, like=mask)
    texture, covered = ops.rasterize_to_texture(grid, uv, mask, (64, 64))
    rows, cols = np.nonzero(covered[0, 0].numpy())
    assert rows.min() >= 7.2 and rows.max() <= 7.2 + 30 and cols.min() >= 5.3 and cols.max() <= 5.3 + 30
    assert len(rows) == 30 * 30  # every texel centre inside the 30 × 30 texel square
    x = texture[0, 0].numpy()[rows, cols] * 5 + 5  # back to pixel units (11 pixels: x = 2 col / 10 - 1)
    y = texture[0, 1].numpy()[rows, cols] * 5 + 5
    np.testing.assert_allclose(x, (cols - 5.3) / 3, atol=1e-4)
    np.testing.assert_allclose(y, (rows - 7.2) / 3, atol=1e-4)
    _, splat = ops.inverse_grid_sample(grid, uv, (64, 64))
    assert splat.sum() <= 4 * 11 * 11 < len(rows)
    assert not torch.any(texture[0, :, ~covered[0, 0]])  # zero elsewhere


def test_rasterize_to_texture_offset_moves_the_texel_centres_by_half_a_texel():
    uv, mask = _magnified_patch(scale=2.0, offset=(4.0, 4.0))
    grid = ops.batched_meshgrid(1, 11, 11, like=mask)
    at_splat, _ = ops.rasterize_to_texture(grid, uv, mask, (64, 64))
    at_sampling, _ = ops.rasterize_to_texture(grid, uv, mask, (64, 64), offset=0.5)
    # texel (r, c) with offset 0.5 is the place col + 0.5 of the splat placement: a quarter pixel further
    torch.testing.assert_close(at_sampling[0, 0, 8, 8] * 5 + 5, at_splat[0, 0, 8, 8] * 5 + 5 + 0.25)


def test_rasterize_to_texture_leaves_out_triangles_across_parts_and_long_edges():
    """Left half of the photo on one part, right half on another placed far away: nothing is drawn between
    them, with or without part labels (the edges across are 30 texels long); with labels and a long
    ``max_edge`` still nothing; without labels and a long ``max_edge`` the gap is bridged."""
    k = 10
    yy, xx = np.mgrid[0:k, 0:k].astype(np.float64)
    col = np.where(xx < 5, 4 + xx, 34 + xx)  # a 30-texel jump between columns 4 and 5
    uv = torch.from_numpy(np.stack([2 * col / 64 - 1, 2 * (4 + yy) / 64 - 1]).astype(np.float32))[None]
    mask = torch.ones(1, 1, k, k)
    parts = np.where(xx < 5, 1, 2)
    grid = ops.batched_meshgrid(1, k, k, like=mask)
    between = (slice(4, 13), slice(10, 38))
    for labels, edge in ((None, 8.0), (parts, 8.0), (parts, 100.0)):
        _, covered = ops.rasterize_to_texture(grid, uv, mask, (64, 64), labels, max_edge=edge)
        assert not covered[0, 0][between].any()
        assert covered[0, 0, 4:13, 4:9].all() and covered[0, 0, 4:13, 39:44].all()
    _, bridged = ops.rasterize_to_texture(grid, uv, mask, (64, 64), None, max_edge=100.0)
    assert bridged[0, 0][between].all()


def test_rasterize_to_texture_keeps_the_largest_triangle_where_two_overlap():
    """Two photo rows placed on the same texels (a fold): the less foreshortened one (larger in texture
    space) is the one drawn."""
    k = 6
    yy, xx = np.mgrid[0:k, 0:k].astype(np.float64)
    big = yy < 3  # rows 0-2: 4 texels per pixel; rows 3-5: the same place at 2 texels per pixel
    col = np.where(big, 10 + 4 * xx, 10 + 2 * xx)
    row = np.where(big, 10 + 4 * yy, 10 + 2 * (yy - 3))
    uv = torch.from_numpy(np.stack([2 * col / 64 - 1, 2 * row / 64 - 1]).astype(np.float32))[None]
    mask = torch.ones(1, 1, k, k)
    parts = np.where(big, 1, 2)  # the two layers do not join
    values = torch.from_numpy(big.astype(np.float32))[None, None]
    texture, covered = ops.rasterize_to_texture(values, uv, mask, (64, 64), parts)
    assert covered[0, 0, 11:14, 11:19].all()
    assert torch.all(texture[0, 0, 11:14, 11:19] == 1.0)


def test_rasterize_to_texture_ignores_background_and_non_finite_uv():
    uv, mask = _magnified_patch()
    mask[..., :, 5:] = 0  # right half background
    uv[0, :, 0, 0] = float("inf")
    grid = ops.batched_meshgrid(1, 11, 11, like=mask)
    texture, covered = ops.rasterize_to_texture(grid, uv, mask, (64, 64))
    cols = np.nonzero(covered[0, 0].numpy())[1]
    assert covered.any() and cols.max() <= 5.3 + 3 * 4 and torch.isfinite(texture).all()
    empty, nothing = ops.rasterize_to_texture(grid, uv, torch.zeros_like(mask), (64, 64))
    assert not nothing.any() and not empty.any()
    with pytest.raises(ValueError):
        ops.rasterize_to_texture(grid, uv[:, :1], mask, (64, 64))


def test_rasterize_to_texture_draws_a_lone_triangle_and_nothing_outside_it():
    """A 2 × 2 photo with one background pixel is one triangle; texel centres on its edges count."""
    col = np.array([[10.0, 40.0], [10.0, 40.0]])
    row = np.array([[10.0, 10.0], [40.0, 40.0]])
    uv = torch.from_numpy(np.stack([2 * col / 64 - 1, 2 * row / 64 - 1]).astype(np.float32))[None]
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]])  # bottom-left missing: the triangle (10,10) (40,10) (40,40)
    _, covered = ops.rasterize_to_texture(torch.ones(1, 1, 2, 2), uv, mask, (64, 64), max_edge=50.0)
    r, c = np.mgrid[0:64, 0:64]
    expected = (r >= 10) & (c <= 40) & (c >= r)
    np.testing.assert_array_equal(covered[0, 0].numpy(), expected)


def test_largest_per_index_keeps_the_largest_key_whatever_the_order():
    from retarget.ops.raster import largest_per_index

    index = np.array([3, 0, 3, 3, 1, 0])
    key = np.array([5, 2, 9, 1, 4, 7])
    expected = np.array([False, False, True, False, True, True])
    np.testing.assert_array_equal(largest_per_index(index, key, 5), expected)
    rev = slice(None, None, -1)
    np.testing.assert_array_equal(largest_per_index(index[rev], key[rev], 5), expected[rev])
