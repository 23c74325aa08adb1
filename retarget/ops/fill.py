"""Weight-free completion of a coordinate texture (used when no inpainter weights are installed)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def nearest_fill(texture: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """Give every uncovered texel the value of the nearest covered texel (exact Euclidean distance).

    Nearest neighbours and tie-breaking are those of
    ``scipy.ndimage.distance_transform_edt(~covered, return_indices=True)``.

    Args:
        texture: ``(N, C, H, W)`` partial texture, e.g. a coordinate texture with channels (x, y) in
            ``[-1, 1]``.
        coverage: ``(N, 1, H, W)`` coverage mask; a texel is covered where ``coverage > 0.5``.

    Returns:
        ``(N, C, H, W)`` completed texture on ``texture``'s device and dtype. Covered texels keep their
        value; a batch item without any covered texel is returned unchanged.
    """
    if texture.dim() != 4 or coverage.dim() != 4 or coverage.shape[1] != 1:
        raise ValueError(f"expected texture (N,C,H,W) and coverage (N,1,H,W), got "
                         f"{tuple(texture.shape)}, {tuple(coverage.shape)}")
    values = texture.detach().cpu().numpy()
    covered = coverage.detach().cpu().numpy()[:, 0] > 0.5
    out = values.copy()
    for i in range(values.shape[0]):  # one distance transform per texture (vectorised inside scipy)
        if not covered[i].any() or covered[i].all():
            continue
        rows, cols = ndimage.distance_transform_edt(~covered[i], return_distances=False, return_indices=True)
        out[i] = values[i][:, rows, cols]
    return torch.from_numpy(np.ascontiguousarray(out)).to(device=texture.device, dtype=texture.dtype)
