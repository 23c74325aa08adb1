"""Coordinate seams of a render: where neighbouring output pixels come from far-apart places of the photo.

A render reads every output pixel at a source coordinate (``target_xy``). Where the map from output to
photo is continuous, neighbouring pixels read neighbouring photo pixels and the output shows the photo's
own (already antialiased) picture. Where it jumps — a copy from the mirrored limb meets the seen body, a
hole filled from its border, a DensePose part border of the target that does not lie where the photo's
did, a one-pixel speck of another part — two photo pixels from different places are put side by side,
and the output shows a hard, jagged edge that neither photo nor real footage has, which moves from frame
to frame as the target's DensePose does.

:func:`coordinate_seams` finds those pixels; :func:`smooth_seams` softens the render there only (a small
Gaussian within the person, all or part of the way per pixel), leaving the continuous rest as sharp as the
photo. The weight-free renderer applies it through :func:`retarget.ops.render_from_photo`'s ``seams``.

Conventions (:mod:`retarget.ops.coords`): ``xy`` ``(N, 2, H, W)`` with channels (x, y) in ``[-1, 1]``, ``-1`` /
``+1`` the centres of the photo's first / last pixel (``align_corners=True``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from retarget.ops.filters import bounding_box, dilate, gaussian_kernel, masked_gaussian_blur


def coordinate_seams(xy: torch.Tensor, mask: torch.Tensor, photo_hw: tuple[int, int], jump_px: float,
                     grow: int = 0) -> torch.Tensor:
    """Output pixels next to a neighbour (4-connected, inside ``mask``) whose source coordinate lies more than
    ``jump_px`` photo pixels away from theirs, grown by ``grow`` pixels (square).

    Args:
        xy: ``(N, 2, H, W)`` source coordinates of the output pixels; mask: ``(N, 1, H, W)``, pixels that
            hold one (> 0.5); photo_hw: the photo's ``(H, W)``, for the coordinates' pixel units;
        jump_px: a jump larger than this, in photo pixels, is a seam. Neighbouring output pixels of a
            continuous map at the photo's scale read points about 1 pixel apart.

    Returns:
        ``(N, 1, H, W)`` bool, inside ``mask`` only.
    """
    inside = mask > 0.5
    scale = xy.new_tensor([(photo_hw[1] - 1) / 2.0, (photo_hw[0] - 1) / 2.0]).view(1, 2, 1, 1)
    px = xy * scale
    limit = jump_px ** 2  # squared distances: Tensor.norm over a small dimension is slow on the CPU
    across = ((px[..., :, 1:] - px[..., :, :-1]).square().sum(1, keepdim=True) > limit) & \
        inside[..., :, 1:] & inside[..., :, :-1]
    down = ((px[..., 1:, :] - px[..., :-1, :]).square().sum(1, keepdim=True) > limit) & \
        inside[..., 1:, :] & inside[..., :-1, :]
    seam = F.pad(across, (1, 0)) | F.pad(across, (0, 1)) | F.pad(down, (0, 0, 1, 0)) | F.pad(down, (0, 0, 0, 1))
    return dilate(seam, grow) & inside


def smooth_seams(image: torch.Tensor, xy: torch.Tensor, mask: torch.Tensor, photo_hw: tuple[int, int], *,
                 jump_px: float, sigma: float, grow: int = 1, keep_out: torch.Tensor | None = None,
                 strength: torch.Tensor | None = None) -> torch.Tensor:
    """``image`` with its pixels at coordinate seams (:func:`coordinate_seams`) moved towards a Gaussian blur
    (standard deviation ``sigma`` output pixels) over the person's own pixels: the background and the pixels
    of ``keep_out`` do not bleed in, and every other pixel is returned unchanged.

    Args:
        image: ``(N, C, H, W)`` render; xy, mask, photo_hw, jump_px, grow: see :func:`coordinate_seams`;
        keep_out: optional ``(N, 1, H, W)`` bool, mask pixels that are not the person's (e.g. the rim pixels
            showing the photo's background, :func:`retarget.ops.render_from_photo`'s ``wall``): neither
            smoothed nor averaged in;
        strength: optional ``(N, 1, H, W)`` in [0, 1], how far a seam pixel moves to the blur (default 1:
            replaced by it).

    Returns:
        ``(N, C, H, W)``; ``sigma <= 0`` returns ``image``.
    """
    if sigma <= 0:
        return image
    person = mask > 0.5
    if keep_out is not None:
        person = person & ~keep_out
    seam = coordinate_seams(xy, person.to(xy.dtype), photo_hw, jump_px, grow)
    # only the box around every seam (and the blur's reach) is filtered
    box = bounding_box(seam, len(gaussian_kernel(sigma)) // 2)
    if box is None:
        return image
    sub = image[(..., *box)]
    blurred = masked_gaussian_blur(sub, person[(..., *box)].to(image.dtype), sigma)
    move = seam[(..., *box)].to(image.dtype)
    if strength is not None:
        move = move * strength[(..., *box)].to(image.dtype)
    out = image.clone()
    out[(..., *box)] = torch.lerp(sub, blurred, move)
    return out
