"""DensePose IUV → SMPL-UV conversion, rebuilt from public DensePose/SMPL UV data.

- :func:`iuv_to_uv`: ``(…, H, W, 3) uint8 [I, U, V]`` → ``(…, H, W, 2) float32`` SMPL-UV in [-1, 1],
  NaN background (the reference ``.npy`` format).
- :func:`get_lookup`: the lazily built, disk-cached ``(25, 256, 256, 2)`` table behind it.
- :data:`TABLES`: ``("training", "released", "clean")``; :func:`resolve_table` picks one for ``--table auto``;
  see :mod:`retarget.uvmap.tables` and ``docs/iuv_conversion.md``.
"""

from retarget.uvmap.cache import get_lookup
from retarget.uvmap.convert import iuv_to_uv
from retarget.uvmap.data import UVDataError
from retarget.uvmap.tables import TABLE_CHOICES, TABLES, resolve_table

__all__ = ["TABLES", "TABLE_CHOICES", "UVDataError", "get_lookup", "iuv_to_uv", "resolve_table"]
