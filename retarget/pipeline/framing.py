"""Person boxes, square crops and temporal smoothing (pure numpy functions).

Boxes are ``(4,)`` float xyxy in pixels. A *crop* is a square ``(cx, cy, side)`` in pixels: the
person box's centre and ``max(width, height) / fill`` so that the person fills ``fill`` of the crop
(the reference training images show a full-height person filling ~90 % of a 256² frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Fraction of the crop side the person's longer box side occupies.
DEFAULT_FILL = 0.9


@dataclass(frozen=True)
class SquareCrop:
    """An integer square window ``[x0, x0 + side) x [y0, y0 + side)``; may extend past the image."""

    x0: int
    y0: int
    side: int

    @classmethod
    def around(cls, cx: float, cy: float, side: float) -> "SquareCrop":
        side_i = max(4, int(round(side)))
        return cls(int(round(cx - side_i / 2)), int(round(cy - side_i / 2)), side_i)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Bounding box ``(4,)`` xyxy (exclusive end) of a boolean ``(H, W)`` mask, ``None`` if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def box_to_crop_params(box: np.ndarray, fill: float = DEFAULT_FILL) -> np.ndarray:
    """``(4,)`` xyxy box → ``(3,)`` ``[cx, cy, side]`` of the square crop that frames it."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0, 1.0) / fill])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two xyxy boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def pick_person(boxes: np.ndarray, previous: np.ndarray | None, min_iou: float = 0.3) -> int | None:
    """Index of the person to follow: best IoU with the previous box, else the largest box.

    Args:
        boxes: ``(N, 4)`` xyxy.
        previous: the box followed in the previous frame, or ``None``.
    """
    if len(boxes) == 0:
        return None
    if previous is not None:
        ious = [box_iou(b, previous) for b in boxes]
        best = int(np.argmax(ious))
        if ious[best] >= min_iou:
            return best
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.argmax(areas))


