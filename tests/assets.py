"""Files tests need that a fresh clone does not have, generated on first use (a few hundred KB).

- :func:`coordinpaint_dir`: ``inpainter.pth`` and ``refiner.pth`` with random weights, written with the
  official key names and layout (``gateK.*`` plus the ``sequence.<i>.*`` duplicates; spectral-norm
  ``weight_bar``/``weight_u``/``weight_v``), at the small widths of the reference fixture (ngf 8 / 16).
- :func:`densepose_dir`: ``model_tiny.pkl`` (a detectron2-format DensePose R-CNN pickle, random weights,
  official key names), ``meta.json`` (its config), tuned so that it reports a person (score ≈ 0.95) on
  any frame, and ``image.png`` (the example photo).

Both are deterministic (fixed seeds) and written once per test session into a temporary folder.
"""

from __future__ import annotations

import atexit
import functools
import json
import pickle
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

#: The official GatedHourglass registers gates 1-15 a second time in ``sequence``; indices 12 and 14
#: of that Sequential are the (parameter-free) upsampling layers.
_SEQUENCE_INDEX = {gate: gate - 1 for gate in range(1, 13)} | {13: 13, 14: 15, 15: 16}
_INPAINTER_PART = {"feature_conv": "conv_f", "gate_conv": "conv_m", "norm": "norm"}
_REFINER_GROUP = {"source_encoder": "source_enc", "target_encoder": "target_enc", "residual": "res",
                  "decoder": "dec"}

#: Small DensePose R-CNN (same option names as the reference fixture's meta.json).
DENSEPOSE_OVERRIDES = {
    "MODEL.RESNETS.STEM_OUT_CHANNELS": 16,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 32,
    "MODEL.RESNETS.WIDTH_PER_GROUP": 8,
    "MODEL.FPN.OUT_CHANNELS": 32,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 64,
    "MODEL.ROI_DENSEPOSE_HEAD.CONV_HEAD_DIM": 32,
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_CONV_DIMS": 16,
    "MODEL.ROI_DENSEPOSE_HEAD.DECODER_NUM_CLASSES": 32,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.8,
    "TEST.DETECTIONS_PER_IMAGE": 1,
}


