"""Background that DensePose took in: person pixels at the silhouette that show what lies beyond it.

DensePose's masks reach a pixel or two past the person, more where the person is small or blurred (a face of
30 pixels across, hair, a boot against a light floor). Those pixels carry body-part UVs but the colour of the
wall or the floor. At the target's silhouette they stand for background — the target's, which its own
DensePose mask also reaches into — but a texel seen only through such pixels ends up wherever the target pose
puts that texel: the far half of a face seen in three-quarter view is seen only as a sliver
at the silhouette, and a frontal target puts that sliver down the middle of the face — a stripe of wall
colour. :func:`background_leaks` finds such pixels by colour. The weight-free renderer reads their texels
from the photo only at target pixels near the target's silhouette (:func:`near_silhouette`) and pastes those
pixels as the target's background (``retarget.pipeline.pair.TargetBatch.paste_alpha``); everywhere else it
reads the colour texture, in which those texels — and every texel whose coordinate points at a flagged pixel
of its own part — are refilled from the part's other texels (``retarget.pipeline.pair.refill_leaks``).

Conventions of :mod:`retarget.ops.coords`; images ``(1, 3, H, W)`` RGB in [0, 1]; masks ``(N, 1, H, W)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from retarget.ops.filters import dilate

#: A person pixel may be background DensePose took in when it lies within this many pixels of the
#: background, at the pipeline's 256-pixel crop (scaled with the image size).
LEAK_DEPTH = 2.0
#: ... and only where the background around it and its part further inside differ by at least this much
#: (mean colours, Euclidean RGB in [0, 1]): where they look alike, a pixel between them cannot be told apart,
#: and reading it costs nothing.
LEAK_CONTRAST = 0.15


def _depth_pixels(height: int, width: int, depth: float) -> float:
    return depth * max(height, width) / 256.0


def background_leaks(image: torch.Tensor, mask: torch.Tensor, part: np.ndarray, depth: float = LEAK_DEPTH,
                     contrast: float = LEAK_CONTRAST) -> torch.Tensor:
    """Person pixels near the silhouette whose colour is the background's rather than their part's.

    A person pixel is flagged when (1) it lies within ``depth`` pixels (scaled: ``depth · max(H, W) / 256``,
    Euclidean) of a background pixel; (2) its colour is closer to the mean colour of the background pixels
    around it than to the mean colour of its own part's pixels around it that lie deeper than ``depth``
    (both means over a square window of side ``2·ceil(depth) + 3``); (3) those two means differ by at least
    ``contrast``. Pixels with no background or fewer than 3 deeper pixels of their part in the window are
    never flagged.

    Args:
        image: ``(1, 3, H, W)`` RGB in [0, 1]; mask: ``(1, 1, H, W)`` person mask (``> 0.5``);
        part: ``(H, W)`` int DensePose part of every pixel (0 on the background), e.g.
            :func:`retarget.pipeline.pair.pixel_parts`.

    Returns:
        ``(1, 1, H, W)`` bool.
    """
    import cv2
    from scipy import ndimage

    person = mask[0, 0].detach().cpu().numpy() > 0.5
    h, w = person.shape
    reach = _depth_pixels(h, w, depth)
    flagged = np.zeros_like(person)
    if not person.any() or person.all():
        return torch.from_numpy(flagged)[None, None].to(mask.device)
    inside = ndimage.distance_transform_edt(person)  # to the nearest background pixel
    rim = person & (inside <= reach)
    core = person & (inside > reach)
    rgb = image[0].detach().cpu().float().permute(1, 2, 0).numpy()
    side = 2 * int(np.ceil(reach)) + 3

    def window_mean(select: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weight = select.astype(np.float32)
        count = cv2.boxFilter(weight, -1, (side, side), normalize=False, borderType=cv2.BORDER_CONSTANT)
        total = cv2.boxFilter(rgb * weight[..., None], -1, (side, side), normalize=False,
                              borderType=cv2.BORDER_CONSTANT)
        return total / np.maximum(count, 1e-6)[..., None], count

    background, n_background = window_mean(~person)
    ys, xs = np.nonzero(rim)  # only rim pixels are tested
    parts_at, colour_at = part[ys, xs], rgb[ys, xs]
    background_at, n_background_at = background[ys, xs], n_background[ys, xs]
    to_background = np.linalg.norm(colour_at - background_at, axis=1)
    result = np.zeros(len(ys), bool)
    for p in np.unique(parts_at):
        if p == 0:
            continue
        sel = parts_at == p
        own, n_own = window_mean(core & (part == p))
        own_at, n_own_at = own[ys[sel], xs[sel]], n_own[ys[sel], xs[sel]]
        apart = np.linalg.norm(background_at[sel] - own_at, axis=1) >= contrast
        closer = to_background[sel] < np.linalg.norm(colour_at[sel] - own_at, axis=1)
        result[sel] = (n_background_at[sel] > 0) & (n_own_at >= 3) & apart & closer
    flagged[ys, xs] = result
    return torch.from_numpy(flagged)[None, None].to(mask.device)


def near_silhouette(mask: torch.Tensor, depth: float = LEAK_DEPTH) -> torch.Tensor:
    """Target pixels within ``depth`` pixels (scaled as in :func:`background_leaks`; square neighbourhood) of
    the background (the image border does not count as background).

    Args:
        mask: ``(N, 1, H, W)`` target person mask (``> 0.5``), e.g. :func:`retarget.ops.split_uv_mask`'s.

    Returns:
        ``(N, 1, H, W)`` bool, False on the background.
    """
    person = mask > 0.5
    r = max(1, int(np.ceil(_depth_pixels(*mask.shape[-2:], depth))))
    return person & dilate(~person, r)  # dilate pads with False: the image border is not background


def read_flags_at(flags: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``flags`` (``(1, 1, Hs, Ws)`` bool texture) at the texel each point of a ``grid_sample`` grid
    ``(N, H, W, 2)`` falls in (the nearest texel centre, ``align_corners=False``; one nearest ``grid_sample``);
    ``(N, 1, H, W)`` bool, False outside [-1, 1] (the background's UV)."""
    values = flags.to(grid.dtype).expand(grid.shape[0], -1, -1, -1)
    return F.grid_sample(values, grid, mode="nearest", padding_mode="zeros", align_corners=False) > 0.5


__all__ = ["LEAK_CONTRAST", "LEAK_DEPTH", "background_leaks", "near_silhouette", "read_flags_at"]
