"""The refiner: an hourglass with separate source/target encoders and deformable skips (paper Sec. 3.3).

The source encoder sees the source photo (+ its UV, mask, meshgrid); its features at full, 1/2 and 1/4
resolution are warped to the target pose by ``target_xy`` and concatenated into the decoder. The source
branch depends only on the source, so :meth:`Refiner.encode_source` runs once per source and
:meth:`Refiner.decode` once per (batch of) target frames.

Official checkpoints use spectral-normalised convolutions; :mod:`retarget.models.loading` folds the
normalisation into plain conv weights at load time, so inference here never runs a power iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from retarget.ops.coords import make_meshgrid


class ConvBlock(nn.Module):
    """Reflect pad → conv → InstanceNorm (no affine) → LeakyReLU(0.01)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.padding = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride)
        self.norm = nn.InstanceNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        return F.leaky_relu(self.norm(self.conv(F.pad(x, (p, p, p, p), mode="reflect"))), 0.01)


def _encoder(in_channels: int, ngf: int) -> nn.ModuleList:
    return nn.ModuleList([ConvBlock(in_channels, ngf, 5), ConvBlock(ngf, ngf, 3, 2), ConvBlock(ngf, ngf, 3, 2)])


@dataclass
class SourceFeatures:
    """Source-encoder features at full, 1/2 and 1/4 resolution, each ``(1 or N, ngf, h, w)``."""

    scales: tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Refiner(nn.Module):
    """ResHourglassDeformableSkip of the paper, written as encode-source / decode-target.

    Args:
        in_source: source-input channels (official: 8 = RGB, UV, mask, meshgrid).
        in_target: target-input channels (official: 10 = coarse RGB, UV, mask, target_xy, meshgrid).
        out_channels: output channels (official: 3, apply ``sigmoid`` for RGB in ``[0, 1]``).
        ngf: width (official: 256).
    """

    def __init__(self, in_source: int = 8, in_target: int = 10, out_channels: int = 3, ngf: int = 256):
        super().__init__()
        self.in_source, self.in_target, self.out_channels, self.ngf = in_source, in_target, out_channels, ngf
        self.source_encoder = _encoder(in_source, ngf)
        self.target_encoder = _encoder(in_target, ngf)
        self.residual = nn.ModuleList([ConvBlock(ngf, ngf) for _ in range(6)])
        self.decoder = nn.ModuleList([ConvBlock(3 * ngf, ngf) for _ in range(3)])
        self.final = nn.Conv2d(ngf, out_channels, 3)

    def encode_source(self, source_input: torch.Tensor) -> SourceFeatures:
        """Run the source branch once: ``(N, in_source, H, W)`` → features at 3 scales."""
        features, x = [], source_input
        for block in self.source_encoder:
            x = block(x)
            features.append(x)
        return SourceFeatures(tuple(features))

    def decode(self, source: SourceFeatures, target_input: torch.Tensor, target_xy: torch.Tensor,
               target_mask: torch.Tensor) -> torch.Tensor:
        """Refine target frames given precomputed source features.

        Args:
            source: from :meth:`encode_source`, batch 1 (broadcast to all targets) or N.
            target_input: ``(N, in_target, H, W)``.
            target_xy: ``(N, 2, H, W)`` warp field, source coordinates (x, y) in ``[-1, 1]``.
            target_mask: ``(N, 1, H, W)`` target person mask in {0, 1}.

        Returns:
            ``(N, out_channels, H, W)`` raw output (before ``sigmoid``).
        """
        n = target_input.shape[0]
        warped = [F.grid_sample(feat.expand(n, -1, -1, -1), field.permute(0, 2, 3, 1), align_corners=False)
                  for feat, field in zip(source.scales, warp_pyramid(target_xy, target_mask))]

        target_features, x = [], target_input
        for block in self.target_encoder:
            x = block(x)
            target_features.append(x)

        # Residual chain: each block sees the sum of the two previous outputs.
        prev, cur = target_features[2], self.residual[0](target_features[2])
        for block in self.residual[1:]:
            prev, cur = cur, block(prev + cur)
        x = prev + cur

        for level, block in enumerate(self.decoder):
            skip = 2 - level
            if level > 0:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, target_features[skip], warped[skip]], dim=1))
        return self.final(F.pad(x, (1, 1, 1, 1), mode="reflect"))

    def forward(self, source_input: torch.Tensor, target_input: torch.Tensor, target_xy: torch.Tensor,
                target_mask: torch.Tensor) -> torch.Tensor:
        """Both branches at once (same signature as the official module)."""
        return self.decode(self.encode_source(source_input), target_input, target_xy, target_mask)


def warp_pyramid(target_xy: torch.Tensor, target_mask: torch.Tensor) -> list[torch.Tensor]:
    """Warp fields at full, 1/2 and 1/4 resolution, identity outside the person.

    Args:
        target_xy: ``(N, 2, H, W)`` source coordinates (x, y) in ``[-1, 1]``; ``H, W`` multiples of 4.
        target_mask: ``(N, 1, H, W)`` in {0, 1}.

    Returns:
        Three ``(N, 2, h, w)`` fields. Coarser fields are bilinear downsamplings (``align_corners=False``)
        of the previous level; masks are nearest downsamplings thresholded at 0; where the mask is 0
        the field is the identity meshgrid (reference behaviour).
    """
    n, _, h, w = target_xy.shape
    fields = [target_xy]
    masks = [target_mask]
    for factor in (2, 4):
        size = (h // factor, w // factor)
        fields.append(F.interpolate(fields[-1], size, mode="bilinear", align_corners=False))
        masks.append((F.interpolate(masks[-1], size, mode="nearest") > 0).to(target_xy.dtype))
    out = []
    for field, mask in zip(fields, masks):
        grid = make_meshgrid(field.shape[2], field.shape[3], device=field.device, dtype=field.dtype)
        out.append(field * mask + grid * (1.0 - mask))
    return out
