"""Texture-space warps: splatting image values into a texture and sampling textures back.

See :mod:`retarget.ops.coords` for the shared conventions (x/u first, ``[-1, 1]`` ranges,
``align_corners=False``, background UV = ``-10``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from retarget.ops.coords import BACKGROUND_UV

#: Denominator threshold of the inverse sampler (reference value).
SPLAT_EPS = 1e-10

#: Sampling coordinates are clamped to ``[-GRID_LIMIT, GRID_LIMIT]``. Anything beyond ``±(1 + 1/size)``
#: already samples exactly zero (zero padding), so results are unchanged, while extreme values (up to
#: float32's maximum, ±inf) can no longer overflow inside ``grid_sample`` into NaN.
GRID_LIMIT = 3.0


def safe_grid(uv: torch.Tensor) -> torch.Tensor:
    """``uv`` with NaN → background (``-10``, samples zero) and every value clamped to ``±GRID_LIMIT``."""
    return torch.nan_to_num(uv, nan=BACKGROUND_UV).clamp(-GRID_LIMIT, GRID_LIMIT)


def inverse_grid_sample(
    values: torch.Tensor,
    uv: torch.Tensor,
    texture_hw: tuple[int, int] | None = None,
    *,
    hole_fill: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinearly splat per-pixel values into texture space (the inverse of :func:`sample_texture`).

    Every image pixel ``p`` with texture coordinate ``uv[p]`` adds ``w * values[p]`` to the four texels
    around that coordinate (bilinear weights ``w``) in a numerator, and ``w`` to a denominator; the
    texture is ``numerator / denominator`` where anything landed and ``hole_fill`` elsewhere.

    Texel placement (the reference convention): ``row = (v + 1) / 2 * Ht`` and ``col = (u + 1) / 2 * Wt``
    are shifted by +1, clamped to ``[0, size + 1)``, splatted into an ``(Ht + 3) x (Wt + 3)``
    accumulator, and the window ``[1 : Ht + 1, 1 : Wt + 1]`` is kept. Background pixels (``uv = -10``)
    therefore land in the discarded border.

    Args:
        values: ``(N, C, H, W)`` float values to splat (e.g. RGB in ``[0, 1]`` or xy coordinates).
        uv: ``(N, 2, H, W)`` texture coordinates of each pixel, channels ``(u, v)`` (u → texture width,
            v → texture height), ``[-1, 1]`` inside the texture, background replaced by ``-10``
            (see :func:`retarget.ops.coords.split_uv_mask`). Must not contain NaN.
        texture_hw: ``(Ht, Wt)`` of the output texture; defaults to the image size ``(H, W)``.
        hole_fill: value of texels that received no weight.

    Returns:
        ``(texture, coverage)``: ``texture`` is ``(N, C, Ht, Wt)``; ``coverage`` is ``(N, 1, Ht, Wt)``
        float, ``1`` where the accumulated weight exceeds ``1e-10``, else ``0``.
    """
    texture, denominator = _splat(values, uv, texture_hw)
    covered = denominator > SPLAT_EPS
    texture = torch.where(covered, texture / (denominator + SPLAT_EPS), torch.full_like(texture, hole_fill))
    return texture, covered.to(values.dtype)


