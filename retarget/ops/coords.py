"""Coordinate conventions: meshgrids and NaN-background UV maps.

Conventions used throughout :mod:`retarget.ops`:

- Tensors are batched, channel-first: ``(N, C, H, W)``.
- A *coordinate* map has 2 channels, **x first, then y**: x indexes the width axis, y the height axis,
  both normalised to ``[-1, 1]`` so that ``-1`` is the centre of the first pixel and ``+1`` the centre of
  the last one (``2 * i / (size - 1) - 1``). This is the value convention of the reference code.
- A *UV* map has 2 channels, **u first, then v**, global SMPL texture coordinates in ``[-1, 1]``:
  ``u`` indexes the texture's width axis, ``v`` its height axis. Background pixels are ``NaN`` in files
  and ``-10`` (far outside the texture) once prepared with :func:`split_uv_mask`.
- Sampling uses :func:`torch.nn.functional.grid_sample` with ``align_corners=False`` (the reference
  calls it with the default), bilinear, zero padding.
"""

from __future__ import annotations

import torch

#: Value that replaces NaN (background) in UV maps before sampling or splatting: far outside [-1, 1].
BACKGROUND_UV = -10.0


def make_meshgrid(
    height: int,
    width: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Identity coordinate map of an image.

    Args:
        height: number of rows ``H`` (>= 1).
        width: number of columns ``W`` (>= 1).
        device: device of the result.
        dtype: floating dtype of the result.

    Returns:
        ``(2, H, W)`` tensor; channel 0 is x = ``2 * col / (W - 1) - 1``, channel 1 is
        y = ``2 * row / (H - 1) - 1``, both in ``[-1, 1]`` (a size-1 axis gives ``-1``).
        For ``H == W`` this equals the reference ``make_meshgrid`` exactly; unlike the reference it is
        also right for non-square sizes (the reference returns a ``(2, W, H)`` grid there).
    """
    if height < 1 or width < 1:
        raise ValueError(f"meshgrid size must be positive, got {height}x{width}")
    cols = torch.arange(width, device=device, dtype=dtype)
    rows = torch.arange(height, device=device, dtype=dtype)
    x = 2 * cols / max(width - 1, 1) - 1
    y = 2 * rows / max(height - 1, 1) - 1
    return torch.stack([x.expand(height, width), y[:, None].expand(height, width)], dim=0).contiguous()


def batched_meshgrid(batch: int, height: int, width: int, *, like: torch.Tensor) -> torch.Tensor:
    """:func:`make_meshgrid` repeated over a batch: ``(N, 2, H, W)`` on ``like``'s device and dtype."""
    grid = make_meshgrid(height, width, device=like.device, dtype=like.dtype)
    return grid.unsqueeze(0).expand(batch, -1, -1, -1).contiguous()


def split_uv_mask(uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Separate a NaN-background UV map into sampling-ready coordinates and a person mask.

    Args:
        uv: ``(N, 2, H, W)`` float UV map, channels ``(u, v)`` in ``[-1, 1]``, ``NaN`` = background.

    Returns:
        ``(uv_filled, mask)``: ``uv_filled`` is a copy of ``uv`` with every NaN value replaced by
        :data:`BACKGROUND_UV` (``-10``); ``mask`` is ``(N, 1, H, W)`` float, ``1`` where *any* channel is
        not NaN (the reference rule), else ``0``.
    """
    if uv.dim() != 4 or uv.shape[1] != 2:
        raise ValueError(f"uv must be (N, 2, H, W), got {tuple(uv.shape)}")
    nan = torch.isnan(uv)
    mask = (~nan).any(dim=1, keepdim=True).to(uv.dtype)
    uv_filled = torch.where(nan, torch.full_like(uv, BACKGROUND_UV), uv)
    return uv_filled, mask


def check_single_photo(values: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``values`` is ``(1, C, H, W)``, ``uv`` ``(1, 2, H, W)`` and ``mask`` ``(1, 1, H, W)``
    (the per-pixel inputs of the one-photo texture builders, e.g. :func:`retarget.ops.nearest_splat`)."""
    if values.dim() != 4 or values.shape[0] != 1 or uv.shape != (1, 2, *values.shape[2:]) \
            or mask.shape != (1, 1, *values.shape[2:]):
        raise ValueError(f"expected values (1,C,H,W), uv (1,2,H,W), mask (1,1,H,W); got {tuple(values.shape)}, "
                         f"{tuple(uv.shape)}, {tuple(mask.shape)}")
