"""Reading output pixels straight from the photo (weight-free renderer).

The weight-free output used to be read from a colour texture of the texture's size (256² at the default
crop): every texel a bilinear average of the photo around the mean coordinate of the pixels splatted
into it. That low-pass costs the detail of a fine pattern. Here the photo itself is sampled:

- :func:`nearest_splat` builds a *seen-coordinate texture* at a resolution finer than the photo's pixel
  spacing in texture space (4× the texture by default): every texel holds the (x, y) of the one photo
  pixel whose UV is nearest to it, never an average of several (pixels from both sides of a fold or a
  part border would average to a place between them);
- :func:`sample_image` reads an image at per-pixel (x, y) coordinates.

Conventions are those of :mod:`retarget.ops.coords`: (x, y) in ``[-1, 1]`` with ``-1`` / ``+1`` the centres
of the first / last pixel (:func:`~retarget.ops.coords.make_meshgrid`); a texture is sampled with
``align_corners=False``, so texel ``(r, c)`` of an ``(Ht, Wt)`` texture has its centre at
``u = (2c + 1) / Wt - 1``, ``v = (2r + 1) / Ht - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from retarget.ops.coords import BACKGROUND_UV, check_single_photo
from retarget.ops.filters import bounding_box, dilate, median3
from retarget.ops.leaks import read_flags_at
from retarget.ops.raster import largest_per_index
from retarget.ops.seams import smooth_seams
from retarget.ops.warp import safe_grid


def nearest_splat(values: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, texture_hw: tuple[int, int]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every texel takes the value of one photo pixel, the one nearest to it in texture space.

    Each person pixel's UV falls in one texel (rounded to the nearest texel centre); of the pixels in one
    texel the one closest to its centre owns it. Every other texel takes the owner of the nearest owned
    texel (exact Euclidean distance transform, scipy's tie-breaking), and its distance to it is returned
    so that callers can keep only texels close to what the photo showed.

    Args:
        values: ``(1, C, H, W)`` per-pixel values (e.g. the pixel's own (x, y) from
            :func:`~retarget.ops.coords.make_meshgrid`).
        uv: ``(1, 2, H, W)`` UV (u, v) in ``[-1, 1]``, background anything (ignored via ``mask``).
        mask: ``(1, 1, H, W)`` person mask; pixels with ``mask > 0.5`` are splatted.
        texture_hw: ``(Ht, Wt)`` of the result.

    Returns:
        ``(texture, distance, owner)``: ``(1, C, Ht, Wt)`` values; ``(1, 1, Ht, Wt)`` float distance in
        texels to the nearest owned texel (0 where owned; ``inf`` everywhere when no pixel is a person
        pixel); ``(1, 1, Ht, Wt)`` int64 flat index ``row * W + col`` of the owning pixel (``-1`` when
        none).
    """
    check_single_photo(values, uv, mask)
    th, tw = texture_hw
    c, h, w = values.shape[1:]
    person = (mask[0, 0] > 0.5).detach().cpu().numpy()
    flat = np.flatnonzero(person)
    out = np.zeros((c, th, tw), np.float32)
    if flat.size == 0:
        return (torch.from_numpy(out)[None].to(values), torch.full((1, 1, th, tw), float("inf")).to(values),
                torch.full((1, 1, th, tw), -1, dtype=torch.int64, device=values.device))
    coords = uv[0].detach().cpu().float().numpy().reshape(2, -1)[:, flat]
    col = (coords[0] + 1.0) / 2.0 * tw - 0.5
    row = (coords[1] + 1.0) / 2.0 * th - 0.5
    ci = np.clip(np.rint(col), 0, tw - 1).astype(np.int64)
    ri = np.clip(np.rint(row), 0, th - 1).astype(np.int64)
    far = (col - ci) ** 2 + (row - ri) ** 2
    order = np.argsort(-far, kind="stable")  # the closest last; of equally close pixels, the later one
    texel = (ri * tw + ci)[order]
    wins = largest_per_index(texel, np.arange(len(order)), th * tw)
    owner = np.full(th * tw, -1, np.int64)
    owner[texel[wins]] = flat[order][wins]
    owner = owner.reshape(th, tw)
    owned = owner >= 0
    distance, (rows, cols) = ndimage.distance_transform_edt(~owned, return_indices=True)
    owner = owner[rows, cols]
    picked = values[0].detach().cpu().float().numpy().reshape(c, -1)[:, owner.reshape(-1)].reshape(c, th, tw)
    return (torch.from_numpy(np.ascontiguousarray(picked))[None].to(values),
            torch.from_numpy(distance.astype(np.float32))[None, None].to(values),
            torch.from_numpy(owner)[None, None].to(values.device))


