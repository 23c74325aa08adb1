"""The DensePose port's backbone + FPN (most of its CPU time) run by OpenVINO.

:class:`OpenVINOBackbone` replaces ``DensePoseRCNN.backbone`` (same call: padded image batch → dict of
``p2`` … ``p6``); the RPN, NMS, ROIAlign and the heads stay in torch. The converted model has a
dynamic batch, height and width (tracked-region crops change the input size every frame) and is
cached on disk by :class:`densepose_adapter.openvino_cache.ModelCache`, keyed by the weights' digest,
the config and the OpenVINO version.

An input shape seen twice in a row (full-frame DensePose: one shape per video) is compiled once more
for that static shape, which OpenVINO runs faster (ResNet-50 + FPN at 928×512 on 2 AVX2 cores: 0.74 s
instead of 0.84 s with the dynamic shape; compiling takes ≈ 0.15 s); the last :data:`STATIC_SHAPES`
such compile(s) are kept. One-off shapes (tracked crops) use the dynamic model.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

#: ``engine`` values of the port: torch eager, or backbone + FPN through OpenVINO.
ENGINES = ("torch", "openvino")

#: How many static-shape compiles :class:`OpenVINOBackbone` keeps (least recently used dropped first).
#: Each holds its own copy of the weights and buffers (≈ 230 MB for ResNet-50 + FPN at 928×512), and
#: full-frame DensePose needs only one.
STATIC_SHAPES = 1


class _FPNOutputs(nn.Module):
    """The FPN with a tuple output (``p2`` … ``p6``), for conversion."""

    def __init__(self, fpn):
        super().__init__()
        self.fpn = fpn

    def forward(self, x):
        features = self.fpn(x)
        return tuple(features[k] for k in self.fpn.out_features)


def convert_fpn(fpn, size_divisibility: int = 32):
    """``openvino.Model`` of ``fpn`` with inputs ``(-1, 3, -1, -1)``."""
    from densepose_adapter.openvino_cache import import_openvino

    ov = import_openvino("DensePose engine openvino")
    example = torch.zeros(1, 3, 2 * size_divisibility * 4, 2 * size_divisibility * 3)
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about data-dependent shapes: the input is dynamic here
        model = ov.convert_model(_FPNOutputs(fpn.eval()), example_input=example,
                                 input=[ov.PartialShape([-1, 3, -1, -1])])
    return model


class OpenVINOBackbone(nn.Module):
    """Drop-in for ``DensePoseRCNN.backbone`` (CPU only).

    Args:
        fpn: the torch FPN (weights hashed into the cache key).
        cache_root: folder of converted models.
        key_payload: what else identifies the model (weights file digest, config).
        quiet: no progress message while converting.
        precision_hint: OpenVINO inference precision, ``f32`` (default: the port's reference numerics) or
            ``bf16`` (see :func:`densepose_adapter.openvino_cache.compile_cpu`).
    """

    def __init__(self, fpn, cache_root: str | os.PathLike, key_payload: dict, quiet: bool = False,
                 precision_hint: str = "f32"):
        super().__init__()
        from densepose_adapter.openvino_cache import ModelCache, compile_cpu, entry_key, state_digest

        self.out_features = fpn.out_features
        self.strides = fpn.strides
        self.out_channels = fpn.out_channels
        cache = ModelCache(cache_root)
        key = entry_key(dict(key_payload, net="densepose-fpn", weights=state_digest(fpn)))
        message = None if quiet else (f"converting the DensePose backbone to OpenVINO (fp32); once, cached under "
                                      f"{cache.root}")
        model, _ = cache.get("densepose-fpn", key, lambda: (convert_fpn(fpn), {"precision": "fp32"}), message)
        self.model = model
        self.precision_hint = precision_hint
        self.threads: int | None = None  #: inference threads (None: every core); see set_threads
        self.compiled = compile_cpu(model, precision_hint)  # dynamic input shape
        self._dynamic: dict[int | None, object] = {None: self.compiled}  #: threads → dynamic-shape compile
        self.static: OrderedDict[tuple[int, ...], object] = OrderedDict()  #: shape → static-shape compile
        self._last_shape: tuple[int, ...] | None = None

    def set_threads(self, threads: int | None) -> None:
        """Run with ``threads`` inference threads from now on (``None``: every core); the dynamic-shape model is
        compiled once per count, the static-shape ones again when needed."""
        from densepose_adapter.openvino_cache import compile_cpu

        if threads == self.threads:
            return
        self._dynamic[self.threads] = self.compiled
        self.threads = threads
        if threads not in self._dynamic:
            self._dynamic[threads] = compile_cpu(self.model, self.precision_hint, threads=threads)
        self.compiled = self._dynamic[threads]
        self.static.clear()

    def compiled_for(self, shape: tuple[int, ...]):
        """The compiled model to run an input of ``shape`` with (see the module docstring)."""
        from densepose_adapter.openvino_cache import compile_cpu

        shape = tuple(int(d) for d in shape)
        repeated, self._last_shape = shape == self._last_shape, shape
        if shape in self.static:
            self.static.move_to_end(shape)
            return self.static[shape]
        if not repeated:
            return self.compiled
        model = self.model.clone()
        model.reshape({model.inputs[0]: list(shape)})
        self.static[shape] = compile_cpu(model, self.precision_hint, threads=self.threads)
        while len(self.static) > STATIC_SHAPES:
            self.static.popitem(last=False)
        return self.static[shape]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        result = self.compiled_for(x.shape)([x.detach().float().cpu().numpy()])
        outs = [torch.from_numpy(np.array(result[i], dtype=np.float32, copy=True)).to(x.device)
                for i in range(len(self.out_features))]
        return dict(zip(self.out_features, outs))