def _splat(
    values: torch.Tensor, uv: torch.Tensor, texture_hw: tuple[int, int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Numerator ``(N, C, Ht, Wt)`` and denominator ``(N, 1, Ht, Wt)`` of :func:`inverse_grid_sample`."""
    if values.dim() != 4 or uv.dim() != 4 or uv.shape[1] != 2:
        raise ValueError(f"expected values (N,C,H,W) and uv (N,2,H,W), got {tuple(values.shape)}, {tuple(uv.shape)}")
    if values.shape[0] != uv.shape[0] or values.shape[2:] != uv.shape[2:]:
        raise ValueError(f"values {tuple(values.shape)} and uv {tuple(uv.shape)} differ in batch or size")
    n, c, h, w = values.shape
    th, tw = texture_hw if texture_hw is not None else (h, w)
    dtype = values.dtype
    uv = torch.nan_to_num(uv, nan=BACKGROUND_UV)  # NaN would become a garbage index below

    # Same arithmetic order as the reference so results agree to float rounding.
    rows = (uv[:, 1].to(dtype) + 1) / 2.0 * th + 1
    cols = (uv[:, 0].to(dtype) + 1) / 2.0 * tw + 1
    rows = rows.clamp(0, th + 1 - 2 * SPLAT_EPS).reshape(n, -1)
    cols = cols.clamp(0, tw + 1 - 2 * SPLAT_EPS).reshape(n, -1)
    row0 = rows.long()
    col0 = cols.long()
    stride = tw + 3

    indices, weights = [], []
    for dr in (0, 1):
        r = row0 + dr
        w_r = F.relu(1 - (rows - r.to(dtype)).abs())
        for dc in (0, 1):
            k = col0 + dc
            indices.append(r * stride + k)
            weights.append(w_r * F.relu(1 - (cols - k.to(dtype)).abs()))
    index = torch.cat(indices, dim=1)  # (N, 4P)
    weight = torch.cat(weights, dim=1)  # (N, 4P)

    size = (th + 3) * stride
    denominator = values.new_zeros(n, 1, size).scatter_add_(2, index[:, None], weight[:, None])
    flat_values = values.reshape(n, c, -1).repeat(1, 1, 4) * weight[:, None]
    numerator = values.new_zeros(n, c, size).scatter_add_(2, index[:, None].expand(n, c, -1), flat_values)

    def crop(t: torch.Tensor) -> torch.Tensor:
        return t.view(n, t.shape[1], th + 3, stride)[:, :, 1 : th + 1, 1 : tw + 1]

    return crop(numerator), crop(denominator)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Sample a texture at UV coordinates (bilinear, zero padding, ``align_corners=False``).

    Args:
        texture: ``(N, C, Ht, Wt)`` texture (colour, or an xy coordinate texture).
        uv: ``(N, 2, H, W)`` coordinates, channels ``(u, v)`` in ``[-1, 1]``; background ``-10``
            samples zeros. Coordinate textures can be used as ``uv`` too (x plays u, y plays v).

    Returns:
        ``(N, C, H, W)`` sampled values.
    """
    return F.grid_sample(texture, safe_grid(uv).permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def coordinates_to_target(
    coordinate_texture: torch.Tensor, target_uv: torch.Tensor, target_mask: torch.Tensor
) -> torch.Tensor:
    """Where each target pixel comes from in the source image.

    Args:
        coordinate_texture: ``(N, 2, Ht, Wt)`` completed coordinate texture, channels (x, y) in ``[-1, 1]``
            (source-image coordinates of every texel).
        target_uv: ``(N, 2, H, W)`` target UV, ``(u, v)``, background ``-10``.
        target_mask: ``(N, 1, H, W)`` target person mask in {0, 1}.

    Returns:
        ``target_xy``: ``(N, 2, H, W)`` source-image coordinates (x, y) per target pixel, 0 on background.
    """
    return sample_texture(coordinate_texture, target_uv) * target_mask


def colour_texture_from_source(source_image: torch.Tensor, coordinate_texture: torch.Tensor) -> torch.Tensor:
    """Build a colour texture by reading the source image through a coordinate texture.

    Args:
        source_image: ``(N, C, H, W)`` source (usually RGB in ``[0, 1]``, background already zeroed).
        coordinate_texture: ``(N, 2, Ht, Wt)`` source coordinates (x, y) in ``[-1, 1]`` per texel.

    Returns:
        ``(N, C, Ht, Wt)`` colour texture.
    """
    return sample_texture(source_image, coordinate_texture)


def render_target(texture: torch.Tensor, target_uv: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """Render a texture onto a target pose: ``sample_texture(texture, target_uv) * target_mask``.

    Args:
        texture: ``(N, C, Ht, Wt)`` colour texture.
        target_uv: ``(N, 2, H, W)`` target UV (u, v), background ``-10``.
        target_mask: ``(N, 1, H, W)`` person mask in {0, 1}.

    Returns:
        ``(N, C, H, W)`` coarse warped image, 0 on background.
    """
    return sample_texture(texture, target_uv) * target_mask
