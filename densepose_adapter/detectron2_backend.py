"""``detectron2`` DensePose backend: the official implementation, when it is installed.

Used only if ``import detectron2, densepose`` works (detectron2 must be built from source for the
local torch; DensePose is its ``projects/DensePose`` package). Produces the same
:class:`~densepose_adapter.types.DensePoseResult` as the ``torchvision`` port: boxes in image pixels,
scores, per-instance charts from DensePose's ``ToChartResultConverter`` and the IUV composite of
:mod:`densepose_adapter.composite`.

The detectron2 config is built in code (the model-zoo YAML files are not part of the pip package):
detectron2 defaults + ``add_densepose_config`` + the values of ``Base-DensePose-RCNN-FPN.yaml`` and
``densepose_rcnn_R_{50,101}_FPN_s1x.yaml`` + the overrides of a JSON config.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from densepose_adapter.composite import composite_iuv
from densepose_adapter.rcnn.config import R50, R101
from densepose_adapter.types import DensePoseInstance, DensePoseResult
from densepose_adapter.errors import UsageError

INSTALL_HINT = ("the detectron2 DensePose backend needs detectron2 and DensePose: "
                "pip install 'git+https://github.com/facebookresearch/detectron2.git' "
                "'git+https://github.com/facebookresearch/detectron2.git#subdirectory=projects/DensePose' "
                "(or use --densepose-backend torchvision)")

# Base-DensePose-RCNN-FPN.yaml (inference-relevant entries)
_BASE_OPTIONS: dict[str, Any] = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
    "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.ANCHOR_GENERATOR.SIZES": [[32], [64], [128], [256], [512]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
    "MODEL.RPN.IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 1000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.DENSEPOSE_ON": True,
    "MODEL.ROI_HEADS.NAME": "DensePoseROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES": ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_HEADS.NUM_CLASSES": 1,
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 7,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": 2,
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlign",
    "MODEL.ROI_DENSEPOSE_HEAD.NAME": "DensePoseV1ConvXHead",
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_TYPE": "ROIAlign",
    "MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS": 2,
}


def _import_detectron2():
    try:
        import densepose  # noqa: F401
        import detectron2  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError or a broken build (undefined symbols ...)
        raise UsageError(INSTALL_HINT) from None
    from densepose import add_densepose_config
    from densepose.converters import ToChartResultConverter
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    return get_cfg, add_densepose_config, DefaultPredictor, ToChartResultConverter


def detectron2_available() -> bool:
    """True when ``import detectron2, densepose`` works."""
    try:
        _import_detectron2()
        return True
    except UsageError:
        return False


class Detectron2DensePoseBackend:
    """The official implementation behind the :class:`DensePoseBackend` protocol."""

    name = "detectron2"

    def __init__(self, weights: str | os.PathLike | None = None, config: str | os.PathLike | None = None,
                 min_score: float | None = None, densepose_size: int = 800, device: str = "cpu"):
        get_cfg, add_densepose_config, DefaultPredictor, converter = _import_detectron2()
        from densepose_adapter.rcnn.config import load_config
        from densepose_adapter.torchvision_backend import DEFAULT_MIN_SCORE, resolve_weights

        ours = load_config(config)
        self.weights_path = resolve_weights(weights, ours)
        cfg = get_cfg()
        add_densepose_config(cfg)
        options: dict[str, Any] = dict(_BASE_OPTIONS)
        options["MODEL.RESNETS.DEPTH"] = ours.depth
        for key in ours.overridden:
            options[key] = _read_override(config, key)
        if min_score is not None:
            options["MODEL.ROI_HEADS.SCORE_THRESH_TEST"] = float(min_score)
        elif "MODEL.ROI_HEADS.SCORE_THRESH_TEST" not in ours.overridden:
            options["MODEL.ROI_HEADS.SCORE_THRESH_TEST"] = DEFAULT_MIN_SCORE
        options["INPUT.MIN_SIZE_TEST"] = int(densepose_size)
        options["MODEL.WEIGHTS"] = str(self.weights_path)
        options["MODEL.DEVICE"] = str(device)
        flat: list[Any] = []
        for k, v in options.items():
            flat += [k, v]
        cfg.merge_from_list(flat)
        cfg.freeze()
        self._cfg_text = cfg.dump()
        self._predictor = DefaultPredictor(cfg)
        self._converter = converter
        self.densepose_size = int(densepose_size)
        self.arch = R101 if ours.depth == 101 else R50

    def cache_key(self) -> str:
        from densepose_adapter.torchvision_backend import file_digest

        payload = {"backend": self.name, "weights": file_digest(self.weights_path), "cfg": self._cfg_text}
        return "detectron2-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]

    def predict(self, images_bgr: Sequence[np.ndarray]) -> list[DensePoseResult]:
        import torch

        out = []
        for image in images_bgr:
            with torch.no_grad():
                inst = self._predictor(np.ascontiguousarray(image))["instances"].to("cpu")
            h, w = image.shape[:2]
            boxes = inst.pred_boxes.tensor.numpy().astype(np.float32).reshape(-1, 4)
            scores = inst.scores.numpy().astype(np.float32).reshape(-1)
            instances = []
            if inst.has("pred_densepose"):
                for k in range(len(inst)):
                    chart = self._converter.convert(inst.pred_densepose[k], inst.pred_boxes[k])
                    instances.append(DensePoseInstance(box=boxes[k], score=float(scores[k]),
                                                       labels=chart.labels.numpy().astype(np.uint8),
                                                       uv=chart.uv.numpy().astype(np.float32)))
            iuv = composite_iuv((h, w), boxes, scores, [i.labels for i in instances],
                                [i.uv for i in instances])
            out.append(DensePoseResult(image_hw=(h, w), boxes=boxes, scores=scores, iuv=iuv,
                                       instances=instances))
        return out


def _read_override(config: str | os.PathLike | None, key: str) -> Any:
    with open(config) as f:
        data = json.load(f)
    overrides = data.get("overrides", data)
    return overrides[key]


#: Name used by the video pipeline (``retarget.pipeline.job``).
Detectron2DensePose = Detectron2DensePoseBackend
