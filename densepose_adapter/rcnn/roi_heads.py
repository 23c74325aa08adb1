"""ROI heads: box head + Fast R-CNN inference, and the DensePose branch (decoder, head, predictor).

Module names follow detectron2's ``DensePoseROIHeads`` (``box_head.fc1``, ``box_predictor.cls_score``,
``decoder.p4.2``, ``densepose_head.body_conv_fcn1``, ``densepose_predictor.ann_index_lowres`` ...).

Two ROIAlign variants are used, as in the official configs: the box head pools with ``ROIAlign``
(``aligned=False``: box corners are used as is), the DensePose head with ``ROIAlignV2``
(``aligned=True``: a half-pixel shift so that pixel centres line up).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, roi_align

from densepose_adapter.rcnn.boxes import apply_deltas, box_area, clip_boxes, nonempty
from densepose_adapter.rcnn.config import DensePoseRCNNConfig, pooler_aligned

ROI_LEVELS = ("p2", "p3", "p4", "p5")
ROI_STRIDES = (4, 8, 16, 32)


class ROIPooler(nn.Module):
    """detectron2 ``ROIPooler`` for ROIAlign / ROIAlignV2 over one or several FPN levels.

    Level of a box: ``floor(4 + log2(sqrt(area) / 224 + 1e-8))`` clamped to the available levels.
    """

    def __init__(self, output_size: int, strides: tuple[int, ...], sampling_ratio: int, pooler_type: str,
                 canonical_box_size: int = 224, canonical_level: int = 4):
        super().__init__()
        self.output_size = (output_size, output_size)
        self.scales = tuple(1.0 / s for s in strides)
        self.sampling_ratio = sampling_ratio
        self.aligned = pooler_aligned(pooler_type)
        self.min_level = round(math.log2(strides[0]))
        self.max_level = round(math.log2(strides[-1]))
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def forward(self, features: list[torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1)
                          for i, b in enumerate(boxes)], dim=0)
        c = features[0].shape[1]
        if rois.shape[0] == 0:
            return features[0].new_zeros((0, c) + self.output_size)
        rois = rois.to(features[0].dtype)
        if len(features) == 1:
            return roi_align(features[0], rois, self.output_size, self.scales[0],
                             self.sampling_ratio, self.aligned)
        sizes = torch.sqrt(box_area(rois[:, 1:]))
        levels = torch.floor(self.canonical_level + torch.log2(sizes / self.canonical_box_size + 1e-8))
        levels = torch.clamp(levels, min=self.min_level, max=self.max_level).to(torch.int64) - self.min_level
        out = features[0].new_zeros((rois.shape[0], c) + self.output_size)
        for lvl, (feat, scale) in enumerate(zip(features, self.scales)):
            idx = torch.nonzero(levels == lvl, as_tuple=True)[0]
            if idx.numel():
                out[idx] = roi_align(feat, rois[idx], self.output_size, scale, self.sampling_ratio,
                                     self.aligned)
        return out


class FastRCNNConvFCHead(nn.Module):
    """Flatten + ``NUM_FC`` fully connected layers with ReLU."""

    def __init__(self, in_dim: int, fc_dim: int, num_fc: int):
        super().__init__()
        self.num_fc = num_fc
        for k in range(num_fc):
            self.add_module(f"fc{k + 1}", nn.Linear(in_dim if k == 0 else fc_dim, fc_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, start_dim=1)
        for k in range(self.num_fc):
            x = F.relu(getattr(self, f"fc{k + 1}")(x))
        return x


class FastRCNNOutputLayers(nn.Module):
    """Class scores (K foreground classes + background as the LAST column) and box deltas."""

    def __init__(self, in_dim: int, num_classes: int, cls_agnostic: bool):
        super().__init__()
        self.cls_score = nn.Linear(in_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(in_dim, (1 if cls_agnostic else num_classes) * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class Decoder(nn.Module):
    """Panoptic-FPN style semantic head merging p2..p5 at stride ``common_stride`` (DensePose's
    ``Decoder``): per level ``max(1, log2(stride/common))`` × (3x3 conv + ReLU [+ ×2 bilinear
    upsampling, align_corners=False]), summed, then a 1x1 predictor conv."""

    def __init__(self, in_channels: int, conv_dims: int, num_classes: int, common_stride: int):
        super().__init__()
        for name, stride in zip(ROI_LEVELS, ROI_STRIDES):
            n = max(1, int(math.log2(stride) - math.log2(common_stride)))
            ops: list[nn.Module] = []
            for k in range(n):
                ops.append(nn.Conv2d(in_channels if k == 0 else conv_dims, conv_dims, 3, padding=1))
                ops.append(nn.ReLU())
                if stride != common_stride:
                    ops.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.add_module(name, _IndexedSequential(ops))
        self.predictor = nn.Conv2d(conv_dims, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = None
        for name, feat in zip(ROI_LEVELS, features):
            y = getattr(self, name)(feat)
            x = y if x is None else x + y
        return self.predictor(x)


class _IndexedSequential(nn.Module):
    """A sequential whose parameterised children are numbered as in detectron2: each conv and its
    upsampling count as separate indices while the ReLU (fused into detectron2's conv) does not."""

    def __init__(self, ops: list[nn.Module]):
        super().__init__()
        self._order: list[nn.Module] = []
        idx = 0
        for op in ops:
            if isinstance(op, nn.ReLU):
                self._order.append(op)
                continue
            self.add_module(str(idx), op)
            self._order.append(op)
            idx += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self._order:
            x = op(x)
        return x


class DensePoseV1ConvXHead(nn.Module):
    """``NUM_STACKED_CONVS`` × (conv ``CONV_HEAD_KERNEL`` + ReLU)."""

    def __init__(self, in_channels: int, hidden_dim: int, kernel: int, n_convs: int):
        super().__init__()
        self.n_convs = n_convs
        ch = in_channels
        for i in range(n_convs):
            self.add_module(f"body_conv_fcn{i + 1}", nn.Conv2d(ch, hidden_dim, kernel, padding=kernel // 2))
            ch = hidden_dim
        self.n_out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n_convs):
            x = F.relu(getattr(self, f"body_conv_fcn{i + 1}")(x))
        return x


class DensePoseChartPredictor(nn.Module):
    """Four stride-2 transposed convs (coarse segm, fine segm, U, V) + bilinear ×``UP_SCALE``."""

    def __init__(self, in_channels: int, n_coarse: int, n_patches: int, kernel: int, up_scale: int):
        super().__init__()
        pad = int(kernel / 2 - 1)
        self.ann_index_lowres = nn.ConvTranspose2d(in_channels, n_coarse, kernel, stride=2, padding=pad)
        self.index_uv_lowres = nn.ConvTranspose2d(in_channels, n_patches + 1, kernel, stride=2, padding=pad)
        self.u_lowres = nn.ConvTranspose2d(in_channels, n_patches + 1, kernel, stride=2, padding=pad)
        self.v_lowres = nn.ConvTranspose2d(in_channels, n_patches + 1, kernel, stride=2, padding=pad)
        self.up_scale = up_scale

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.up_scale, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "coarse_segm": self._up(self.ann_index_lowres(x)),
            "fine_segm": self._up(self.index_uv_lowres(x)),
            "u": self._up(self.u_lowres(x)),
            "v": self._up(self.v_lowres(x)),
        }


class DensePoseROIHeads(nn.Module):
    def __init__(self, cfg: DensePoseRCNNConfig, in_channels: int):
        super().__init__()
        self.cfg = cfg
        self.box_pooler = ROIPooler(cfg.box_pooler_resolution, ROI_STRIDES, cfg.box_pooler_sampling_ratio,
                                    cfg.box_pooler_type)
        self.box_head = FastRCNNConvFCHead(in_channels * cfg.box_pooler_resolution ** 2, cfg.box_fc_dim,
                                           cfg.box_num_fc)
        self.box_predictor = FastRCNNOutputLayers(cfg.box_fc_dim, cfg.num_classes,
                                                  cfg.box_cls_agnostic_bbox_reg)
        if cfg.dp_decoder_on:
            self.decoder = Decoder(in_channels, cfg.dp_decoder_conv_dims, cfg.dp_decoder_num_classes,
                                   cfg.dp_decoder_common_stride)
            dp_in, dp_strides = cfg.dp_decoder_num_classes, (ROI_STRIDES[0],)
        else:
            self.decoder = None
            dp_in, dp_strides = in_channels, ROI_STRIDES
        self.densepose_pooler = ROIPooler(cfg.dp_pooler_resolution, dp_strides, cfg.dp_pooler_sampling_ratio,
                                          cfg.dp_pooler_type)
        self.densepose_head = DensePoseV1ConvXHead(dp_in, cfg.dp_conv_head_dim, cfg.dp_conv_head_kernel,
                                                   cfg.dp_num_stacked_convs)
        self.densepose_predictor = DensePoseChartPredictor(
            self.densepose_head.n_out_channels, cfg.dp_num_coarse_segm_channels, cfg.dp_num_patches,
            cfg.dp_deconv_kernel, cfg.dp_up_scale)

    # -- boxes -------------------------------------------------------------------------------
    def box_logits(self, features: list[torch.Tensor], proposals: list[torch.Tensor]):
        x = self.box_head(self.box_pooler(features, proposals))
        return self.box_predictor(x)

    def detect(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
               image_sizes: list[tuple[int, int]]) -> list[dict[str, torch.Tensor]]:
        """Fast R-CNN inference: softmax scores, per-class boxes, threshold, per-class NMS, top-k."""
        cfg = self.cfg
        feats = [features[k] for k in ROI_LEVELS]
        scores_all, deltas_all = self.box_logits(feats, proposals)
        out = []
        start = 0
        for props, hw in zip(proposals, image_sizes):
            n = props.shape[0]
            logits, deltas = scores_all[start:start + n], deltas_all[start:start + n]
            start += n
            boxes = apply_deltas(deltas, props, cfg.box_bbox_reg_weights, cfg.box_scale_clamp)
            scores = F.softmax(logits, dim=-1)
            valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
            if not bool(valid.all()):
                boxes, scores = boxes[valid], scores[valid]
            scores = scores[:, :-1]
            k = boxes.shape[1] // 4
            boxes = clip_boxes(boxes.reshape(-1, 4), hw).view(-1, k, 4)
            mask = scores > cfg.score_thresh_test
            inds = mask.nonzero()
            boxes = boxes[inds[:, 0], 0] if k == 1 else boxes[mask]
            scores = scores[mask]
            keep = batched_nms(boxes.float(), scores, inds[:, 1], cfg.nms_thresh_test)
            if cfg.detections_per_image >= 0:
                keep = keep[: cfg.detections_per_image]
            out.append({"boxes": boxes[keep], "scores": scores[keep], "classes": inds[keep, 1]})
        return out

    # -- DensePose ---------------------------------------------------------------------------
    def densepose_features(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        feats = [features[k] for k in ROI_LEVELS]
        return [self.decoder(feats)] if self.decoder is not None else feats

    def densepose(self, dp_features: list[torch.Tensor], boxes: list[torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Head features ``(N, C, R, R)`` and predictor outputs for boxes (input-image pixels)."""
        return self._head(self.densepose_pooler(dp_features, boxes))

    def _head(self, pooled: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if pooled.shape[0] == 0:
            c = self.densepose_head.n_out_channels
            return pooled.new_zeros((0, c) + pooled.shape[-2:]), {}
        head = self.densepose_head(pooled)
        return head, self.densepose_predictor(head)

    def densepose_on_detections(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                                crop_decoder: bool = True, max_area_fraction: float = 0.8
                                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """DensePose branch for the detections of every image (boxes per image, input pixels).

        With ``crop_decoder`` the decoder runs only on a window around each image's boxes (plus a
        margin wider than the decoder's receptive field, aligned to the p5 grid) instead of the
        whole p2 map — same values up to float rounding, much less work when people are small.
        """
        if (not crop_decoder or self.decoder is None or self.cfg.dp_decoder_common_stride != ROI_STRIDES[0]
                or self.densepose_pooler.scales != (1.0 / ROI_STRIDES[0],)):
            return self.densepose(self.densepose_features(features), boxes)
        feats = [features[k] for k in ROI_LEVELS]
        h2, w2 = feats[0].shape[-2:]
        pooled = []
        for i, b in enumerate(boxes):
            if b.shape[0] == 0:
                continue
            x0, y0, x1, y1 = decoder_window(b, (h2, w2))
            if (y1 - y0) * (x1 - x0) > max_area_fraction * h2 * w2:
                x0, y0, x1, y1 = 0, 0, w2, h2
            win = [f[i:i + 1, :, y0 // s:y1 // s, x0 // s:x1 // s]
                   for f, s in zip(feats, (1, 2, 4, 8))]
            dec = self.decoder(win)
            shift = b.new_tensor([x0, y0, x0, y0]) * ROI_STRIDES[0]
            pooled.append(self.densepose_pooler([dec], [b - shift]))
        if not pooled:
            return self._head(feats[0].new_zeros((0, self.densepose_head_in) + self.densepose_pooler.output_size))
        return self._head(torch.cat(pooled))

    @property
    def densepose_head_in(self) -> int:
        return self.densepose_head.body_conv_fcn1.in_channels if self.densepose_head.n_convs else 0


# margin around the boxes, in p2 cells: larger than the decoder's receptive-field spread (≈22 cells
# from a window edge for the p5 branch: 3 convs and 3 bilinear ×2 upsamplings)
DECODER_MARGIN = 48


def decoder_window(boxes: torch.Tensor, hw2: tuple[int, int], margin: int = DECODER_MARGIN
                   ) -> tuple[int, int, int, int]:
    """Window ``(x0, y0, x1, y1)`` in p2 cells (multiples of 8 = one p5 cell, clipped to the map) that
    holds every ROIAlign sample of ``boxes`` (input pixels, stride-4 map) plus ``margin``."""
    h2, w2 = hw2
    bx0 = float(boxes[:, 0].min()) / ROI_STRIDES[0]
    by0 = float(boxes[:, 1].min()) / ROI_STRIDES[0]
    bx1 = float(boxes[:, 2].max()) / ROI_STRIDES[0]
    by1 = float(boxes[:, 3].max()) / ROI_STRIDES[0]
    x0 = max(0, (math.floor(bx0) - 1 - margin) // 8 * 8)
    y0 = max(0, (math.floor(by0) - 1 - margin) // 8 * 8)
    x1 = min(w2, -(-(math.ceil(bx1) + 2 + margin) // 8) * 8)
    y1 = min(h2, -(-(math.ceil(by1) + 2 + margin) // 8) * 8)
    return x0, y0, x1, y1


__all__ = ["DensePoseROIHeads", "ROIPooler", "nonempty"]
