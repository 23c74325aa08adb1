"""DensePose R-CNN (IUV chart head) on torchvision building blocks — no detectron2 needed.

Loads the official detectron2 model-zoo ``.pkl`` files unchanged (restricted unpickler). Supported
architectures: ``densepose_rcnn_R_50_FPN_s1x`` (default) and ``densepose_rcnn_R_101_FPN_s1x``, plus
width/threshold overrides with detectron2 option names (:mod:`~densepose_adapter.rcnn.config`).

Typical use::

    from densepose_adapter.rcnn import build_model
    model = build_model("model_final_162be9.pkl", "r50")
    results = model.predict([image_bgr])          # list[DensePoseResult]
"""

from __future__ import annotations

from pathlib import Path

import torch

from densepose_adapter.rcnn.config import (
    R50,
    R101,
    ConfigError,
    DensePoseRCNNConfig,
    config_from_overrides,
    load_config,
    preset,
)
from densepose_adapter.rcnn.convert import (
    convert_detectron2_densepose_state,
    load_detectron2_state,
    read_checkpoint,
)
from densepose_adapter.rcnn.model import DensePoseRCNN, resize_bgr, resized_shape, stage_to_result


def build_model(weights: str | Path | None = None, config: str | Path | DensePoseRCNNConfig | None = None,
                device: str | torch.device = "cpu", fuse_bn: bool = True) -> DensePoseRCNN:
    """Build the model for ``config`` (preset name, JSON path or config object; default R50 s1x) and
    load ``weights`` (detectron2 ``.pkl``) strictly. ``fuse_bn`` folds frozen BN into convs after
    loading (faster; outputs equal to ~1e-6)."""
    cfg = config if isinstance(config, DensePoseRCNNConfig) else load_config(config)
    model = DensePoseRCNN(cfg)
    if weights is not None:
        load_detectron2_state(model, read_checkpoint(weights), source=str(weights))
        if fuse_bn:
            model.fuse_frozen_bn()
    return model.to(device).eval()


def load(path: str | Path, config: str | Path | DensePoseRCNNConfig | None = None) -> DensePoseRCNN:
    """Weights-manifest loader entry point: the network for the checkpoint at ``path``.

    Without ``config`` the depth is read from the file (ResNet-101 has ``res4.6`` … ``res4.22``), so
    both official files load with their s1x config."""
    if config is not None:
        return build_model(path, config)
    state = read_checkpoint(path)
    cfg = preset("r101" if any(".res4.6." in k for k in state) else "r50")
    model = DensePoseRCNN(cfg)
    load_detectron2_state(model, state, source=str(path))
    return model.eval()


__all__ = [
    "R50", "R101", "ConfigError", "DensePoseRCNN", "DensePoseRCNNConfig", "build_model",
    "config_from_overrides", "convert_detectron2_densepose_state", "load", "load_config",
    "load_detectron2_state", "preset", "read_checkpoint", "resize_bgr", "resized_shape",
    "stage_to_result",
]