def read_seen(seen: torch.Tensor, uv: torch.Tensor, fold: float) -> torch.Tensor:
    """Sample a seen-coordinate texture at UVs: bilinear, except across folds (nearest texel there).

    Bilinear reads give sub-pixel coordinates between neighbouring photo pixels; where the texels around
    the sample point were seen at places of the photo far apart (a fold, a part border, DensePose's label
    noise), a blend would point between them, so the nearest texel's coordinate is taken where the bilinear
    and the nearest read differ by more than ``fold`` (in the coordinates' units, on either axis).

    Args:
        seen: ``(N, C, Hs, Ws)``, channels 0 and 1 the (x, y) of every texel, any further channels (e.g. a
            weight) read bilinearly everywhere (``N`` = 1 is shared by the batch).
        uv: ``(N, 2, H, W)`` UV (u, v), background ``-10`` (reads zeros).
        fold: largest bilinear-vs-nearest difference of (x, y) still read bilinearly.

    Returns:
        ``(N, C, H, W)``.
    """
    xy, rest = _read_seen(seen, safe_grid(uv).permute(0, 2, 3, 1), fold)
    return torch.cat([xy, rest], dim=1)


def _read_seen(seen: torch.Tensor, grid: torch.Tensor, fold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`read_seen` at a ``grid_sample`` grid: ``(xy, further channels)``."""
    n = grid.shape[0]
    smooth = F.grid_sample(seen.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)
    # all channels: a channel slice of a large texture would be copied to be contiguous, on every call
    nearest = F.grid_sample(seen.expand(n, -1, -1, -1), grid, mode="nearest", padding_mode="zeros",
                            align_corners=False)[:, :2]
    folded = (smooth[:, :2] - nearest).abs().amax(dim=1, keepdim=True) > fold
    return torch.where(folded, nearest, smooth[:, :2]), smooth[:, 2:]


def render_from_photo(photo: torch.Tensor, seen: torch.Tensor, texture: torch.Tensor, uv: torch.Tensor,
                      fold: float, leak: torch.Tensor | None = None, rim: torch.Tensor | None = None,
                      seams: SeamSmoothing | None = None, despeckle: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Render target poses from the photo where it saw the body, from a colour texture elsewhere.

    Per target pixel: ``(x, y, w)`` = :func:`read_seen` of ``seen`` at its UV; the colour is
    ``w · photo(x, y) + (1 − w) · colour texture(uv)`` (:func:`sample_image`, bilinear texture read), and its
    source coordinate ``(x, y)`` where ``w > 0.5``, else the coordinate texture's. With ``leak`` (texels seen
    only through background DensePose took in, :mod:`retarget.ops.leaks`), ``w`` is 0 where the pixel's
    texel is flagged, except at the target pixels of ``rim``.

    Args:
        photo: ``(1, 3, H, W)`` the photo (its background best replaced by person colours).
        seen: ``(1, 3, Hs, Ws)`` seen coordinates (x, y) and weight ``w`` in [0, 1] per texel.
        texture: ``(1, 5, Ht, Wt)`` colour texture (3 channels) and completed coordinate texture (x, y).
        uv: ``(N, 2, Ho, Wo)`` target UV (u, v), background ``-10``.
        fold: see :func:`read_seen`.
        leak: optional ``(1, 1, Hs, Ws)`` bool flag per texel of ``seen``.
        rim: ``(N, 1, Ho, Wo)`` bool, the target pixels that may read flagged texels (e.g.
            :func:`retarget.ops.leaks.near_silhouette`); required with ``leak``.
        seams: optional :class:`SeamSmoothing`: the image is softened at its coordinate seams
            (:func:`retarget.ops.smooth_seams`, ``wall`` pixels kept out), fully where the pixel reads the photo
            and ``seams.texture_strength`` of the way where it reads the colour texture (lerp by ``w``).
        despeckle: where a pixel and its 8 neighbours all read the photo (``w > 0.5``), its ``(x, y)`` becomes
            the per-channel median of theirs (:func:`~retarget.ops.filters.median3`) before the photo is
            read. A coordinate field that is affine over the 3 × 3 window is unchanged (the median of values
            symmetric around the centre) and so is a straight step (a part border, a fold); a pixel whose
            DensePose UV jitters against its neighbours' (reading a place a few pixels off: speckle on a fine
            pattern) reads where they say.

    Returns:
        ``(image, target_xy, wall)``: ``(N, 3, Ho, Wo)`` and ``(N, 2, Ho, Wo)``, both 0 on the background
        (background UVs read zeros everywhere); ``wall``: ``(N, 1, Ho, Wo)`` bool, the pixels of ``rim`` that
        read a flagged texel from the photo (``w > 0.5``: they show what lay behind the photo's person), or
        None without ``leak``.
    """
    n = uv.shape[0]
    grid = safe_grid(uv).permute(0, 2, 3, 1)
    colour_xy = F.grid_sample(texture.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
    xy, weight = _read_seen(seen, grid, fold)
    wall = None
    if leak is not None:
        if rim is None:
            raise ValueError("leak flags need the target's rim")
        flagged = read_flags_at(leak, grid)
        weight = torch.where(~rim & flagged, torch.zeros_like(weight), weight)
        wall = rim & flagged & (weight > 0.5)
    if despeckle:
        inner = ~dilate(weight <= 0.5, 1)  # all 9 pixels read the photo (background UVs read weight 0)
        box = bounding_box(inner, 1)
        if box is not None:
            sub = xy[(..., *box)]
            xy = xy.clone()
            xy[(..., *box)] = torch.where(inner[(..., *box)], median3(sub), sub)
    direct = F.grid_sample(photo.expand(n, -1, -1, -1), xy.permute(0, 2, 3, 1), mode="bilinear",
                           padding_mode="border", align_corners=True)
    image, target_xy = torch.lerp(colour_xy[:, :3], direct, weight), torch.where(weight > 0.5, xy, colour_xy[:, 3:])
    if seams is not None:
        mask = (uv != BACKGROUND_UV).any(dim=1, keepdim=True)  # the person mask of split_uv_mask
        strength = seams.texture_strength + (1 - seams.texture_strength) * weight
        image = smooth_seams(image, target_xy, mask, tuple(photo.shape[-2:]), jump_px=seams.jump_px,
                             sigma=seams.sigma, grow=seams.grow, keep_out=wall, strength=strength)
    return image, target_xy, wall


@dataclass(frozen=True)
class SeamSmoothing:
    """Parameters of the seam smoothing of :func:`render_from_photo` (see :func:`retarget.ops.smooth_seams`).

    Attributes:
        jump_px: a jump between neighbouring output pixels' source coordinates above this (photo pixels) is a seam.
        sigma: standard deviation of the blur, output pixels.
        grow: seams grown by this many pixels.
        texture_strength: how far (0..1) a seam pixel that reads the colour texture moves to the blur (one that
            reads the photo moves all the way): the colour texture is already low-passed at texel scale, and
            the pieces of a copied pattern should keep their pattern.
    """

    jump_px: float
    sigma: float
    grow: int = 1
    texture_strength: float = 0.5


def sample_image(image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Read ``image`` at per-pixel coordinates (bilinear; pixel-centre convention, edge pixels repeat).

    Args:
        image: ``(N, C, H, W)`` (or ``(1, C, H, W)``, shared by the batch).
        xy: ``(N, 2, Ho, Wo)`` coordinates (x, y) in ``[-1, 1]``, ``-1`` / ``+1`` the centres of the
            first / last pixel (the values of :func:`~retarget.ops.coords.make_meshgrid`).

    Returns:
        ``(N, C, Ho, Wo)``.
    """
    if image.shape[0] != xy.shape[0]:
        image = image.expand(xy.shape[0], -1, -1, -1)
    return F.grid_sample(image, safe_grid(xy).permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                         align_corners=True)


__all__ = ["SeamSmoothing", "nearest_splat", "read_seen", "render_from_photo", "sample_image"]
