"""ResNet + FPN backbone with detectron2's module names and conventions.

- ResNet (MSRA variant): stride on the first 1x1 conv of a block (``STRIDE_IN_1X1``), frozen batch
  norm (a fixed affine per channel, eps 1e-5), stem 7x7/2 + 3x3/2 max-pool (padding 1).
- FPN: 1x1 laterals and 3x3 outputs (with bias, no norm), top-down ×2 nearest upsampling, ``p6`` =
  1x1 max-pool with stride 2 of ``p5``.

Parameter names equal detectron2's (``bottom_up.res2.0.conv1.norm.running_var`` ...), so a
detectron2 state dict loads with a plain prefix mapping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from densepose_adapter.rcnn.config import DensePoseRCNNConfig


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (all buffers, never trained)."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale


class ConvNorm(nn.Conv2d):
    """``nn.Conv2d`` with an optional frozen norm applied after it (detectron2's ``Conv2d``)."""

    def __init__(self, *args, norm: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = FrozenBatchNorm2d(self.out_channels) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        return x

    @torch.no_grad()
    def fuse_norm(self) -> None:
        """Fold the frozen norm into weight and bias (inference speed-up; changes the state dict)."""
        if self.norm is None:
            return
        scale, shift = self.norm.scale_shift()
        self.weight.mul_(scale.view(-1, 1, 1, 1))
        bias = shift if self.bias is None else self.bias * scale + shift
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)
        self.norm = None


class BasicStem(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvNorm(in_channels, out_channels, 7, stride=2, padding=3, bias=False, norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, bottleneck_channels: int, stride: int,
                 num_groups: int, stride_in_1x1: bool, dilation: int):
        super().__init__()
        if in_channels != out_channels:
            self.shortcut = ConvNorm(in_channels, out_channels, 1, stride=stride, bias=False, norm=True)
        else:
            self.shortcut = None
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(in_channels, bottleneck_channels, 1, stride=s1, bias=False, norm=True)
        self.conv2 = ConvNorm(bottleneck_channels, bottleneck_channels, 3, stride=s3, padding=dilation,
                              bias=False, groups=num_groups, dilation=dilation, norm=True)
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, 1, bias=False, norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        out = out + (self.shortcut(x) if self.shortcut is not None else x)
        return F.relu_(out)


class ResNet(nn.Module):
    """Stem + stages ``res2`` … ``res5``; returns all four stage outputs."""

    def __init__(self, cfg: DensePoseRCNNConfig):
        super().__init__()
        self.stem = BasicStem(3, cfg.stem_out_channels)
        in_ch = cfg.stem_out_channels
        out_ch = cfg.res2_out_channels
        bott_ch = cfg.num_groups * cfg.width_per_group
        self.stage_names = ("res2", "res3", "res4", "res5")
        self.out_channels: dict[str, int] = {}
        for idx, (name, n) in enumerate(zip(self.stage_names, cfg.num_blocks)):
            dilation = cfg.res5_dilation if name == "res5" else 1
            first_stride = 1 if idx == 0 or (name == "res5" and dilation == 2) else 2
            blocks = []
            for b in range(n):
                blocks.append(BottleneckBlock(in_ch, out_ch, bott_ch, first_stride if b == 0 else 1,
                                              cfg.num_groups, cfg.stride_in_1x1, dilation))
                in_ch = out_ch
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels[name] = out_ch
            out_ch *= 2
            bott_ch *= 2

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {}
        for name in self.stage_names:
            x = getattr(self, name)(x)
            out[name] = x
        return out


class FPN(nn.Module):
    """Feature pyramid over res2..res5 → ``p2`` … ``p6`` (strides 4 … 64)."""

    in_features = ("res2", "res3", "res4", "res5")
    out_features = ("p2", "p3", "p4", "p5", "p6")
    strides = (4, 8, 16, 32, 64)

    def __init__(self, cfg: DensePoseRCNNConfig):
        super().__init__()
        self.bottom_up = ResNet(cfg)
        self.fuse_type = cfg.fpn_fuse_type
        c = cfg.fpn_out_channels
        for level, feat in zip((2, 3, 4, 5), self.in_features):
            in_ch = self.bottom_up.out_channels[feat]
            self.add_module(f"fpn_lateral{level}", nn.Conv2d(in_ch, c, 1))
            self.add_module(f"fpn_output{level}", nn.Conv2d(c, c, 3, padding=1))
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        bottom = self.bottom_up(x)
        prev = self.fpn_lateral5(bottom["res5"])
        results = {"p5": self.fpn_output5(prev)}
        for level in (4, 3, 2):
            top_down = F.interpolate(prev, scale_factor=2.0, mode="nearest")
            prev = getattr(self, f"fpn_lateral{level}")(bottom[f"res{level}"]) + top_down
            if self.fuse_type == "avg":
                prev = prev / 2
            results[f"p{level}"] = getattr(self, f"fpn_output{level}")(prev)
        results["p6"] = F.max_pool2d(results["p5"], kernel_size=1, stride=2, padding=0)
        return {k: results[k] for k in self.out_features}
