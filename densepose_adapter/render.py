"""Pictures of IUV maps for videos: DensePose's fine-segmentation look and raw IUV as colour.

Both take an IUV image ``(H, W, 3) uint8`` ``[I, U·255, V·255]`` and return ``(H, W, 3) uint8`` **RGB**.
"""

from __future__ import annotations

import numpy as np

N_PARTS = 24
SEGM_ALPHA = 0.7  # the opacity DensePose's fine-segmentation visualiser draws with


def segm_image(iuv: np.ndarray) -> np.ndarray:
    """Part index drawn like DensePose's fine-segmentation visualiser (``dp_segm``) on black.

    ``I`` is scaled to ``I·255/24`` (truncated to uint8), coloured with OpenCV's PARULA colour map,
    and blended at opacity 0.7 over a black frame (truncated to uint8); background pixels stay black.
    """
    import cv2

    labels = iuv[..., 0]
    scaled = np.clip(labels.astype(np.float32) * np.float32(255.0 / N_PARTS), 0, 255).astype(np.uint8)
    colour_bgr = cv2.applyColorMap(scaled, cv2.COLORMAP_PARULA)
    drawn = (colour_bgr.astype(np.float32) * np.float32(SEGM_ALPHA)).astype(np.uint8)
    drawn[labels == 0] = 0
    return np.ascontiguousarray(drawn[..., ::-1])


def iuv_image(iuv: np.ndarray) -> np.ndarray:
    """The IUV map as DensePose's ``*_IUV.png`` files look in an image viewer: R = V·255, G = U·255, B = I."""
    return np.ascontiguousarray(iuv[..., ::-1])


RENDERERS = {"segm": segm_image, "iuv": iuv_image}
