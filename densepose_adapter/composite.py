"""Full-frame IUV composite of per-instance DensePose charts (pure numpy).

Rule (identical to the parity fixture, i.e. to what the official charts give when pasted the way
DensePose's IUV dumps are made):

- every instance's chart (``labels`` I of shape ``(h, w)``, ``uv`` of shape ``(2, h, w)``, on the
  integer box grid) is pasted with its top-left corner at ``(int(x0), int(y0))`` of its box
  (truncation; boxes are clipped to the image so this is ``floor``), cropped to the frame;
- instances are pasted in **ascending score order** (stable for ties), so where people overlap the
  **most confident instance ends on top**;
- only pixels with ``I > 0`` are written (background of one box never erases another person);
- channels are ``[I, U*255, V*255]`` with U, V clipped to [0, 255] after scaling, then truncated
  to ``uint8``.

On disk (OpenCV ``imwrite``) the array gives DensePose's ``*_IUV.png`` layout: B = I, G = U, R = V.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def uv_to_uint8(uv: np.ndarray) -> np.ndarray:
    """``U·255`` / ``V·255`` clipped to [0, 255] and truncated to uint8."""
    return np.clip(np.asarray(uv, dtype=np.float32) * np.float32(255.0), 0, 255).astype(np.uint8)


def composite_iuv(
    image_hw: tuple[int, int],
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[np.ndarray],
    uvs: Sequence[np.ndarray],
) -> np.ndarray:
    """Paste per-instance charts into one ``(H, W, 3) uint8`` IUV image (see module docstring).

    Args:
        image_hw: ``(H, W)`` of the frame.
        boxes: ``(N, 4)`` xyxy boxes in frame pixels.
        scores: ``(N,)`` detection scores (paste order).
        labels: N arrays ``(h_k, w_k)`` of part indices (0 = background).
        uvs: N arrays ``(2, h_k, w_k)`` of U, V in [0, 1].
    """
    h_img, w_img = int(image_hw[0]), int(image_hw[1])
    out = np.zeros((h_img, w_img, 3), dtype=np.uint8)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    for k in order:
        lab = np.asarray(labels[k])
        uv = np.asarray(uvs[k])
        x0, y0 = int(boxes[k, 0]), int(boxes[k, 1])
        # crop the chart to the frame (also handles negative corners defensively)
        cx0, cy0 = max(0, -x0), max(0, -y0)
        x0, y0 = max(0, x0), max(0, y0)
        h = min(lab.shape[0] - cy0, h_img - y0)
        w = min(lab.shape[1] - cx0, w_img - x0)
        if h <= 0 or w <= 0:
            continue
        lab = lab[cy0:cy0 + h, cx0:cx0 + w]
        fg = lab > 0
        if not fg.any():
            continue
        region = out[y0:y0 + h, x0:x0 + w]
        region[..., 0][fg] = lab[fg].astype(np.uint8)
        region[..., 1][fg] = uv_to_uint8(uv[0, cy0:cy0 + h, cx0:cx0 + w][fg])
        region[..., 2][fg] = uv_to_uint8(uv[1, cy0:cy0 + h, cx0:cx0 + w][fg])
    return out
