"""End-to-end DensePose R-CNN inference (``GeneralizedRCNN`` + ``DensePoseROIHeads``) in plain torch.

Pipeline for a batch of BGR uint8 images (official ``DefaultPredictor`` conventions):

1. resize each image with PIL bilinear on uint8 so that its shortest side is ``MIN_SIZE_TEST``
   (longest ≤ ``MAX_SIZE_TEST``; sizes rounded with ``int(x + 0.5)``) — :func:`resized_shape`;
2. float32 CHW, ``(x - PIXEL_MEAN) / PIXEL_STD`` (BGR), zero-pad to a multiple of 32 (batch max);
3. ResNet-FPN → p2..p6; RPN proposals; box head → detections (resized-image pixels);
4. DensePose branch on the detections (decoder over p2..p5 → ROIAlignV2 28×28 → 8 convs →
   deconv ×2 → bilinear ×2 = 112×112);
5. boxes scaled back to the input image, clipped, empty ones dropped; chart results per instance;
   full-frame IUV composite (:mod:`densepose_adapter.composite`).

:meth:`DensePoseRCNN.run_stages` returns every intermediate (for the parity tests);
:meth:`DensePoseRCNN.predict` returns :class:`~densepose_adapter.types.DensePoseResult` objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from densepose_adapter.composite import composite_iuv
from densepose_adapter.rcnn.backbone import FPN, ConvNorm
from densepose_adapter.rcnn.config import DensePoseRCNNConfig
from densepose_adapter.rcnn.postprocess import chart_result, detector_postprocess
from densepose_adapter.rcnn.roi_heads import DensePoseROIHeads
from densepose_adapter.rcnn.rpn import RPN
from densepose_adapter.types import DensePoseInstance, DensePoseResult


def resized_shape(h: int, w: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """``ResizeShortestEdge`` output ``(new_h, new_w)``; ``short_edge <= 0`` keeps the size."""
    if short_edge <= 0:
        return h, w
    scale = short_edge * 1.0 / min(h, w)
    if h < w:
        newh, neww = short_edge * 1.0, scale * w
    else:
        newh, neww = scale * h, short_edge * 1.0
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def resize_bgr(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """PIL bilinear resize of a uint8 ``(H, W, 3)`` image (detectron2 ``ResizeTransform``)."""
    from PIL import Image

    image = np.ascontiguousarray(image)
    if image.shape[:2] == tuple(hw):
        return image.copy()
    pil = Image.fromarray(image)
    return np.asarray(pil.resize((int(hw[1]), int(hw[0])), Image.BILINEAR))


class DensePoseRCNN(nn.Module):
    """The full model; parameter names equal detectron2's (see :mod:`densepose_adapter.rcnn.convert`)."""

    def __init__(self, cfg: DensePoseRCNNConfig | None = None):
        super().__init__()
        cfg = cfg or DensePoseRCNNConfig()
        cfg.validate()
        self.cfg = cfg
        self.backbone = FPN(cfg)
        self.proposal_generator = RPN(cfg, cfg.fpn_out_channels)
        self.roi_heads = DensePoseROIHeads(cfg, cfg.fpn_out_channels)
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean, dtype=torch.float32).view(-1, 1, 1),
                             persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std, dtype=torch.float32).view(-1, 1, 1),
                             persistent=False)
        self.crop_decoder = True  # run the DensePose decoder only around the detections
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def fuse_frozen_bn(self) -> DensePoseRCNN:
        """Fold every frozen batch norm into its conv (≈1e-6 relative change, faster on CPU).

        After this the state dict no longer has ``*.norm.*`` keys; load weights first."""
        for m in self.modules():
            if isinstance(m, ConvNorm):
                m.fuse_norm()
        return self

    # ------------------------------------------------------------------------------------------
    def preprocess(self, resized: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Normalise and zero-pad resized uint8 BGR images into one ``(N, 3, Hp, Wp)`` tensor."""
        tensors = [torch.as_tensor(np.ascontiguousarray(im.astype(np.float32).transpose(2, 0, 1)))
                   .to(self.device) for im in resized]
        tensors = [(t - self.pixel_mean) / self.pixel_std for t in tensors]
        sizes = [(int(t.shape[1]), int(t.shape[2])) for t in tensors]
        d = self.cfg.size_divisibility
        hp = -(-max(s[0] for s in sizes) // d) * d
        wp = -(-max(s[1] for s in sizes) // d) * d
        batch = tensors[0].new_zeros((len(tensors), 3, hp, wp))
        for i, t in enumerate(tensors):
            batch[i, :, : t.shape[1], : t.shape[2]].copy_(t)
        return batch, sizes

    def target_sizes(self, images: Sequence[np.ndarray], short_edge: int | None = None) -> list[tuple[int, int]]:
        s = self.cfg.min_size_test if short_edge is None else int(short_edge)
        return [resized_shape(im.shape[0], im.shape[1], s, self.cfg.max_size_test) for im in images]

    @torch.inference_mode()
    def run_stages(self, images_bgr: Sequence[np.ndarray], resized_hw: Sequence[tuple[int, int]] | None = None,
                   keep_intermediate: bool = False) -> list[dict]:
        """Run the model; per image a dict of numpy/tensor results.

        Always present: ``boxes`` (N,4 input pixels), ``scores``, ``classes``, ``charts``
        (list of (labels, uv) tensors), ``image_hw``. With ``keep_intermediate`` also the resized input,
        padded tensor, FPN features, proposals, resized-frame boxes, head features and raw predictor
        outputs (names as in the parity fixture).
        """
        images = [np.ascontiguousarray(im) for im in images_bgr]
        if resized_hw is None:
            resized_hw = self.target_sizes(images)
        resized = [resize_bgr(im, hw) for im, hw in zip(images, resized_hw)]
        x, sizes = self.preprocess(resized)
        features = self.backbone(x)
        proposals = self.proposal_generator(features, sizes)
        dets = self.roi_heads.detect(features, [p[0] for p in proposals], sizes)
        n_per = [d["boxes"].shape[0] for d in dets]
        if sum(n_per):
            head, pred = self.roi_heads.densepose_on_detections(features, [d["boxes"] for d in dets],
                                                                crop_decoder=self.crop_decoder)
        else:
            head, pred = None, {}
        out = []
        start = 0
        for i, (im, d) in enumerate(zip(images, dets)):
            n = n_per[i]
            sl = slice(start, start + n)
            start += n
            hw = (im.shape[0], im.shape[1])
            boxes, keep = detector_postprocess(d["boxes"], sizes[i], hw)
            res: dict = {"image_hw": hw}
            if keep_intermediate:
                res.update({
                    "input_resized_bgr": resized[i],
                    "image_size": np.array(sizes[i]),
                    "padded_hw": np.array(x.shape[-2:]),
                    "preprocessed": x[i],
                    "proposal_boxes": proposals[i][0],
                    "proposal_logits": proposals[i][1],
                    "boxes_resized_frame": d["boxes"][keep],
                })
                for k, v in features.items():
                    res[f"feat_{k}"] = v[i]
                if n:
                    res["dp_head_features"] = head[sl][keep]
                    for k, name in (("coarse_segm", "dp_coarse_segm"), ("fine_segm", "dp_fine_segm"),
                                    ("u", "dp_u"), ("v", "dp_v")):
                        res[name] = pred[k][sl][keep]
            res["boxes"] = boxes[keep]
            res["scores"] = d["scores"][keep]
            res["classes"] = d["classes"][keep]
            charts = []
            if n:
                sub = {k: v[sl][keep] for k, v in pred.items()}
                for j in range(int(keep.sum())):
                    charts.append(chart_result(sub["coarse_segm"][j:j + 1], sub["fine_segm"][j:j + 1],
                                               sub["u"][j:j + 1], sub["v"][j:j + 1], res["boxes"][j]))
            res["charts"] = charts
            out.append(res)
        return out

    def predict(self, images_bgr: Sequence[np.ndarray], short_edge: int | None = None) -> list[DensePoseResult]:
        """DensePose results for BGR uint8 images (shortest side resized to ``short_edge``,
        default ``MIN_SIZE_TEST``)."""
        images = [np.ascontiguousarray(im) for im in images_bgr]
        if not images:
            return []
        stages = self.run_stages(images, self.target_sizes(images, short_edge))
        return [stage_to_result(s) for s in stages]


def stage_to_result(stage: dict, offset_xy: tuple[int, int] = (0, 0),
                    frame_hw: tuple[int, int] | None = None) -> DensePoseResult:
    """Turn one :meth:`DensePoseRCNN.run_stages` entry into a :class:`DensePoseResult`.

    ``offset_xy`` translates boxes by whole pixels (tracked-region crops) into a frame of size
    ``frame_hw`` (default: the image the stage ran on)."""
    boxes = stage["boxes"].detach().cpu().numpy().astype(np.float32).reshape(-1, 4)
    scores = stage["scores"].detach().cpu().numpy().astype(np.float32).reshape(-1)
    ox, oy = offset_xy
    if ox or oy:
        boxes = boxes + np.array([ox, oy, ox, oy], dtype=np.float32)
    hw = tuple(frame_hw) if frame_hw is not None else tuple(stage["image_hw"])
    instances = []
    for k, (lab, uv) in enumerate(stage["charts"]):
        instances.append(DensePoseInstance(box=boxes[k], score=float(scores[k]),
                                           labels=lab.cpu().numpy().astype(np.uint8),
                                           uv=uv.cpu().numpy().astype(np.float32)))
    # paste position: int(x0) of the box in the frame where the model ran, shifted by the offset
    paste = boxes.copy()
    if ox or oy:
        local = stage["boxes"].detach().cpu().numpy().astype(np.float32).reshape(-1, 4)
        paste[:, 0] = np.trunc(local[:, 0]) + ox
        paste[:, 1] = np.trunc(local[:, 1]) + oy
    iuv = composite_iuv(hw, paste, scores, [i.labels for i in instances], [i.uv for i in instances])
    return DensePoseResult(image_hw=(int(hw[0]), int(hw[1])), boxes=boxes, scores=scores, iuv=iuv,
                           instances=instances)
