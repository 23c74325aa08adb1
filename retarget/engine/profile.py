"""Per-layer time of an OpenVINO model from its performance counters (what ``bench/engine_profile.py`` prints).

OpenVINO reports, per executed node of the compiled graph, its real time and the kernel it ran
(``exec_type``: e.g. ``jit_avx2_I8`` = int8 on AVX2 without VNNI, ``brgconv_avx2_f32`` = fp32). Nodes
keep the friendly names of the converted torch layers (``__module.refiner.decoder.2.conv/...``), so
convolutions can be matched with their multiply-accumulate counts.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import numpy as np


def conv_macs(model) -> dict[str, int]:
    """Multiply-accumulates per call of every ``Convolution`` node of ``model`` (static shapes), by friendly name.

    ``out_elements × in_channels_per_group × kh × kw`` (the weight port is ``(out, in/groups, kh, kw)``).
    """
    macs = {}
    for op in model.get_ops():
        if op.get_type_name() == "Convolution":
            out = [int(d) for d in op.get_output_shape(0)]
            weights = [int(d) for d in op.input(1).get_shape()]
            macs[op.get_friendly_name()] = int(np.prod(out)) * int(np.prod(weights[1:]))
    return macs


@dataclass
class LayerProfile:
    """Seconds per frame from the counters of ``calls`` inferences of ``frames_per_call`` frames each."""

    wall_s: float  #: wall time per frame of the profiled calls
    by_type: dict[tuple[str, str], float]  #: (op type, kernel) → s/frame, slowest first
    by_layer: dict[str, float]  #: node name → s/frame, slowest first
    kinds: dict[str, tuple[str, str]]  #: node name → (op type, kernel)
    macs: dict[str, float] = field(default_factory=dict)  #: convolution node → MACs per frame

    @property
    def total_s(self) -> float:
        return sum(self.by_type.values())

    def conv_s(self) -> float:
        return sum(s for (op, _), s in self.by_type.items() if op == "Convolution")

    def gmac_per_s(self, layer: str | None = None) -> float:
        """Convolution throughput (all convolutions, or one layer) in 10⁹ MAC/s."""
        if layer is None:
            return sum(self.macs.values()) / 1e9 / max(self.conv_s(), 1e-12)
        return self.macs[layer] / 1e9 / max(self.by_layer[layer], 1e-12)


def profile_model(model, inputs: list[list[np.ndarray]], calls: int, frames_per_call: int,
                  precision: str = "fp32") -> LayerProfile:
    """Run ``model`` ``calls`` times (after one warm-up) with performance counters on; see :class:`LayerProfile`.

    Args:
        model: an ``openvino.Model`` with static input shapes.
        inputs: per call, the list of input arrays (cycled).
        frames_per_call: frames per inference (the batch), to report per-frame figures.
        precision: as for :func:`retarget.engine.openvino_refiner.compile_refiner`.
    """
    from retarget.engine.openvino_refiner import compile_refiner

    request = compile_refiner(model, precision, profile=True).create_infer_request()
    request.infer(inputs[0])  # warm-up: first-call allocations are not the steady state
    by_type: collections.Counter = collections.Counter()
    by_layer: collections.Counter = collections.Counter()
    kinds: dict[str, tuple[str, str]] = {}
    start = time.perf_counter()
    for i in range(calls):
        request.infer(inputs[i % len(inputs)])
        for info in request.profiling_info:
            if info.status.name != "EXECUTED":
                continue
            seconds = info.real_time.total_seconds()
            by_type[(info.node_type, info.exec_type)] += seconds
            by_layer[info.node_name] += seconds
            kinds[info.node_name] = (info.node_type, info.exec_type)
    frames = calls * frames_per_call
    wall = (time.perf_counter() - start) / frames
    macs = {name: count / frames_per_call for name, count in conv_macs(model).items() if name in by_layer}
    return LayerProfile(wall_s=wall, by_type={k: v / frames for k, v in by_type.most_common()},
                        by_layer={k: v / frames for k, v in by_layer.most_common()}, kinds=kinds, macs=macs)
