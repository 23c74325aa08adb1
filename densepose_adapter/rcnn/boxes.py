"""Box utilities with detectron2's exact conventions (xyxy float32 boxes in input pixels)."""

from __future__ import annotations

import math

import torch

DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def apply_deltas(deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, ...],
                 scale_clamp: float = DEFAULT_SCALE_CLAMP) -> torch.Tensor:
    """Decode ``(R, k*4)`` deltas ``(dx, dy, dw, dh)`` relative to ``(R, 4)`` boxes.

    Centre/size parametrisation with width = x1 - x0 (no +1), ``dw``/``dh`` clamped at
    ``scale_clamp`` before ``exp`` (detectron2 ``Box2BoxTransform.apply_deltas``).
    """
    deltas = deltas.float()
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=scale_clamp)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=scale_clamp)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    x0 = pred_ctr_x - 0.5 * pred_w
    y0 = pred_ctr_y - 0.5 * pred_h
    x1 = pred_ctr_x + 0.5 * pred_w
    y1 = pred_ctr_y + 0.5 * pred_h
    return torch.stack((x0, y0, x1, y1), dim=-1).reshape(deltas.shape)


def clip_boxes(boxes: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Clamp xyxy boxes to ``[0, w] × [0, h]`` (note: w, not w - 1)."""
    h, w = hw
    return torch.stack((boxes[:, 0].clamp(min=0, max=w), boxes[:, 1].clamp(min=0, max=h),
                        boxes[:, 2].clamp(min=0, max=w), boxes[:, 3].clamp(min=0, max=h)), dim=-1)


def nonempty(boxes: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Mask of boxes whose width and height are both > ``threshold``."""
    return ((boxes[:, 2] - boxes[:, 0]) > threshold) & ((boxes[:, 3] - boxes[:, 1]) > threshold)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
