"""Host ↔ device copies of the per-frame tensors (the CUDA path: pinned memory, asynchronous copies).

On CUDA the host batch is copied into page-locked memory and sent with ``non_blocking=True``, so the
copy overlaps the previous kernels; the copy back is a synchronising ``.cpu()`` (the frame is needed on
the host right away to composite and encode it). On the CPU both are plain (no copy when possible).
"""

from __future__ import annotations

import numpy as np
import torch


def uses_pinned_memory(device: torch.device | str) -> bool:
    """True when host batches for ``device`` go through pinned memory (CUDA devices with CUDA present)."""
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def host_to_device(array: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """``(N, H, W, C)`` numpy → ``(N, C, H, W)`` float32 tensor on ``device`` (values unchanged)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if uses_pinned_memory(device):
        return tensor.pin_memory().to(device, non_blocking=True).permute(0, 3, 1, 2)
    return tensor.permute(0, 3, 1, 2).to(device)


def device_to_host(tensor: torch.Tensor) -> np.ndarray:
    """Any-device tensor (fp16/bf16/fp32) → float32 numpy on the host."""
    return tensor.detach().float().cpu().numpy()
