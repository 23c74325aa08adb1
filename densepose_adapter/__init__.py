"""DensePose adapter: one result type (:class:`DensePoseResult`), several backends.

Backends: ``precomputed`` (IUV renders / npz), ``torchvision`` (our port of DensePose R-CNN that loads
the official detectron2 weights), ``detectron2`` (only when detectron2 + densepose import).
"""

from densepose_adapter.types import DensePoseBackend, DensePoseInstance, DensePoseResult

__all__ = ["DensePoseBackend", "DensePoseInstance", "DensePoseResult"]
