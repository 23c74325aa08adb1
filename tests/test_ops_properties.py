"""Property-based tests of the coordinate ops: random NaN patterns, extreme and out-of-range UVs.

Whatever a UV map holds (NaN background in any pattern, values far outside [-1, 1], float32 extremes,
infinities), the ops keep their shapes and never produce NaN or Inf.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from retarget import ops

F32_MAX = float(np.finfo(np.float32).max)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# UV values: mostly in range, some just outside, some extreme, some non-finite.
uv_values = st.one_of(
    st.floats(-1, 1, width=32),
    st.floats(-3, 3, width=32),
    st.sampled_from([-10.0, -1.0000001, 1.0000001, 1e6, -1e6, F32_MAX, -F32_MAX, 1e-45, -0.0]),
    st.just(float("nan")),
    st.sampled_from([float("inf"), float("-inf")]),
)


@st.composite
def uv_maps(draw, values=uv_values, max_side: int = 9):
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    data = draw(arrays(np.float32, (n, 2, h, w), elements=values))
    return torch.from_numpy(data)


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


@SETTINGS
@given(uv_maps())
def test_split_uv_mask_removes_nan_and_keeps_shape(uv):
    filled, mask = ops.split_uv_mask(uv)
    assert filled.shape == uv.shape and mask.shape == (uv.shape[0], 1, *uv.shape[2:])
    assert not torch.isnan(filled).any() and not torch.isnan(mask).any()
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(mask[:, 0] > 0, (~torch.isnan(uv)).any(dim=1))
    keep = ~torch.isnan(uv)
    assert torch.equal(filled[keep], uv[keep])  # values are not altered, only NaN replaced
    assert torch.all(filled[~keep] == ops.BACKGROUND_UV)


@SETTINGS
@given(uv_maps(), st.integers(1, 8), st.integers(1, 8))
def test_splat_of_any_uv_is_finite(uv, th, tw):
    filled, mask = ops.split_uv_mask(uv)
    values = torch.rand(uv.shape[0], 3, *uv.shape[2:]) * mask
    texture, coverage = ops.inverse_grid_sample(values, filled, (th, tw))
    assert texture.shape == (uv.shape[0], 3, th, tw) and coverage.shape == (uv.shape[0], 1, th, tw)
    assert finite(texture) and finite(coverage)
    assert texture.min() >= 0 and texture.max() <= 1 + 1e-5  # a weighted mean of values in [0, 1]


@SETTINGS
@given(uv_maps(), st.integers(1, 8), st.integers(1, 8))
def test_sampling_any_uv_is_finite_and_zero_on_background(uv, th, tw):
    filled, mask = ops.split_uv_mask(uv)
    texture = torch.rand(uv.shape[0], 3, th, tw)
    sampled = ops.sample_texture(texture, filled)
    assert sampled.shape == (uv.shape[0], 3, *uv.shape[2:]) and finite(sampled)
    rendered = ops.render_target(texture, filled, mask)
    assert finite(rendered) and torch.all(rendered[(mask == 0).expand_as(rendered)] == 0)
    xy = ops.coordinates_to_target(texture[:, :2] * 2 - 1, filled, mask)
    assert xy.shape == (uv.shape[0], 2, *uv.shape[2:]) and finite(xy)
    colour = ops.colour_texture_from_source(torch.rand(uv.shape[0], 3, 5, 4), filled)
    assert colour.shape == (uv.shape[0], 3, *uv.shape[2:]) and finite(colour)


@SETTINGS
@given(uv_maps(), st.integers(2, 8), st.integers(2, 8))
def test_full_coordinate_chain_is_finite(source_uv, th, tw):
    """splat source xy → nearest fill → sample at a target UV: what the weight-free path does."""
    n, _, h, w = source_uv.shape
    filled, mask = ops.split_uv_mask(source_uv)
    grid = ops.batched_meshgrid(n, h, w, like=filled)
    xy_texture, coverage = ops.inverse_grid_sample(grid * mask, filled, (th, tw))
    completed = ops.nearest_fill(xy_texture, coverage)
    assert completed.shape == xy_texture.shape and finite(completed)
    assert completed.min() >= -1 - 1e-5 and completed.max() <= 1 + 1e-5
    target_xy = ops.coordinates_to_target(completed, filled, mask)
    assert target_xy.shape == (n, 2, h, w) and finite(target_xy)


@SETTINGS
@given(arrays(np.float32, st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7)),
              elements=st.floats(-1e6, 1e6, width=32)),
       st.data())
def test_nearest_fill_keeps_covered_texels_and_shape(texture, data):
    texture = torch.from_numpy(texture)
    n, _, h, w = texture.shape
    covered = data.draw(arrays(np.bool_, (n, 1, h, w)))
    coverage = torch.from_numpy(covered.astype(np.float32))
    out = ops.nearest_fill(texture, coverage)
    assert out.shape == texture.shape and finite(out)
    keep = torch.from_numpy(covered).expand_as(texture)
    assert torch.equal(out[keep], texture[keep])
    for i in range(n):  # every filled value is one of the covered values of its channel
        if covered[i].any():
            for c in range(texture.shape[1]):
                assert set(out[i, c].flatten().tolist()) <= set(texture[i, c][torch.from_numpy(covered[i, 0])].tolist())


@SETTINGS
@given(st.integers(1, 64), st.integers(1, 64))
def test_meshgrid_shape_range_and_monotonic(h, w):
    grid = ops.make_meshgrid(h, w)
    assert grid.shape == (2, h, w) and finite(grid)
    assert grid.min() >= -1 and grid.max() <= 1
    assert torch.all(grid[0, :, 1:] > grid[0, :, :-1]) and torch.all(grid[1, 1:, :] > grid[1, :-1, :])
    assert torch.all(grid[0] == grid[0, :1]) and torch.all(grid[1] == grid[1, :, :1])
