"""Option handling shared by several commands (device, weights)."""

from __future__ import annotations

from pathlib import Path

from retarget.errors import UsageError


def resolve_device(device: str) -> str:
    """Validate ``--device``; a CUDA device without CUDA is a one-line error suggesting cpu."""
    import torch

    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        return device
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("--device mps: MPS is not available on this machine; use --device cpu")
        return device
    raise UsageError(f"--device {device}: expected cpu, cuda, cuda:N or mps")


def resolve_models(checkpoint_dir: Path | None, device: str):
    """Load the coordinate-inpainting models, or return ``None`` (weight-free path).

    ``checkpoint_dir`` given: both ``inpainter.pth`` and ``refiner.pth`` must load from it. Otherwise
    installed weights are used when present; when absent, one stderr line says the weight-free path
    runs and how to install weights.
    """
    from retarget.pipeline import Models

    return Models.resolve(checkpoint_dir, device)
