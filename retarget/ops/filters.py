"""Small separable filters on ``(N, C, H, W)`` tensors (zeros outside the tensor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def separable_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` convolved with the 1-D ``kernel`` (odd length) along rows, then columns, per
    channel, zeros outside (a window sum for a kernel of ones). Same size as ``x``."""
    c, r = x.shape[1], len(kernel) // 2
    kernel = kernel.to(x.dtype)
    # channels-last: CPU depthwise convolutions are about ten times faster in that memory layout
    x = F.pad(x, (r, r, 0, 0)).contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    x = F.pad(x, (0, 0, r, r)).contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)
    return x.contiguous()


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """``mask`` ``(N, C, H, W)`` bool grown by a ``(2·radius + 1)²`` square (False outside the tensor): two 1-D
    passes of shifted ORs, much cheaper than a 2-D max pool on the CPU."""
    if radius <= 0:
        return mask
    h, w = mask.shape[-2:]
    padded = F.pad(mask, (radius, radius))
    rows = padded[..., :, :w].clone()
    for i in range(1, 2 * radius + 1):
        rows |= padded[..., :, i:i + w]
    padded = F.pad(rows, (0, 0, radius, radius))
    out = padded[..., :h, :].clone()
    for i in range(1, 2 * radius + 1):
        out |= padded[..., i:i + h, :]
    return out


def gaussian_kernel(sigma: float, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` (> 0), radius ``max(1, round(2.5 σ))``."""
    radius = max(1, int(round(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def masked_gaussian_blur(x: torch.Tensor, weight: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``x`` ``(N, C, H, W)`` that only averages where ``weight`` ``(N, 1, H, W)`` (in [0, 1])
    is on (normalised convolution: what lies outside does not bleed in); where no weight lies within reach
    the result is 0."""
    both = separable_filter(torch.cat([x * weight, weight], dim=1), gaussian_kernel(sigma, x.dtype, x.device))
    return both[:, :-1] / both[:, -1:].clamp(min=1e-6)
