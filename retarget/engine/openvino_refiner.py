"""The refiner's per-frame branch run by OpenVINO (fp32, bf16 on CPUs with native bf16, or int8).

:class:`OpenVINORefiner` has the interface the pipeline uses of :class:`retarget.models.Refiner`
(``encode_source`` → torch, ``decode`` → OpenVINO), so :func:`retarget.pipeline.pair.render_targets`
runs it unchanged. The converted model has a static shape ``(batch, ·, size, size)``; a smaller
batch is padded (its extra rows are dropped), a larger one is split.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

from retarget.errors import UsageError
from retarget.models.refiner import Refiner, SourceFeatures

#: int8 error budget on the refiner's output crop (person pixels, 0–255 grey levels, vs fp32), measured
#: on held-out frames of the shipped example (see :mod:`retarget.engine.calibration`).
INT8_BUDGET = {"mean": 1.5, "p99": 8.0}

INPUT_NAMES = ("source_full", "source_half", "source_quarter", "target_input", "target_xy", "target_mask")

#: Bump when :func:`convert_decode` changes what a converted model holds (part of the cache key).
#: 2: static input shapes (the traced model had fully dynamic ones).
CONVERT_VERSION = "2"


class DecodeBranch(nn.Module):
    """``Refiner.decode`` as a module with plain tensor inputs (what gets converted)."""

    def __init__(self, refiner: Refiner):
        super().__init__()
        self.refiner = refiner

    def forward(self, source_full, source_half, source_quarter, target_input, target_xy, target_mask):
        features = SourceFeatures((source_full, source_half, source_quarter))
        return self.refiner.decode(features, target_input, target_xy, target_mask)


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def example_inputs(refiner: Refiner, batch: int, size: int | tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Shape-correct inputs for tracing: source features of batch 1, target tensors of ``batch`` at ``size``
    (a side, or ``(height, width)``)."""
    g = torch.Generator().manual_seed(0)
    ngf = refiner.ngf
    h, w = _hw(size)
    feats = tuple(torch.rand(1, ngf, h // f, w // f, generator=g) for f in (1, 2, 4))
    target = torch.rand(batch, refiner.in_target, h, w, generator=g)
    xy = torch.rand(batch, 2, h, w, generator=g) * 2 - 1
    mask = (torch.rand(batch, 1, h, w, generator=g) > 0.5).float()
    return (*feats, target, xy, mask)


def convert_decode(refiner: Refiner, batch: int, size: int | tuple[int, int]):
    """``openvino.Model`` of the decode branch at a static ``(batch, size)``; inputs named :data:`INPUT_NAMES`.

    Tracing leaves every input dimension dynamic; the model is reshaped to the example inputs' shapes so
    that OpenVINO folds the shape arithmetic (warp meshgrids) and picks kernels for the one shape used.
    """
    from retarget.engine.runtime import require_openvino

    ov = require_openvino()
    import warnings

    inputs = example_inputs(refiner, batch, size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: shapes are static per converted model
        model = ov.convert_model(DecodeBranch(refiner.eval()), example_input=inputs)
    for port, name in zip(model.inputs, INPUT_NAMES):
        port.get_tensor().set_names({name})
    model.reshape({name: list(t.shape) for name, t in zip(INPUT_NAMES, inputs)})
    return model


def engine_cache():
    """The engines' :class:`~densepose_adapter.openvino_cache.ModelCache` (``cache_dir()/engines``)."""
    from densepose_adapter.openvino_cache import ModelCache
    from retarget.paths import cache_dir

    return ModelCache(cache_dir() / "engines")


#: OpenVINO inference precision hint of each ``--precision`` (int8 models run their fp32 layers in f32).
PRECISION_HINT = {"fp32": "f32", "int8": "f32", "bf16": "bf16"}


def compile_refiner(model, precision: str, profile: bool = False, threads: int | None = None):
    """Compiled for the CPU at ``precision`` (``fp32``, ``bf16``, ``int8``: see :data:`PRECISION_HINT`; bf16 is
    only chosen where the CPU has it natively); ``profile`` turns on OpenVINO's per-layer performance counters
    (bench/engine_profile.py); ``threads``: inference threads (``None``: every core; see
    :mod:`retarget.engine.threads`)."""
    from densepose_adapter.openvino_cache import compile_cpu

    return compile_cpu(model, PRECISION_HINT[precision], profile, threads)


def cache_keys(refiner: Refiner, batch_size: int, size: int | tuple[int, int], accuracy_control: bool = True
               ) -> dict[str, str]:
    """The engine-cache keys of the refiner's converted models (``fp32``, ``int8``) at a static shape."""
    from densepose_adapter.openvino_cache import entry_key, state_digest
    from retarget.engine.calibration import CALIBRATION_VERSION

    hw = _hw(size)
    base = {"net": "refiner-decode", "convert": CONVERT_VERSION, "weights": state_digest(refiner),
            "batch": int(batch_size), "size": list(hw),
            "channels": [refiner.in_source, refiner.in_target, refiner.out_channels, refiner.ngf]}
    return {"fp32": entry_key(dict(base, precision="fp32")),
            "int8": entry_key(dict(base, precision="int8", calibration=CALIBRATION_VERSION, budget=INT8_BUDGET,
                                   accuracy_control=accuracy_control))}


class OpenVINORefiner:
    """Refiner stand-in: torch source branch, OpenVINO decode branch.

    Args:
        refiner: the torch refiner (weights hashed into the cache key).
        precision: ``fp32``, ``bf16`` or ``int8``.
        batch_size, size: static input shape of the converted model (``size``: a side or ``(height, width)``).
        quiet: no progress message while converting.
        calibration_frames: int8 only: a callable giving the refiner inputs to calibrate and validate on (per
            frame the 6 decode inputs, batch 1; see :mod:`retarget.pipeline.calibration_frames`), called only
            when no quantized model is cached.
        over_budget: int8 whose measured error exceeds :data:`INT8_BUDGET`: ``fallback`` (warn, run
            fp32) or ``run`` (benchmarks: run int8 anyway, error reported).
        accuracy_control: over budget, let NNCF revert sensitive layers to fp32 (slow on full-size models;
            benchmarks may turn it off to measure plain post-training quantization).
    """

    engine = "openvino"

    def __init__(self, refiner: Refiner, precision: str = "fp32", batch_size: int = 4,
                 size: int | tuple[int, int] = 256,
                 quiet: bool = False, calibration_frames=None, over_budget: str = "fallback",
                 accuracy_control: bool = True, threads: int | None = None):

        if precision not in ("fp32", "bf16", "int8"):
            raise UsageError(f"--precision {precision}: the OpenVINO engine runs fp32, bf16 or int8")
        self.torch_refiner = refiner.eval()
        self.ngf, self.in_source, self.in_target = refiner.ngf, refiner.in_source, refiner.in_target
        self.out_channels = refiner.out_channels
        self.batch_size, self.hw = int(batch_size), _hw(size)
        cache = engine_cache()
        keys = cache_keys(refiner, self.batch_size, self.hw, accuracy_control)
        shape = f"batch {self.batch_size}, {self.hw[1]}x{self.hw[0]}"

        def build_fp32():
            return convert_decode(refiner, self.batch_size, self.hw), {"precision": "fp32"}

        fp32_message = None if quiet else (f"converting the refiner to OpenVINO (fp32, {shape}); once, cached "
                                           f"under {cache.root}")
        fp32_model, _ = cache.get("refiner", keys["fp32"], build_fp32, fp32_message)
        self.meta: dict = {"precision": "fp32"}
        self.precision = "bf16" if precision == "bf16" else "fp32"
        model = fp32_model
        if precision == "int8":
            from retarget.engine.calibration import quantize_refiner

            def build_int8():
                if calibration_frames is None:
                    raise UsageError("--precision int8 needs the learned models (inpainter and refiner)")
                return quantize_refiner(fp32_model, calibration_frames(), self.batch_size, INT8_BUDGET,
                                        quiet=quiet, max_rounds=5 if accuracy_control else 0)

            key = keys["int8"]
            message = None if quiet else (f"quantizing the refiner to int8 with NNCF ({shape}), calibrated on the "
                                          f"shipped example frames; once, cached under {cache.root}")
            int8_model, meta = cache.get("refiner", key, build_int8, message)
            self.meta = meta
            if meta.get("within_budget") or over_budget == "run":
                model, self.precision = int8_model, "int8"
                kept = meta.get("fp32_convolutions") or []
                if kept and meta.get("within_budget") and not quiet:
                    print(f"note: --precision int8: within the error budget (mean {meta['err_mean']:.2f}, p99 "
                          f"{meta['err_p99']:.1f} grey levels on the example frames) with {len(kept)} convolution(s) "
                          f"kept in fp32 ({', '.join(kept)}), so it gains less speed",
                          file=sys.stderr)
            else:
                print(f"warning: --precision int8: the quantized refiner's error on the example frames "
                      f"(mean {meta['err_mean']:.2f}, p99 {meta['err_p99']:.1f} grey levels) exceeds the budget "
                      f"(mean ≤ {INT8_BUDGET['mean']}, p99 ≤ {INT8_BUDGET['p99']}); running OpenVINO fp32",
                      file=sys.stderr)
        self.model = model  #: the ``openvino.Model`` that runs (int8, or fp32 after a fallback)
        self.threads = threads
        self.compiled = compile_refiner(model, self.precision, threads=threads)
        self._compiled_by_threads = {threads: self.compiled}

    def set_threads(self, threads: int | None) -> None:
        """Run with ``threads`` inference threads from now on (``None``: every core); each count is compiled once
        (:mod:`retarget.engine.threads`; results do not depend on it)."""
        if threads not in self._compiled_by_threads:
            self._compiled_by_threads[threads] = compile_refiner(self.model, self.precision, threads=threads)
        self.threads, self.compiled = threads, self._compiled_by_threads[threads]

    # -- the part of the Refiner interface the pipeline uses ------------------------------------
    def encode_source(self, source_input: torch.Tensor) -> SourceFeatures:
        return self.torch_refiner.encode_source(source_input)

    def to(self, device) -> "OpenVINORefiner":
        if not str(device).startswith("cpu"):
            raise UsageError(f"--engine openvino runs on the CPU; with --device {device} use --engine torch")
        return self

    def eval(self) -> "OpenVINORefiner":
        return self

    def decode(self, source: SourceFeatures, target_input: torch.Tensor, target_xy: torch.Tensor,
               target_mask: torch.Tensor) -> torch.Tensor:
        """Same contract as :meth:`retarget.models.Refiner.decode` (source features of batch 1)."""
        n, _, h, w = target_input.shape
        if (h, w) != self.hw or any(f.shape[0] != 1 for f in source.scales):
            return self.torch_refiner.decode(source, target_input, target_xy, target_mask)  # not what was converted
        feats = [f.detach().float().cpu().numpy() for f in source.scales]
        outs = []
        for start in range(0, n, self.batch_size):
            parts = [t[start:start + self.batch_size].detach().float().cpu() for t in (target_input, target_xy,
                                                                                      target_mask)]
            k = parts[0].shape[0]
            if k < self.batch_size:  # pad with copies of the last frame; dropped below
                parts = [torch.cat([p, p[-1:].expand(self.batch_size - k, -1, -1, -1)]) for p in parts]
            result = self.compiled([*feats, *(p.numpy() for p in parts)])[0]
            outs.append(torch.from_numpy(np.array(result[:k], dtype=np.float32, copy=True)))
        return torch.cat(outs).to(target_input.device)
