"""Small filters on ``(N, C, H, W)`` tensors: separable convolutions (zeros outside the tensor), a square
dilation, a 3 × 3 median."""

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


def bounding_box(mask: torch.Tensor, reach: int = 0) -> tuple[slice, slice] | None:
    """Rows and columns of the box around every True pixel of ``mask`` ``(N, C, H, W)`` (over the batch and
    channels), grown by ``reach`` pixels and clipped to the tensor; None when nothing is True. Filters whose
    reach is ``reach`` can run on ``x[..., rows, cols]`` alone: the person is a part of the crop."""
    rows, cols = mask.any(dim=3).any(dim=1).any(dim=0), mask.any(dim=2).any(dim=1).any(dim=0)
    if not bool(rows.any()):
        return None
    (r0, r1), (c0, c1) = [(int(i.min()), int(i.max())) for i in (rows.nonzero()[:, 0], cols.nonzero()[:, 0])]
    return slice(max(r0 - reach, 0), r1 + reach + 1), slice(max(c0 - reach, 0), c1 + reach + 1)


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


#: Compare-exchange pairs of a 19-step sorting network whose 5th output (index 4) is the median of 9 values
#: (the classic ``opt_med9`` network: it only sorts as far as the median needs).
_MEDIAN9_NETWORK = ((1, 2), (4, 5), (7, 8), (0, 1), (3, 4), (6, 7), (1, 2), (4, 5), (7, 8), (0, 3), (5, 8), (4, 7),
                    (3, 6), (1, 4), (2, 5), (4, 7), (4, 2), (6, 4), (4, 2))


def median3(x: torch.Tensor) -> torch.Tensor:
    """Per-channel median of every 3 × 3 neighbourhood of ``x`` ``(N, C, H, W)``, edges replicated; same size.

    Equal to ``torch.median`` over the nine shifted copies (tested), about seven times faster on the CPU: a
    sorting network of elementwise minima and maxima."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    v = [padded[..., i:i + h, j:j + w] for i in range(3) for j in range(3)]
    for a, b in _MEDIAN9_NETWORK:
        v[a], v[b] = torch.minimum(v[a], v[b]), torch.maximum(v[a], v[b])
    return v[4].contiguous()
