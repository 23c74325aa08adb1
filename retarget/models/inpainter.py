"""The coordinate-texture inpainter: a gated-convolution hourglass (paper Sec. 3.2).

Input ``(N, 5, H, W)`` = [partial xy texture (2), coverage mask (1), texture meshgrid (2)]; output
``(N, 2, H, W)`` raw xy (apply ``tanh`` to get coordinates in ``[-1, 1]``). ``H`` and ``W`` must be
multiples of 4 (two stride-2 stages, two x2 upsamplings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class GatedConv(nn.Module):
    """Reflect-padded gated convolution: ``BN(ELU(conv_f(x)) * sigmoid(conv_m(x)))``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1):
        super().__init__()
        self.padding = dilation * (kernel_size - 1) // 2
        self.feature_conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.gate_conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        x = F.pad(x, (p, p, p, p), mode="reflect")
        return self.norm(F.elu(self.feature_conv(x)) * torch.sigmoid(self.gate_conv(x)))


@dataclass(frozen=True)
class _Layer:
    out_mult: float  # output width as a multiple of ngf
    kernel: int = 3
    stride: int = 1
    dilation: int = 1
    upsample_before: bool = False


# The 15 gated layers of the official GatedHourglass, in order.
_LAYERS = (
    _Layer(1, kernel=5),
    _Layer(2, stride=2),
    _Layer(2),
    _Layer(4, stride=2),
    _Layer(4),
    _Layer(4),
    _Layer(4, dilation=2),
    _Layer(4, dilation=4),
    _Layer(4, dilation=8),
    _Layer(4, dilation=8),
    _Layer(4),
    _Layer(4),
    _Layer(2, upsample_before=True),
    _Layer(1, upsample_before=True),
    _Layer(0.5),
)


class Inpainter(nn.Module):
    """Gated-convolution hourglass that completes a coordinate texture.

    Args:
        ngf: base width (official checkpoint: 32).
        in_channels: input channels (official: 5).
        out_channels: output channels (official: 2).
    """

    def __init__(self, ngf: int = 32, in_channels: int = 5, out_channels: int = 2):
        super().__init__()
        self.ngf, self.in_channels, self.out_channels = ngf, in_channels, out_channels
        gates, upsample_before, width = [], [], in_channels
        for layer in _LAYERS:
            out = int(ngf * layer.out_mult)
            gates.append(GatedConv(width, out, layer.kernel, layer.stride, layer.dilation))
            upsample_before.append(layer.upsample_before)
            width = out
        self.gates = nn.ModuleList(gates)
        self._upsample_before = tuple(upsample_before)
        self.final = nn.Conv2d(width, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` → raw ``(N, out_channels, H, W)`` (before ``tanh``)."""
        for gate, upsample in zip(self.gates, self._upsample_before):
            if upsample:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = gate(x)
        return self.final(F.pad(x, (1, 1, 1, 1), mode="reflect"))