def smooth_track(params: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing of a crop track, ignoring frames without a person.

    Args:
        params: ``(T, 3)`` ``[cx, cy, side]`` per frame, rows of NaN where no person was found.
        sigma_frames: Gaussian standard deviation in frames (0 disables smoothing).

    Returns:
        ``(T, 3)`` smoothed track, NaN exactly where the input is NaN. A constant track is returned
        unchanged (weights are renormalised), so a still person never jitters.
    """
    params = np.asarray(params, dtype=np.float64)
    valid = ~np.isnan(params).any(axis=1)
    if sigma_frames <= 0 or valid.sum() < 2:
        return params.copy()
    radius = int(np.ceil(3 * sigma_frames))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    values = np.where(valid[:, None], params, 0.0)
    n = len(params)

    def conv(signal: np.ndarray) -> np.ndarray:  # "same" length even for clips shorter than the kernel
        return np.convolve(signal, kernel, mode="full")[radius:radius + n]

    num = np.stack([conv(values[:, k]) for k in range(params.shape[1])], axis=1)
    den = conv(valid.astype(np.float64))[:, None]
    out = num / np.maximum(den, 1e-12)
    out[~valid] = np.nan
    return out


def crop_image(image: np.ndarray, crop: SquareCrop, size: int, *, nearest: bool = False,
               border_value: float | tuple = 0, replicate: bool = False) -> np.ndarray:
    """Cut a square window out of ``image`` (padding outside) and resize it to ``size x size``.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array.
        crop: the window; parts outside the image are filled with ``border_value`` (or edge pixels
            when ``replicate``).
        size: output side.
        nearest: nearest-neighbour resize (labels, UV); otherwise area (down) / linear (up).
    """
    h, w = image.shape[:2]
    x0, y0, side = crop.x0, crop.y0, crop.side
    pad = (max(0, -y0), max(0, y0 + side - h), max(0, -x0), max(0, x0 + side - w))
    if any(pad):
        mode = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
        image = cv2.copyMakeBorder(image, pad[0], pad[1], pad[2], pad[3], mode, value=border_value)
        x0, y0 = x0 + pad[2], y0 + pad[0]
    window = image[y0:y0 + side, x0:x0 + side]
    if side == size:
        return np.ascontiguousarray(window)
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    out = cv2.resize(window, (size, size), interpolation=interp)
    return out.reshape(size, size, *image.shape[2:])


def paste_crop(frame: np.ndarray, crop: SquareCrop, content: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend ``content`` (``(S, S, 3)`` float in [0, 1]) into ``frame`` at ``crop`` with ``alpha``.

    Args:
        frame: ``(H, W, 3)`` float32 in [0, 1]; modified in place and returned.
        crop: where the ``S x S`` content goes (rescaled to ``crop.side``; clipped at the frame edges).
        content: ``(S, S, 3)``.
        alpha: ``(S, S)`` in [0, 1].
    """
    h, w = frame.shape[:2]
    side = crop.side
    if content.shape[0] != side:
        interp = cv2.INTER_LINEAR if side > content.shape[0] else cv2.INTER_AREA
        content = cv2.resize(content, (side, side), interpolation=interp)
        alpha = cv2.resize(alpha, (side, side), interpolation=interp)
    fx0, fy0 = max(crop.x0, 0), max(crop.y0, 0)
    fx1, fy1 = min(crop.x0 + side, w), min(crop.y0 + side, h)
    if fx0 >= fx1 or fy0 >= fy1:
        return frame
    cx0, cy0 = fx0 - crop.x0, fy0 - crop.y0
    c = content[cy0:cy0 + fy1 - fy0, cx0:cx0 + fx1 - fx0]
    a = alpha[cy0:cy0 + fy1 - fy0, cx0:cx0 + fx1 - fx0, None]
    region = frame[fy0:fy1, fx0:fx1]
    frame[fy0:fy1, fx0:fx1] = region * (1 - a) + c * a
    return frame


def feather(mask: np.ndarray, radius: float) -> np.ndarray:
    """Soften a ``(S, S)`` {0, 1} mask into an alpha matte with a Gaussian of ``radius`` pixels.

    Use with :func:`extend_colours` so that the soft edge outside the person shows person colours,
    not whatever the crop holds there.
    """
    mask = mask.astype(np.float32)
    if radius <= 0:
        return mask
    k = int(2 * np.ceil(2 * radius) + 1)
    return np.clip(cv2.GaussianBlur(mask, (k, k), radius), 0.0, 1.0)


def extend_colours(content: np.ndarray, mask: np.ndarray, radius: float) -> np.ndarray:
    """Replace ``content`` outside ``mask`` by a blur of the nearby person colours (normalised blur).

    Args:
        content: ``(S, S, 3)`` float image.
        mask: ``(S, S)`` {0, 1} person mask.
        radius: how far colours are carried (pixels); a few times the feather radius is enough.

    Returns:
        ``(S, S, 3)``: ``content`` on the person, the mask-weighted average of the person's colours
        around each pixel elsewhere (where no person is near, the original content).
    """
    if radius <= 0:
        return content
    mask = mask.astype(np.float32)
    k = int(2 * np.ceil(2 * radius) + 1)
    weight = cv2.GaussianBlur(mask, (k, k), radius)
    spread = cv2.GaussianBlur(content * mask[..., None], (k, k), radius)
    outside = (mask < 0.5)[..., None] & (weight[..., None] > 1e-4)
    return np.where(outside, spread / np.maximum(weight, 1e-4)[..., None], content)


class CausalTrackSmoother:
    """Online (past frames only) smoothing of a crop track, for live streams: a one-euro filter.

    :func:`smooth_track` is zero-phase and needs the whole track; a live stream only has the past.
    This low-pass filter smooths hard while the person stands still (cut-off ``1 / (2π·sigma_frames)``
    cycles per frame: an exponential average of time constant ``sigma_frames``) and opens up with the
    speed of the crop (``beta`` per crop side per frame), so a moving person is followed with little lag.

    Feed ``[cx, cy, side]`` per frame with :meth:`step` (a row of NaN where no person was found: the
    output is NaN there, and the filter continues from its last value when the person comes back).
    """

    def __init__(self, sigma_frames: float, beta: float = 5.0, derivative_tau: float = 1.0):
        self.tau = max(0.0, float(sigma_frames))
        self.beta = float(beta)
        self.derivative_tau = float(derivative_tau)
        self._value: np.ndarray | None = None
        self._speed = np.zeros(3)

    @staticmethod
    def _alpha(tau: np.ndarray | float) -> np.ndarray | float:
        return 1.0 / (1.0 + tau)

    def step(self, params: np.ndarray) -> np.ndarray:
        """The smoothed ``(3,)`` ``[cx, cy, side]`` of this frame."""
        params = np.asarray(params, dtype=np.float64)
        if np.isnan(params).any():
            self._speed = np.zeros(3)
            return np.full(3, np.nan)
        if self._value is None or self.tau == 0:
            self._value = params.copy()
            return params.copy()
        raw_speed = params - self._value
        a = self._alpha(self.derivative_tau)
        self._speed = a * raw_speed + (1 - a) * self._speed
        side = max(float(self._value[2]), 1.0)
        cutoff = 1.0 / (2 * np.pi * self.tau) + self.beta * np.abs(self._speed) / side  # cycles per frame
        alpha = self._alpha(1.0 / (2 * np.pi * cutoff))
        self._value = alpha * params + (1 - alpha) * self._value
        return self._value.copy()
