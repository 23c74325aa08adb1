"""Post-processing: detector outputs back to input-image pixels, and DensePose chart results.

- ``detector_postprocess``: boxes are scaled by ``(W/w, H/h)`` from the resized to the original
  image, clipped to it, and empty boxes dropped (detectron2 ``detector_postprocess``).
- ``chart_result``: DensePose's ``ToChartResultConverter``: the box (xyxy, original pixels) is turned
  into xywh and truncated to integers; the 112×112 outputs are resized bilinearly
  (``align_corners=False``) to ``(h, w)``; ``I = argmax(fine) * (argmax(coarse) > 0)``; U and V are
  read from channel ``I`` (0 where ``I = 0``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from densepose_adapter.rcnn.boxes import clip_boxes, nonempty


def detector_postprocess(boxes: torch.Tensor, resized_hw: tuple[int, int], out_hw: tuple[int, int]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale resized-frame boxes to ``out_hw``; returns ``(boxes, keep mask)``."""
    scale_x = out_hw[1] / resized_hw[1]
    scale_y = out_hw[0] / resized_hw[0]
    b = boxes.clone()
    b[:, 0::2] *= scale_x
    b[:, 1::2] *= scale_y
    b = clip_boxes(b, out_hw)
    keep = nonempty(b)
    return b, keep


def int_box_xywh(box_xyxy: torch.Tensor) -> tuple[int, int, int, int]:
    """xyxy float32 → (x, y, w, h) truncated to int, as DensePose's ``make_int_box``."""
    xywh = box_xyxy.clone()
    xywh[2] -= xywh[0]
    xywh[3] -= xywh[1]
    x, y, w, h = (int(v) for v in xywh.long().tolist())
    return x, y, w, h


def chart_result(coarse: torch.Tensor, fine: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                 box_xyxy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One instance's ``(labels (h, w) int64, uv (2, h, w) float32)`` on its integer box grid.

    ``coarse``/``fine``/``u``/``v`` are ``(1, C, 112, 112)`` predictor outputs.
    """
    _, _, w, h = int_box_xywh(box_xyxy)
    w, h = max(w, 1), max(h, 1)
    coarse_lab = F.interpolate(coarse, (h, w), mode="bilinear", align_corners=False).argmax(dim=1)
    labels = F.interpolate(fine, (h, w), mode="bilinear", align_corners=False).argmax(dim=1)
    labels = (labels * (coarse_lab > 0).long())[0]
    u_box = F.interpolate(u, (h, w), mode="bilinear", align_corners=False)[0]
    v_box = F.interpolate(v, (h, w), mode="bilinear", align_corners=False)[0]
    idx = labels.unsqueeze(0)
    fg = labels > 0
    zero = u_box.new_zeros(())
    uv = torch.stack((torch.where(fg, u_box.gather(0, idx)[0], zero),
                      torch.where(fg, v_box.gather(0, idx)[0], zero))).float()
    return labels, uv
