"""``torchvision`` DensePose backend: our port of DensePose R-CNN (no detectron2) with official weights.

Usage::

    backend = TorchvisionDensePoseBackend(weights="model_final_162be9.pkl", config="r50",
                                          min_score=0.8, densepose_size=800)
    results = backend.predict([frame_bgr, ...])        # list[DensePoseResult]

Speed options (CPU inference dominates a video run):

- ``densepose_size``: shortest side the frame is resized to (official: 800; 512 is ~2.4× cheaper).
- ``track=True``: *tracked-region mode* for single-performer videos. Frames must then be given in
  video order. After a frame with a detection, the next frame is processed only on a crop around the
  previous most-confident box (box enlarged by ``track_margin`` × its longer side on every side, at
  the same scale as the full frame would be), and boxes/charts are shifted back into the frame. The
  full frame is used again when the crop finds nobody or the best box touches a crop edge that is
  not a frame edge (the person may leave the crop). :meth:`reset_tracking` forgets the previous box
  (call it between videos). Results differ slightly from full-frame inference (other resampling
  grid, less context) and only the tracked person is guaranteed; other people may be cut.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from densepose_adapter.openvino_backbone import ENGINES
from densepose_adapter.rcnn import DensePoseRCNN, build_model, load_config, resized_shape, stage_to_result
from densepose_adapter.rcnn.config import ConfigError, DensePoseRCNNConfig
from densepose_adapter.types import DensePoseResult
from densepose_adapter.errors import InputError, UsageError, WeightsError, WeightsNotGiven
from densepose_adapter.hashing import cached_file_sha256

DEFAULT_MIN_SCORE = 0.8  # DensePose's apply_net default (MODEL.ROI_HEADS.SCORE_THRESH_TEST)
_VERSION = "1"  # bump when the outputs of this backend change for the same inputs and settings


def resolve_weights(weights: str | os.PathLike | None, cfg: DensePoseRCNNConfig) -> Path:
    """``weights`` as a path, checked to exist.

    This package never looks for installed weights: an application that installs them catches
    :class:`WeightsNotGiven` and builds the backend again with the file for ``depth``
    (``retarget`` does so in :func:`retarget.weights.resolve.open_densepose_backend`).

    Raises:
        WeightsError: ``weights`` does not exist.
        WeightsNotGiven: ``weights`` is ``None``.
    """
    if weights is None:
        raise WeightsNotGiven(f"no DensePose weights given: pass the detectron2 .pkl of the r{cfg.depth} config "
                              "(weights=...)", cfg.depth)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"{path}: DensePose weights file not found")
    return path


file_digest = cached_file_sha256  # sha256 of a file, memoised on (path, size, mtime)


class TorchvisionDensePoseBackend:
    """The ``torchvision`` backend (implements :class:`densepose_adapter.types.DensePoseBackend`)."""

    name = "torchvision"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        config: str | os.PathLike | DensePoseRCNNConfig | None = None,
        min_score: float | None = None,
        densepose_size: int = 800,
        device: str | torch.device = "cpu",
        track: bool = False,
        track_margin: float = 0.25,
        batch_size: int | None = None,
        fuse_bn: bool = False,
        model: DensePoseRCNN | None = None,
        engine: str = "torch",
        engine_cache: str | os.PathLike | None = None,
        quiet: bool = False,
    ):
        """
        Args:
            weights: detectron2 ``.pkl`` (or a torch ``.pth`` state dict); required unless ``model`` is given.
            config: ``"r50"`` (default), ``"r101"``, a JSON file (``meta.json`` layout) or a config.
            min_score: detection score threshold (``SCORE_THRESH_TEST``). ``None``: the JSON config's
                explicit ``MODEL.ROI_HEADS.SCORE_THRESH_TEST`` if it sets one, else 0.8.
            densepose_size: shortest side of the network input (``MIN_SIZE_TEST``; 800 official).
            device: torch device.
            track: tracked-region mode (see module docstring).
            track_margin: crop margin around the previous box, as a fraction of its longer side.
            batch_size: frames per forward pass (default 1 on CPU, 4 on GPU).
            fuse_bn: fold frozen BN into convs (a few % faster, ~1e-6 numeric differences).
            model: an already built model (tests); ``weights`` is then ignored.
            engine: ``torch`` or ``openvino`` (backbone + FPN converted once and run by OpenVINO, CPU only;
                see :mod:`densepose_adapter.openvino_backbone`).
            engine_cache: folder of converted models (default ``$XDG_CACHE_HOME/densepose_adapter/engines``).
            quiet: no progress message while converting.
        """
        try:
            cfg = config if isinstance(config, DensePoseRCNNConfig) else load_config(config)
            if min_score is not None:
                cfg = cfg.replace(score_thresh_test=float(min_score))
            elif "MODEL.ROI_HEADS.SCORE_THRESH_TEST" not in cfg.overridden:
                cfg = cfg.replace(score_thresh_test=DEFAULT_MIN_SCORE)
        except ConfigError as exc:
            raise UsageError(f"DensePose config: {exc}") from None
        if not 0.0 <= cfg.score_thresh_test < 1.0:
            raise UsageError(f"DensePose detection score threshold must be in [0, 1), got {cfg.score_thresh_test}")
        if engine not in ENGINES:
            raise UsageError(f"DensePose engine {engine!r}: expected {' or '.join(ENGINES)}")
        if engine == "openvino" and torch.device(device).type != "cpu":
            raise UsageError(f"the OpenVINO DensePose engine runs on the CPU, not {device}; use the torch engine")
        if int(densepose_size) < 32:
            raise UsageError(f"--densepose-size must be >= 32, got {densepose_size}")
        self.cfg = cfg
        self.densepose_size = int(densepose_size)
        self.track = bool(track)
        self.track_margin = float(track_margin)
        self.device = torch.device(device)
        self.batch_size = batch_size or (1 if self.device.type == "cpu" else 4)
        if model is not None:
            self.weights_path = None
            self._weights_digest = "in-memory:" + hashlib.sha256(
                json.dumps(model.cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
            model.roi_heads.cfg = cfg
            model.proposal_generator.cfg = cfg
            model.cfg = cfg
            self.model = model.to(self.device).eval()
        else:
            self.weights_path = resolve_weights(weights, cfg)
            self._weights_digest = None
            self.model = build_model(self.weights_path, cfg, device=self.device, fuse_bn=fuse_bn)
        self.fuse_bn = bool(fuse_bn)
        self.engine = engine
        if engine == "openvino":
            import copy

            from densepose_adapter.openvino_backbone import OpenVINOBackbone

            if model is not None:  # the backbone is swapped below: leave the caller's model as it was
                self.model = copy.deepcopy(self.model)

            root = Path(engine_cache) if engine_cache else Path(
                os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "densepose_adapter" / "engines"
            payload = {"config": self.cfg.to_dict(), "fuse_bn": self.fuse_bn}
            self.model.backbone = OpenVINOBackbone(self.model.backbone, root, payload, quiet=quiet)
        self._prev_box: np.ndarray | None = None

    # ------------------------------------------------------------------------------------------
    def cache_key(self) -> str:
        if self._weights_digest is None:
            self._weights_digest = file_digest(self.weights_path)
        payload = {
            "backend": self.name, "version": _VERSION, "weights": self._weights_digest,
            "config": self.cfg.to_dict(), "size": self.densepose_size, "fuse_bn": self.fuse_bn,
            "track": [self.track, self.track_margin] if self.track else False,
        }
        if self.engine != "torch":  # results differ by float rounding; torch keys stay as they were
            payload["engine"] = self.engine
        return "torchvision-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]

    def reset_tracking(self) -> None:
        """Forget the previous frame's box (start of a new video)."""
        self._prev_box = None

    def observe(self, result: DensePoseResult) -> None:
        """Continue tracking from a frame's result computed earlier (a cache hit), as if computed now.

        A resumed run then gives the next frames exactly the crops an uninterrupted run would.
        """
        if self.track:
            self._prev_box = result.boxes[int(np.argmax(result.scores))].copy() if len(result.scores) else None

    def predict(self, images_bgr: Sequence[np.ndarray]) -> list[DensePoseResult]:
        images = [_check_image(im, i) for i, im in enumerate(images_bgr)]
        if not images:
            return []
        if not self.track:
            out: list[DensePoseResult] = []
            for s in range(0, len(images), self.batch_size):
                out.extend(self.model.predict(images[s:s + self.batch_size], self.densepose_size))
            return out
        return [self._predict_tracked(im) for im in images]

    # ------------------------------------------------------------------------------------------
    def _full_frame(self, image: np.ndarray) -> DensePoseResult:
        return self.model.predict([image], self.densepose_size)[0]

    def _predict_tracked(self, image: np.ndarray) -> DensePoseResult:
        H, W = image.shape[:2]
        result = None
        if self._prev_box is not None:
            x0, y0, x1, y1 = crop_around(self._prev_box, (H, W), self.track_margin)
            full_h, full_w = resized_shape(H, W, self.densepose_size, self.cfg.max_size_test)
            sy, sx = full_h / H, full_w / W
            ch, cw = y1 - y0, x1 - x0
            rh, rw = max(1, int(ch * sy + 0.5)), max(1, int(cw * sx + 0.5))
            crop = np.ascontiguousarray(image[y0:y1, x0:x1])
            stage = self.model.run_stages([crop], [(rh, rw)])[0]
            if stage["boxes"].shape[0]:
                best = stage["boxes"][int(stage["scores"].argmax())].cpu().numpy()
                edge = 2.0
                touches = ((best[0] <= edge and x0 > 0) or (best[1] <= edge and y0 > 0)
                           or (best[2] >= cw - edge and x1 < W) or (best[3] >= ch - edge and y1 < H))
                if not touches:
                    result = stage_to_result(stage, offset_xy=(x0, y0), frame_hw=(H, W))
        if result is None:
            result = self._full_frame(image)
        self._prev_box = result.boxes[int(np.argmax(result.scores))].copy() if len(result.scores) else None
        return result


def crop_around(box: np.ndarray, hw: tuple[int, int], margin: float, min_side: int = 64
                ) -> tuple[int, int, int, int]:
    """Integer crop ``(x0, y0, x1, y1)`` around ``box`` enlarged by ``margin`` × its longer side."""
    H, W = hw
    bx0, by0, bx1, by1 = (float(v) for v in box)
    pad = max(margin * max(bx1 - bx0, by1 - by0), min_side / 2)
    x0 = int(np.floor(max(0.0, bx0 - pad)))
    y0 = int(np.floor(max(0.0, by0 - pad)))
    x1 = int(np.ceil(min(float(W), bx1 + pad)))
    y1 = int(np.ceil(min(float(H), by1 + pad)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _check_image(image: np.ndarray, index: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(f"DensePose input {index}: expected an (H, W, 3) uint8 BGR image, "
                         f"got {arr.shape} {arr.dtype}")
    return np.ascontiguousarray(arr)


#: Name used by the video pipeline (``retarget.pipeline.job``).
TorchvisionDensePose = TorchvisionDensePoseBackend
