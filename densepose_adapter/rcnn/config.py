"""Model configuration of the DensePose R-CNN port.

:class:`DensePoseRCNNConfig` holds every number the inference path depends on (widths, depths,
anchors, thresholds, pooler types, ...). Its defaults are those of DensePose's
``densepose_rcnn_R_50_FPN_s1x`` config (detectron2 defaults + ``Base-DensePose-RCNN-FPN.yaml`` +
DensePose's ``add_densepose_config``). Tiny test models use the same code with other widths.

detectron2 option names (``MODEL.RESNETS.DEPTH`` ...) map onto fields through :data:`OPTION_FIELDS`;
:func:`config_from_overrides` applies such a dict on top of a preset, and :func:`load_config` reads
a JSON file like the parity fixture's ``meta.json`` (``{"config": NAME, "overrides": {...}}``).
Options that only matter for training are accepted and ignored; options that would change inference
in a way this port does not implement are refused with a clear message.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

R50 = "densepose_rcnn_R_50_FPN_s1x"
R101 = "densepose_rcnn_R_101_FPN_s1x"


class ConfigError(ValueError):
    """A configuration value this port cannot honour (unknown option, unsupported variant)."""


@dataclass
class DensePoseRCNNConfig:
    """Everything the inference path needs; defaults = ``densepose_rcnn_R_50_FPN_s1x``."""

    name: str = R50
    # input (INPUT.*, MODEL.PIXEL_*)
    min_size_test: int = 800
    max_size_test: int = 1333
    pixel_mean: tuple[float, float, float] = (103.530, 116.280, 123.675)
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # ResNet (MODEL.RESNETS.*)
    depth: int = 50
    num_groups: int = 1
    width_per_group: int = 64
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    stride_in_1x1: bool = True
    res5_dilation: int = 1
    # FPN (MODEL.FPN.*)
    fpn_out_channels: int = 256
    fpn_fuse_type: str = "sum"
    # anchors (MODEL.ANCHOR_GENERATOR.*)
    anchor_sizes: tuple[tuple[float, ...], ...] = ((32,), (64,), (128,), (256,), (512,))
    anchor_aspect_ratios: tuple[tuple[float, ...], ...] = ((0.5, 1.0, 2.0),)
    anchor_offset: float = 0.0
    # RPN (MODEL.RPN.*, MODEL.PROPOSAL_GENERATOR.MIN_SIZE)
    rpn_pre_nms_topk_test: int = 1000
    rpn_post_nms_topk_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_bbox_reg_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    rpn_min_box_size: float = 0.0
    # ROI heads (MODEL.ROI_HEADS.*, TEST.DETECTIONS_PER_IMAGE)
    num_classes: int = 1
    score_thresh_test: float = 0.05
    nms_thresh_test: float = 0.5
    detections_per_image: int = 100
    # box head (MODEL.ROI_BOX_HEAD.*)
    box_num_fc: int = 2
    box_fc_dim: int = 1024
    box_pooler_resolution: int = 7
    box_pooler_sampling_ratio: int = 2
    box_pooler_type: str = "ROIAlign"
    box_bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    box_cls_agnostic_bbox_reg: bool = False
    # DensePose head (MODEL.ROI_DENSEPOSE_HEAD.*)
    dp_num_stacked_convs: int = 8
    dp_conv_head_dim: int = 512
    dp_conv_head_kernel: int = 3
    dp_deconv_kernel: int = 4
    dp_up_scale: int = 2
    dp_num_patches: int = 24
    dp_num_coarse_segm_channels: int = 2
    # Base-DensePose-RCNN-FPN.yaml sets ROIAlign here (DensePose's own default would be ROIAlignV2);
    # the official outputs of the parity fixture confirm aligned=False.
    dp_pooler_type: str = "ROIAlign"
    dp_pooler_resolution: int = 28
    dp_pooler_sampling_ratio: int = 2
    dp_decoder_on: bool = True
    dp_decoder_num_classes: int = 256
    dp_decoder_conv_dims: int = 256
    dp_decoder_common_stride: int = 4
    # fixed by the architecture (FPN on res2..res5, RPN on p2..p6, ROI heads on p2..p5)
    box_scale_clamp: float = field(default=math.log(1000.0 / 16), repr=False)
    size_divisibility: int = 32
    # detectron2 options set explicitly by overrides (informational; not part of equality)
    overridden: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def num_blocks(self) -> tuple[int, int, int, int]:
        """Bottleneck blocks per stage res2..res5."""
        return _DEPTH_BLOCKS[self.depth]

    @property
    def anchors_per_location(self) -> int:
        sizes = {len(s) for s in self.anchor_sizes}
        ratios = {len(r) for r in self.anchor_aspect_ratios}
        if len(sizes) != 1 or len(ratios) != 1:
            raise ConfigError("the RPN head needs the same number of anchors on every level")
        return sizes.pop() * ratios.pop()

    def replace(self, **changes: Any) -> DensePoseRCNNConfig:
        """A copy with some fields changed (validated)."""
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values the port does not implement."""
        if self.depth not in _DEPTH_BLOCKS:
            raise ConfigError(f"MODEL.RESNETS.DEPTH {self.depth} is not supported (50 or 101)")
        if self.res5_dilation != 1:
            raise ConfigError("MODEL.RESNETS.RES5_DILATION must be 1 with an FPN backbone")
        if self.fpn_fuse_type not in ("sum", "avg"):
            raise ConfigError(f"MODEL.FPN.FUSE_TYPE {self.fpn_fuse_type!r} is not 'sum' or 'avg'")
        for name in ("box_pooler_type", "dp_pooler_type"):
            if getattr(self, name) not in _POOLER_ALIGNED:
                raise ConfigError(f"pooler type {getattr(self, name)!r} is not supported "
                                  "(ROIAlign or ROIAlignV2)")
        if len(self.anchor_sizes) not in (1, 5) or len(self.anchor_aspect_ratios) not in (1, 5):
            raise ConfigError("ANCHOR_GENERATOR.SIZES / ASPECT_RATIOS need 1 or 5 (p2..p6) entries")
        _ = self.anchors_per_location
        if self.box_num_fc < 1:
            raise ConfigError("MODEL.ROI_BOX_HEAD.NUM_FC must be >= 1 (conv box heads are not ported)")
        if self.dp_deconv_kernel % 2:
            raise ConfigError("MODEL.ROI_DENSEPOSE_HEAD.DECONV_KERNEL must be even")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (for cache keys and logs)."""
        d = json.loads(json.dumps(dataclasses.asdict(self)))
        d.pop("overridden", None)
        return d


_DEPTH_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_POOLER_ALIGNED = {"ROIAlign": False, "ROIAlignV2": True}


def pooler_aligned(pooler_type: str) -> bool:
    """``ROIAlign`` → ``aligned=False`` (legacy half-pixel shift); ``ROIAlignV2`` → ``aligned=True``."""
    return _POOLER_ALIGNED[pooler_type]


def _tuple(x: Any) -> tuple:
    return tuple(x)


def _tuple2(x: Any) -> tuple:
    return tuple(tuple(v) for v in x)


def _bool(x: Any) -> bool:
    if isinstance(x, str):
        return x.strip().lower() in ("1", "true", "yes")
    return bool(x)


# detectron2 option → (field, converter)
OPTION_FIELDS: dict[str, tuple[str, Any]] = {
    "INPUT.MIN_SIZE_TEST": ("min_size_test", int),
    "INPUT.MAX_SIZE_TEST": ("max_size_test", int),
    "MODEL.PIXEL_MEAN": ("pixel_mean", _tuple),
    "MODEL.PIXEL_STD": ("pixel_std", _tuple),
    "MODEL.RESNETS.DEPTH": ("depth", int),
    "MODEL.RESNETS.NUM_GROUPS": ("num_groups", int),
    "MODEL.RESNETS.WIDTH_PER_GROUP": ("width_per_group", int),
    "MODEL.RESNETS.STEM_OUT_CHANNELS": ("stem_out_channels", int),
    "MODEL.RESNETS.RES2_OUT_CHANNELS": ("res2_out_channels", int),
    "MODEL.RESNETS.STRIDE_IN_1X1": ("stride_in_1x1", _bool),
    "MODEL.RESNETS.RES5_DILATION": ("res5_dilation", int),
    "MODEL.FPN.OUT_CHANNELS": ("fpn_out_channels", int),
    "MODEL.FPN.FUSE_TYPE": ("fpn_fuse_type", str),
    "MODEL.ANCHOR_GENERATOR.SIZES": ("anchor_sizes", _tuple2),
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": ("anchor_aspect_ratios", _tuple2),
    "MODEL.ANCHOR_GENERATOR.OFFSET": ("anchor_offset", float),
    "MODEL.RPN.PRE_NMS_TOPK_TEST": ("rpn_pre_nms_topk_test", int),
    "MODEL.RPN.POST_NMS_TOPK_TEST": ("rpn_post_nms_topk_test", int),
    "MODEL.RPN.NMS_THRESH": ("rpn_nms_thresh", float),
    "MODEL.RPN.BBOX_REG_WEIGHTS": ("rpn_bbox_reg_weights", _tuple),
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": ("rpn_min_box_size", float),
    "MODEL.ROI_HEADS.NUM_CLASSES": ("num_classes", int),
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": ("score_thresh_test", float),
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": ("nms_thresh_test", float),
    "TEST.DETECTIONS_PER_IMAGE": ("detections_per_image", int),
    "MODEL.ROI_BOX_HEAD.NUM_FC": ("box_num_fc", int),
    "MODEL.ROI_BOX_HEAD.FC_DIM": ("box_fc_dim", int),
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": ("box_pooler_resolution", int),
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": ("box_pooler_sampling_ratio", int),
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": ("box_pooler_type", str),
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": ("box_bbox_reg_weights", _tuple),
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": ("box_cls_agnostic_bbox_reg", _bool),
    "MODEL.ROI_DENSEPOSE_HEAD.NUM_STACKED_CONVS": ("dp_num_stacked_convs", int),
    "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM": ("dp_conv_head_dim", int),
    "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_KERNEL": ("dp_conv_head_kernel", int),
    "MODEL.ROI_DENSEPOSE_HEAD.DECONV_KERNEL": ("dp_deconv_kernel", int),
    "MODEL.ROI_DENSEPOSE_HEAD.UP_SCALE": ("dp_up_scale", int),
    "MODEL.ROI_DENSEPOSE_HEAD.NUM_PATCHES": ("dp_num_patches", int),
    "MODEL.ROI_DENSEPOSE_HEAD.NUM_COARSE_SEGM_CHANNELS": ("dp_num_coarse_segm_channels", int),
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_TYPE": ("dp_pooler_type", str),
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_RESOLUTION": ("dp_pooler_resolution", int),
    "MODEL.ROI_DENSEPOSE_HEAD.POOLER_SAMPLING_RATIO": ("dp_pooler_sampling_ratio", int),
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_ON": ("dp_decoder_on", _bool),
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_NUM_CLASSES": ("dp_decoder_num_classes", int),
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_CONV_DIMS": ("dp_decoder_conv_dims", int),
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_COMMON_STRIDE": ("dp_decoder_common_stride", int),
}

# Options whose only accepted value is the one this port implements.
FIXED_OPTIONS: dict[str, Any] = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
    "MODEL.RESNETS.NORM": "FrozenBN",
    "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": [False, False, False, False],
    "MODEL.FPN.IN_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.NORM": "",
    "MODEL.ANCHOR_GENERATOR.NAME": "DefaultAnchorGenerator",
    "MODEL.PROPOSAL_GENERATOR.NAME": "RPN",
    "MODEL.RPN.HEAD_NAME": "StandardRPNHead",
    "MODEL.RPN.IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.RPN.CONV_DIMS": [-1],
    "MODEL.ROI_HEADS.NAME": "DensePoseROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES": ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_CONV": 0,
    "MODEL.ROI_BOX_HEAD.NORM": "",
    "MODEL.DENSEPOSE_ON": True,
    "MODEL.MASK_ON": False,
    "MODEL.KEYPOINT_ON": False,
    "MODEL.LOAD_PROPOSALS": False,
    "MODEL.ROI_DENSEPOSE_HEAD.NAME": "DensePoseV1ConvXHead",
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_NORM": "",
    "MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.ENABLED": False,
    "MODEL.ROI_DENSEPOSE_HEAD.SEGM_CONFIDENCE.ENABLED": False,
    "INPUT.FORMAT": "BGR",
    "TEST.AUG.ENABLED": False,
}

# Options (or prefixes) that do not influence inference; accepted and ignored.
IGNORED_PREFIXES = (
    "SOLVER.", "DATASETS.", "DATALOADER.", "OUTPUT_DIR", "SEED", "VERSION", "CUDNN_BENCHMARK",
    "VIS_PERIOD", "GLOBAL.", "TEST.EVAL_PERIOD", "TEST.EXPECTED_RESULTS", "TEST.PRECISE_BN",
    "TEST.KEYPOINT_OKS_SIGMAS", "MODEL.WEIGHTS", "MODEL.DEVICE", "MODEL.BACKBONE.FREEZE_AT",
    "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN", "INPUT.RANDOM_FLIP", "INPUT.CROP",
    "INPUT.MASK_FORMAT", "INPUT.ROTATION_ANGLES", "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "MODEL.RPN.BOUNDARY_THRESH", "MODEL.RPN.IOU_",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "MODEL.RPN.POSITIVE_FRACTION", "MODEL.RPN.BBOX_REG_LOSS",
    "MODEL.RPN.SMOOTH_L1_BETA", "MODEL.RPN.LOSS_WEIGHT", "MODEL.ROI_HEADS.IOU_",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "MODEL.ROI_HEADS.POSITIVE_FRACTION",
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS",
    "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES",
    "MODEL.ROI_DENSEPOSE_HEAD.FG_IOU_THRESHOLD", "MODEL.ROI_DENSEPOSE_HEAD.INDEX_WEIGHTS",
    "MODEL.ROI_DENSEPOSE_HEAD.PART_WEIGHTS", "MODEL.ROI_DENSEPOSE_HEAD.POINT_REGRESSION_WEIGHTS",
    "MODEL.ROI_DENSEPOSE_HEAD.COARSE_SEGM_TRAINED_BY_MASKS", "MODEL.ROI_DENSEPOSE_HEAD.HEATMAP_SIZE",
    "MODEL.ROI_DENSEPOSE_HEAD.LOSS_NAME", "MODEL.ROI_DENSEPOSE_HEAD.DEEPLAB",
    "MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.EPSILON", "MODEL.ROI_DENSEPOSE_HEAD.UV_CONFIDENCE.TYPE",
    "MODEL.ROI_DENSEPOSE_HEAD.SEGM_CONFIDENCE.EPSILON", "MODEL.ANCHOR_GENERATOR.ANGLES",
    "MODEL.ROI_DENSEPOSE_HEAD.PREDICTOR_NAME",
)


def preset(name: str) -> DensePoseRCNNConfig:
    """``r50`` / ``r101`` (or the full DensePose config names) → the official s1x configuration."""
    key = name.strip().lower()
    if key in ("r50", "r_50", R50.lower(), "densepose_rcnn_r_50_fpn_s1x.yaml"):
        return DensePoseRCNNConfig()
    if key in ("r101", "r_101", R101.lower(), "densepose_rcnn_r_101_fpn_s1x.yaml"):
        return DensePoseRCNNConfig(name=R101, depth=101)
    raise ConfigError(f"unknown DensePose config {name!r} (r50, r101 or a JSON file)")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(b, str):
        return str(a) == b
    if isinstance(b, bool):
        return _bool(a) == b
    return a == b


def config_from_overrides(
    overrides: dict[str, Any] | None = None, base: str | DensePoseRCNNConfig = R50
) -> DensePoseRCNNConfig:
    """Apply detectron2-named ``overrides`` on top of ``base`` (a preset name or a config).

    Raises:
        ConfigError: an option is unknown or asks for a variant the port does not implement.
    """
    cfg = preset(base) if isinstance(base, str) else dataclasses.replace(base)
    changes: dict[str, Any] = {}
    for option, value in (overrides or {}).items():
        if option in OPTION_FIELDS:
            fname, conv = OPTION_FIELDS[option]
            try:
                changes[fname] = conv(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{option}: cannot use value {value!r}") from None
        elif option in FIXED_OPTIONS:
            if not _same(value, FIXED_OPTIONS[option]):
                raise ConfigError(
                    f"{option} = {value!r} is not supported by the torchvision port "
                    f"(only {FIXED_OPTIONS[option]!r})")
        elif option.startswith(IGNORED_PREFIXES):
            continue
        else:
            raise ConfigError(f"unknown or unsupported detectron2 option {option!r}")
    explicit = tuple(sorted(set(cfg.overridden) | set((overrides or {}).keys())))
    cfg = dataclasses.replace(cfg, overridden=explicit, **changes)
    cfg.validate()
    return cfg


def load_config(source: str | Path | None = None) -> DensePoseRCNNConfig:
    """A preset name (``r50``/``r101``), a JSON file, or ``None`` (R50 s1x).

    The JSON file has the layout of the parity fixture's ``meta.json``:
    ``{"config": "densepose_rcnn_R_50_FPN_s1x", "overrides": {"MODEL.FPN.OUT_CHANNELS": 32, ...}}``
    (``config`` optional, default R50; other keys ignored). A JSON object without ``overrides`` is
    read as the overrides themselves.
    """
    if source is None:
        return DensePoseRCNNConfig()
    text = str(source)
    if not text.lower().endswith(".json") and not Path(text).is_file():
        return preset(text)
    path = Path(text)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    if "overrides" in data:
        overrides = data["overrides"] or {}
        base = data.get("config", R50)
    else:
        overrides, base = data, R50
    if not isinstance(overrides, dict):
        raise ConfigError(f"{path}: 'overrides' must be an object")
    return config_from_overrides(overrides, base=base)