@functools.cache
def _root() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="retarget-test-assets-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def official_inpainter_state(model) -> dict[str, torch.Tensor]:
    """Our :class:`~retarget.models.Inpainter` state dict under the official GatedHourglass names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "gates":
            gate, part, rest = int(parts[1]) + 1, _INPAINTER_PART[parts[2]], ".".join(parts[3:])
            value = value.clone()
            out[f"gate{gate}.{part}.{rest}"] = value  # the same tensor twice, as the official file
            out[f"sequence.{_SEQUENCE_INDEX[gate]}.{part}.{rest}"] = value
        elif parts[0] == "final":
            out["final.conv1." + ".".join(parts[1:])] = value.clone()
        else:
            raise AssertionError(f"unexpected inpainter key {key}")
    return out


def official_refiner_state(model, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Our :class:`~retarget.models.Refiner` state dict under the official spectral-norm names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "final":
            prefix, field = "final.conv1.module.", parts[1]
        else:
            assert parts[2] == "conv", key
            prefix, field = f"{_REFINER_GROUP[parts[0]]}{int(parts[1]) + 1}.conv.module.", parts[3]
        if field == "bias":
            out[prefix + "bias"] = value.clone()
            continue
        u = torch.randn(value.shape[0], generator=generator)
        v = torch.randn(value[0].numel(), generator=generator)
        out[prefix + "weight_bar"] = value.clone()
        out[prefix + "weight_u"] = u / u.norm()
        out[prefix + "weight_v"] = v / v.norm()
    return out


@functools.cache
def coordinpaint_dir() -> Path:
    """A folder with a tiny random-weight ``inpainter.pth`` and ``refiner.pth`` in the official format."""
    from retarget.models import Inpainter, Refiner

    folder = _root() / "coordinpaint"
    folder.mkdir()
    torch.manual_seed(1)
    inpainter = Inpainter(ngf=8, in_channels=5, out_channels=2)
    refiner = Refiner(in_source=8, in_target=10, out_channels=3, ngf=16)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in inpainter.modules():  # non-trivial BatchNorm statistics, as in a trained file
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
    torch.save(official_inpainter_state(inpainter), folder / "inpainter.pth")
    torch.save(official_refiner_state(refiner, generator), folder / "refiner.pth")
    return folder


@functools.cache
def densepose_dir() -> Path:
    """A folder with ``model_tiny.pkl`` (detectron2 format, official names) and its ``meta.json``.

    Random weights, except that the box classifier and the coarse segmentation are biased so that the
    best proposal is always a confident person whose box is mostly body: the model then reports one
    person on every frame, which is what video tests need from a DensePose model.
    """
    import cv2

    from densepose_adapter.rcnn import DensePoseRCNN, load_config
    from tests.conftest import EXAMPLE_PHOTO

    folder = _root() / "densepose"
    folder.mkdir()
    meta = {"config": "densepose_rcnn_R_50_FPN_s1x", "overrides": DENSEPOSE_OVERRIDES,
            "notes": "generated by tests/assets.py: random weights, official key names"}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    cv2.imwrite(str(folder / "image.png"), cv2.imread(str(EXAMPLE_PHOTO), cv2.IMREAD_COLOR))
    torch.manual_seed(3)
    model = DensePoseRCNN(load_config(folder / "meta.json"))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(4)
    for key, value in state.items():
        if key.endswith("running_var"):
            value.uniform_(0.5, 1.5, generator=generator)
        elif key.endswith("running_mean"):
            value.uniform_(-0.1, 0.1, generator=generator)
    bias_person(state)
    arrays = {k: v.numpy() for k, v in state.items()}
    with open(folder / "model_tiny.pkl", "wb") as handle:
        pickle.dump({"model": arrays, "__author__": "tests/assets.py"}, handle, protocol=2)
    return folder


def bias_person(state: dict[str, torch.Tensor]) -> None:
    """Make every detection a confident person covered by body parts (in place)."""
    for key, value in state.items():
        if key == "roi_heads.box_predictor.cls_score.bias":  # [person, background]
            value[:] = torch.tensor([1.5, -1.5])  # score ≈ 0.95
        elif key.endswith("ann_index_lowres.bias"):  # coarse segmentation [background, body]
            value[:] = torch.tensor([-8.0, 8.0])
        elif key in ("roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.bbox_pred.weight") \
                or key.endswith("ann_index_lowres.weight"):
            value.mul_(0.01)  # boxes stay near the proposals, and the biases decide


def densepose_args(size: int = 64) -> list[str]:
    """Command-line options that run the real DensePose port with :func:`densepose_dir`'s model."""
    folder = densepose_dir()
    return ["--densepose-weights", str(folder / "model_tiny.pkl"), "--densepose-config", str(folder / "meta.json"),
            "--densepose-size", str(size)]



@functools.cache
def uv_pair_dir() -> Path:
    """``source.png`` (the example photo), ``source_uv.npy`` (its UV map, from its IUV render) and
    ``target_uv.npy`` (that map mirrored: a second pose) — inputs for ``retarget image``."""
    import cv2

    from retarget.io.iuv import read_iuv_png
    from retarget.uvmap import iuv_to_uv
    from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO

    folder = _root() / "uv_pair"
    folder.mkdir()
    cv2.imwrite(str(folder / "source.png"), cv2.imread(str(EXAMPLE_PHOTO), cv2.IMREAD_COLOR))
    uv = iuv_to_uv(read_iuv_png(EXAMPLE_IUV), table="training").astype(np.float32)
    np.save(folder / "source_uv.npy", uv)
    np.save(folder / "target_uv.npy", np.ascontiguousarray(uv[:, ::-1]))
    return folder
