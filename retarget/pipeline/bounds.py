"""Documented bounds of the numeric options every command shares (``--size``, ``--batch-size``,
``--densepose-size``; the ``size``, ``batch_size``, ``densepose_size`` columns of a jobs file).

A value outside its bounds is a usage error (exit 2), found before any work, instead of running out
of memory later. The bounds (docs/errors.md, "Options"):

- ``size`` (person crop side, also the texture side): 64..2048, a multiple of 4 — the inpainter and
  the refiner have two stride-2 stages and two x2 upsamplings, so their input side must be a multiple
  of 4; below 64 the body parts are a few texels wide; at 2048 one crop with its textures and
  network activations already needs several GB.
- ``batch_size`` (frames per refiner batch, per DensePose call): 1..256 — memory grows linearly with it.
- ``densepose_size`` (shortest side of the DensePose network input): 32..4096 — 32 is the smallest
  input the DensePose port accepts (its FPN has a stride-32 level); above 4096 a 16:9 frame alone is a
  7282x4096 float tensor per feature map level.
"""

from __future__ import annotations

import numbers

from retarget.errors import UsageError

__all__ = ["BATCH_SIZE_BOUNDS", "DENSEPOSE_SIZE_BOUNDS", "SIZE_BOUNDS", "SIZE_MULTIPLE", "check_bounds"]

#: ``--size``: smallest and largest person crop side (texels of the texture too), inclusive.
SIZE_BOUNDS = (64, 2048)
#: ``--size`` must be a multiple of this (two stride-2 stages in the networks).
SIZE_MULTIPLE = 4
#: ``--batch-size``: frames per batch, inclusive.
BATCH_SIZE_BOUNDS = (1, 256)
#: ``--densepose-size``: shortest side of the DensePose input, inclusive.
DENSEPOSE_SIZE_BOUNDS = (32, 4096)

_BOUNDS = {
    "size": (SIZE_BOUNDS, SIZE_MULTIPLE),
    "batch_size": (BATCH_SIZE_BOUNDS, 1),
    "densepose_size": (DENSEPOSE_SIZE_BOUNDS, 1),
}


def check_bounds(name: str, value, option: str | None = None) -> int:
    """Check one bounded option; returns it as an ``int``.

    Args:
        name: ``size``, ``batch_size`` or ``densepose_size``.
        value: the value given (an ``int``; a ``bool``, a float or a string is refused).
        option: how the message names it (default ``--size`` / ``--batch-size`` / ``--densepose-size``;
            a jobs file passes e.g. ``"jobs.csv:3: size"``).

    Raises:
        UsageError: not an integer, outside the bounds, or (``size``) not a multiple of 4.
        KeyError: unknown ``name`` (a bug).
    """
    (low, high), multiple = _BOUNDS[name]
    label = option or "--" + name.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{label} must be a whole number from {low} to {high}, got {value!r}")
    value = int(value)
    if multiple > 1:
        if value % multiple or not low <= value <= high:
            raise UsageError(f"{label} must be a multiple of {multiple} from {low} to {high}, got {value}")
    elif not low <= value <= high:
        raise UsageError(f"{label} must be from {low} to {high}, got {value}")
    return value
