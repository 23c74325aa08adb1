"""The one result type every DensePose backend yields, and the backend protocol.

Conventions:
- Images are ``(H, W, 3) uint8`` **BGR** (OpenCV order), as DensePose's official code expects.
- Boxes are ``(N, 4) float32`` xyxy in pixels of the image given to the backend.
- An IUV image is ``(H, W, 3) uint8`` with channels ``[I, U*255, V*255]`` (I = body part 0..24,
  0 = background). Written with OpenCV this gives DensePose's ``*_IUV.png`` layout on disk
  (B = I, G = U, R = V).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass
class DensePoseInstance:
    """Chart result of one detected person, in the frame of its (integer-sized) box.

    Attributes:
        box: ``(4,)`` float32 xyxy in image pixels.
        score: detection score in [0, 1].
        labels: ``(h, w) uint8`` part index I (0 = background) on the box grid.
        uv: ``(2, h, w) float32`` part-local U, V in [0, 1].
    """

    box: np.ndarray
    score: float
    labels: np.ndarray
    uv: np.ndarray


@dataclass
class DensePoseResult:
    """DensePose output for one image/frame.

    Attributes:
        image_hw: ``(H, W)`` of the image the result refers to.
        boxes: ``(N, 4) float32`` xyxy person boxes in image pixels (N may be 0).
        scores: ``(N,) float32`` detection scores.
        iuv: ``(H, W, 3) uint8`` full-frame IUV composite ``[I, U*255, V*255]``.
        instances: per-instance charts when the backend produces them (empty for IUV renders).
    """

    image_hw: tuple[int, int]
    boxes: np.ndarray
    scores: np.ndarray
    iuv: np.ndarray
    instances: list[DensePoseInstance] = field(default_factory=list)

    @property
    def has_person(self) -> bool:
        """True when at least one body-part pixel is present."""
        return bool((self.iuv[..., 0] > 0).any())

    @classmethod
    def from_iuv(cls, iuv: np.ndarray) -> "DensePoseResult":
        """Wrap a full-frame IUV image; the single box is the bounding box of its person pixels."""
        iuv = np.ascontiguousarray(iuv, dtype=np.uint8)
        if iuv.ndim != 3 or iuv.shape[2] != 3:
            raise ValueError(f"IUV image must be (H, W, 3), got {iuv.shape}")
        fg = iuv[..., 0] > 0
        if fg.any():
            ys, xs = np.nonzero(fg)
            boxes = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
            scores = np.ones(1, dtype=np.float32)
        else:
            boxes = np.zeros((0, 4), dtype=np.float32)
            scores = np.zeros(0, dtype=np.float32)
        return cls(image_hw=(iuv.shape[0], iuv.shape[1]), boxes=boxes, scores=scores, iuv=iuv)


@runtime_checkable
class DensePoseBackend(Protocol):
    """What the pipelines need from a DensePose implementation."""

    name: str

    def cache_key(self) -> str:
        """A string that changes whenever outputs could change (backend, weights hash, settings)."""
        ...

    def predict(self, images_bgr: Sequence[np.ndarray]) -> list[DensePoseResult]:
        """Run on a batch of ``(H, W, 3) uint8`` BGR images; one result per image, same order."""
        ...
