"""Region proposal network (detectron2 ``StandardRPNHead`` + ``RPN`` inference path).

Anchors: for each level one size per ``ANCHOR_GENERATOR.SIZES`` entry and every aspect ratio
(``h/w``), centred at ``(offset + j) * stride`` (offset 0: the first anchor is centred on the image's
top-left pixel corner); order (y, x, anchor). Inference: per level top-k (``PRE_NMS_TOPK_TEST``) of the
objectness logits, delta decoding with weights (1, 1, 1, 1), clip to the (unpadded) image, drop empty
boxes, NMS per level (0.7), keep ``POST_NMS_TOPK_TEST`` over all levels sorted by logit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from densepose_adapter.rcnn.boxes import apply_deltas, clip_boxes, nonempty
from densepose_adapter.rcnn.config import DensePoseRCNNConfig

RPN_LEVELS = ("p2", "p3", "p4", "p5", "p6")
RPN_STRIDES = (4, 8, 16, 32, 64)


def _per_level(values: tuple, n: int) -> tuple:
    return values * n if len(values) == 1 else values


def cell_anchors(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...]) -> torch.Tensor:
    """``(len(sizes)*len(ratios), 4)`` anchors centred at 0; sizes outer, ratios inner."""
    out = []
    for size in sizes:
        area = float(size) ** 2.0
        for ratio in aspect_ratios:
            w = math.sqrt(area / ratio)
            h = ratio * w
            out.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(out)


def grid_anchors(cell: torch.Tensor, grid_hw: tuple[int, int], stride: int, offset: float,
                 device: torch.device | None = None) -> torch.Tensor:
    """All anchors of one level, ``(H*W*A, 4)`` in (y, x, a) order."""
    gh, gw = grid_hw
    shifts_x = torch.arange(offset * stride, gw * stride, step=stride, dtype=torch.float32, device=device)
    shifts_y = torch.arange(offset * stride, gh * stride, step=stride, dtype=torch.float32, device=device)
    sy, sx = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    sx, sy = sx.reshape(-1), sy.reshape(-1)
    shifts = torch.stack((sx, sy, sx, sy), dim=1)
    return (shifts.view(-1, 1, 4) + cell.to(device).view(1, -1, 4)).reshape(-1, 4)


class StandardRPNHead(nn.Module):
    """3x3 conv + ReLU shared over levels, then 1x1 objectness (A) and 1x1 deltas (4A)."""

    def __init__(self, in_channels: int, num_anchors: int, box_dim: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(in_channels, num_anchors * box_dim, 1)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


class RPN(nn.Module):
    def __init__(self, cfg: DensePoseRCNNConfig, in_channels: int):
        super().__init__()
        self.cfg = cfg
        self.rpn_head = StandardRPNHead(in_channels, cfg.anchors_per_location)
        sizes = _per_level(cfg.anchor_sizes, len(RPN_LEVELS))
        ratios = _per_level(cfg.anchor_aspect_ratios, len(RPN_LEVELS))
        self._cell = [cell_anchors(tuple(s), tuple(r)) for s, r in zip(sizes, ratios)]
        self._anchor_cache: dict[tuple, list[torch.Tensor]] = {}

    def anchors(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        key = tuple(tuple(f.shape[-2:]) for f in features) + (str(features[0].device),)
        if key not in self._anchor_cache:
            if len(self._anchor_cache) > 8:
                self._anchor_cache.clear()
            self._anchor_cache[key] = [
                grid_anchors(c, tuple(f.shape[-2:]), s, self.cfg.anchor_offset, f.device)
                for c, f, s in zip(self._cell, features, RPN_STRIDES)]
        return self._anchor_cache[key]

    def forward(self, features: dict[str, torch.Tensor], image_sizes: list[tuple[int, int]]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Proposals per image: ``(boxes (R,4), objectness logits (R,))`` sorted by logit."""
        feats = [features[k] for k in RPN_LEVELS]
        anchors = self.anchors(feats)
        logits, deltas = self.rpn_head(feats)
        n = feats[0].shape[0]
        # (N, A, H, W) → (N, H*W*A); (N, A*4, H, W) → (N, H*W*A, 4)
        logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]
        deltas = [x.view(n, -1, 4, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2).flatten(1, -2)
                  for x in deltas]
        cfg = self.cfg
        results = []
        for i, hw in enumerate(image_sizes):
            boxes_l, scores_l, lvl_l = [], [], []
            for level, (lg, dl, an) in enumerate(zip(logits, deltas, anchors)):
                k = min(lg.shape[1], cfg.rpn_pre_nms_topk_test)
                top, idx = lg[i].topk(k)
                boxes_l.append(apply_deltas(dl[i][idx], an[idx], cfg.rpn_bbox_reg_weights,
                                            cfg.box_scale_clamp))
                scores_l.append(top)
                lvl_l.append(torch.full((k,), level, dtype=torch.int64, device=top.device))
            boxes, scores, lvl = torch.cat(boxes_l), torch.cat(scores_l), torch.cat(lvl_l)
            valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
            if not bool(valid.all()):
                boxes, scores, lvl = boxes[valid], scores[valid], lvl[valid]
            boxes = clip_boxes(boxes, hw)
            keep = nonempty(boxes, cfg.rpn_min_box_size)
            if not bool(keep.all()):
                boxes, scores, lvl = boxes[keep], scores[keep], lvl[keep]
            keep = batched_nms(boxes.float(), scores, lvl, cfg.rpn_nms_thresh)
            keep = keep[: cfg.rpn_post_nms_topk_test]
            results.append((boxes[keep], scores[keep]))
        return results
