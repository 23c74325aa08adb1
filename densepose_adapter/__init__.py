"""DensePose adapter: one result type (:class:`DensePoseResult`), several backends.

Backends: ``precomputed`` (IUV renders / npz), ``torchvision`` (our port of DensePose R-CNN that loads
the official detectron2 weights), ``detectron2`` (only when detectron2 + densepose import).

A standalone package: it imports torch, torchvision, numpy, OpenCV and SciPy, never ``retarget``
(which builds on it). Its errors are in :mod:`densepose_adapter.errors`; the public API is described
in docs/densepose.md.
"""

from densepose_adapter.types import DensePoseBackend, DensePoseInstance, DensePoseResult

__all__ = ["DensePoseBackend", "DensePoseInstance", "DensePoseResult"]
