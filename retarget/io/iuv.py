"""DensePose IUV PNGs and SMPL-UV ``.npy`` files in the reference formats.

- IUV PNG, as DensePose writes it: 8-bit, 3 channels; on disk B = I (part 0..24, 0 = background),
  G = U·255, R = V·255. In memory we use ``(H, W, 3) uint8`` with channels ``[I, U, V]`` — exactly the
  channel order ``cv2.imread`` returns.
- UV ``.npy``: float ``(H, W, 2)``, channel 0 = u, channel 1 = v of the global SMPL-UV in [-1, 1], NaN
  (in both channels) on the background.

Writers are atomic: the data goes to a temporary file beside the target, renamed on success.
User-fixable problems raise :class:`retarget.errors.InputError` with a one-line message naming the file.
:func:`check_iuv` and :func:`read_iuv_png` live in the standalone DensePose package
(:mod:`densepose_adapter.iuv`, which checks precomputed IUV with them) and are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from densepose_adapter.iuv import check_iuv, read_iuv_png
from retarget.errors import InputError
from retarget.io.atomic import write_bytes_atomic

__all__ = ["check_iuv", "check_uv", "read_iuv_png", "read_uv_npy", "write_iuv_png", "write_uv_npy"]

_UV_TOLERANCE = 1e-4


def _write_atomic(path: Path, data: bytes, overwrite: bool = True) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{path}: output folder {folder} does not exist")
    try:
        write_bytes_atomic(path, data, overwrite=overwrite)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None


def write_iuv_png(path: str | Path, iuv: np.ndarray) -> None:
    """Write ``(H, W, 3) uint8 [I, U, V]`` as a DensePose IUV PNG (B = I, G = U, R = V), atomically."""
    path = Path(path)
    iuv = check_iuv(iuv, str(path))
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(iuv))
    if not ok:
        raise InputError(f"{path}: PNG encoding failed")
    _write_atomic(path, encoded.tobytes())


def check_uv(uv: np.ndarray, name: str = "UV array") -> np.ndarray:
    """Validate a UV map; returns it as ``(H, W, 2) float32``.

    A pixel NaN in one channel only (the reference converter can write such pixels when a value is
    exactly -1) is kept as it is: the reference pipeline counts it as a person pixel (its mask is
    "any channel not NaN") and samples the NaN channel as -10, and so do we.

    Raises:
        InputError: wrong shape/dtype, infinite values, or values outside [-1, 1].
    """
    uv = np.asarray(uv)
    if uv.ndim != 3 or uv.shape[2] != 2:
        raise InputError(f"{name}: expected a float (H, W, 2) UV array, got {uv.dtype} {uv.shape}")
    if not np.issubdtype(uv.dtype, np.floating):
        raise InputError(f"{name}: expected a float UV array, got {uv.dtype}")
    uv = uv.astype(np.float32, copy=False)
    if np.isinf(uv).any():
        raise InputError(f"{name}: UV map contains infinite values")
    finite = uv[~np.isnan(uv)]
    if finite.size and (finite.min() < -1 - _UV_TOLERANCE or finite.max() > 1 + _UV_TOLERANCE):
        raise InputError(f"{name}: UV values must lie in [-1, 1] (NaN = background), "
                         f"found [{finite.min():.3g}, {finite.max():.3g}]")
    return uv


def read_uv_npy(path: str | Path) -> np.ndarray:
    """Read a SMPL-UV ``.npy``; returns ``(H, W, 2) float32``, channels (u, v) in [-1, 1], NaN background.

    Raises:
        InputError: missing/unreadable file (pickled objects are refused) or content failing
            :func:`check_uv`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: UV file not found")
    try:
        uv = np.load(path, allow_pickle=False)
    except MemoryError:
        raise InputError(f"{path}: not a readable .npy file (its header announces an array too large for "
                         "memory); the file is damaged") from None
    except Exception as exc:  # noqa: BLE001 - a damaged header fails in many ways (even SyntaxError)
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:100]
        raise InputError(f"{path}: not a readable .npy file ({reason}); the file is damaged or not a "
                         "UV map") from None
    return check_uv(uv, str(path))


def write_uv_npy(path: str | Path, uv: np.ndarray, *, overwrite: bool = True) -> None:
    """Validate (:func:`check_uv`) and write a ``(H, W, 2)`` UV map as float32 ``.npy``, atomically
    (``overwrite=False``: never replace a file that appeared meanwhile)."""
    import io

    path = Path(path)
    uv = check_uv(uv, str(path))
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(uv, dtype=np.float32))
    _write_atomic(path, buffer.getvalue(), overwrite)
