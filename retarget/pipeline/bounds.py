"""Documented bounds of the numeric options (one place for ``video``, ``frames``, ``batch`` and jobs files).

- ``size`` (``--size``, the person crop side): :data:`SIZE_BOUNDS`, a multiple of :data:`SIZE_MULTIPLE`
  (the inpainter and refiner downsample twice by 2, :func:`retarget.pipeline.pair._check_size`); 64 is
  the smallest side the pipeline's crops use (the networks themselves accept 36), 2048 keeps one crop's
  activations within a few GiB.
- ``batch_size`` (``--batch-size``, frames per refiner / DensePose batch): :data:`BATCH_SIZE_BOUNDS`.
- ``densepose_size`` (``--densepose-size``, DensePose input shortest side, 800 official):
  :data:`DENSEPOSE_SIZE_BOUNDS`; 32 is what the DensePose port accepts
  (``densepose_adapter.torchvision_backend``), and above 1333 the longest-side cap of the model's config
  decides anyway.

:func:`check_bounds` raises :class:`retarget.errors.UsageError` (exit 2 on the command line) naming the
option as given (``--size`` on the command line, ``size`` in a jobs file).
"""

from __future__ import annotations

from typing import Any

from retarget.errors import UsageError

SIZE_BOUNDS = (64, 2048)
SIZE_MULTIPLE = 4
BATCH_SIZE_BOUNDS = (1, 256)
DENSEPOSE_SIZE_BOUNDS = (32, 4096)

#: ``name -> (low, high, multiple)``; names with ``_`` (``--batch-size`` and ``batch-size`` map here too).
BOUNDS: dict[str, tuple[int, int, int]] = {
    "size": (*SIZE_BOUNDS, SIZE_MULTIPLE),
    "batch_size": (*BATCH_SIZE_BOUNDS, 1),
    "densepose_size": (*DENSEPOSE_SIZE_BOUNDS, 1),
}


def describe_bounds(name: str) -> str:
    """``64..2048, a multiple of 4`` for ``size`` (any spelling of the name)."""
    low, high, multiple = BOUNDS[_key(name)]
    return f"{low}..{high}" + (f", a multiple of {multiple}" if multiple > 1 else "")


def _key(name: str) -> str:
    return name.lstrip("-").replace("-", "_")


def check_bounds(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` when it is within the bounds of option ``name``.

    Args:
        name: ``size``, ``batch_size``, ``densepose_size``, or their command-line spellings
            (``--batch-size``); the message names it as given.
        value: the option's value (an ``int``; a ``bool`` or non-integer is refused).

    Raises:
        UsageError: one line, ``<name> must be <low>..<high>[, a multiple of N], got <value>``.
        KeyError: ``name`` has no bounds (a bug).
    """
    low, high, multiple = BOUNDS[_key(name)]
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high and value % multiple == 0
    if not ok:
        raise UsageError(f"{name} must be {describe_bounds(name)}, got {value!r}")
    return int(value)


__all__ = ["BATCH_SIZE_BOUNDS", "BOUNDS", "DENSEPOSE_SIZE_BOUNDS", "SIZE_BOUNDS", "SIZE_MULTIPLE", "check_bounds",
           "describe_bounds"]
