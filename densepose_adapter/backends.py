"""Choosing a DensePose backend by name (``--densepose-backend``).

- ``torchvision`` (default): :class:`~densepose_adapter.torchvision_backend.TorchvisionDensePoseBackend`,
  our port that loads the official detectron2 weights;
- ``detectron2``: :class:`~densepose_adapter.detectron2_backend.Detectron2DensePoseBackend`, only if
  ``import detectron2, densepose`` works;
- ``precomputed``: IUV renders / npz files made elsewhere (``densepose_adapter.precomputed``).
"""

from __future__ import annotations

import importlib
from typing import Any

from densepose_adapter.types import DensePoseBackend
from densepose_adapter.errors import UsageError

BACKENDS = ("torchvision", "detectron2", "precomputed")


def make_backend(name: str = "torchvision", **kwargs: Any) -> DensePoseBackend:
    """Build the backend called ``name`` with its constructor's keyword arguments."""
    name = (name or "torchvision").strip().lower()
    if name == "torchvision":
        from densepose_adapter.torchvision_backend import TorchvisionDensePoseBackend

        return TorchvisionDensePoseBackend(**kwargs)
    if name == "detectron2":
        from densepose_adapter.detectron2_backend import Detectron2DensePoseBackend

        allowed = {"weights", "config", "min_score", "densepose_size", "device"}
        return Detectron2DensePoseBackend(**{k: v for k, v in kwargs.items() if k in allowed})
    if name == "precomputed":
        try:
            module = importlib.import_module("densepose_adapter.precomputed")
        except ImportError:
            raise UsageError("the precomputed DensePose backend is not available in this build") from None
        factory = (getattr(module, "make_backend", None) or getattr(module, "PrecomputedIUV", None)
                   or getattr(module, "PrecomputedBackend", None))
        if factory is None:
            raise UsageError("densepose_adapter.precomputed defines no backend factory")
        return factory(**kwargs)
    raise UsageError(f"unknown DensePose backend {name!r} (choose from {', '.join(BACKENDS)})")
