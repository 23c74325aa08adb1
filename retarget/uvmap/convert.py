"""DensePose IUV → global SMPL-UV conversion (pure function on arrays)."""

from __future__ import annotations

import numpy as np

from retarget.uvmap.cache import get_lookup


def iuv_to_uv(iuv: np.ndarray, table: str = "training") -> np.ndarray:
    """Convert DensePose IUV renders to the reference SMPL-UV format.

    Args:
        iuv: ``(H, W, 3)`` or batched ``(N, H, W, 3)`` integer array, channels ``[I, U, V]``: I = part
            0..24 (0 = background), U and V = DensePose chart coordinates × 255 (0..255). This is the
            channel order ``cv2.imread`` returns for a DensePose IUV PNG (B = I, G = U, R = V).
        table: ``"training"`` (default; what the official weights were trained on: U/255, V/255,
            face rasterisation, NaN at chart points no face covers) or ``"released"`` (the reference
            demo's ``smpltexmap.npy``: U/256, V/256, linear interpolation, never NaN on the person).

    Returns:
        ``float32`` array ``(..., H, W, 2)`` with the leading shape of ``iuv``: channel 0 = u, channel
        1 = v of the global SMPL-UV in [-1, 1] (``u = 2·u_gl − 1``, ``v = 1 − 2·v_gl``); both channels
        NaN where I = 0 (and, with ``training``, where the chart point lies in no atlas face).

    Raises:
        ValueError: wrong shape, non-integer dtype, I outside 0..24, U/V outside 0..255, unknown table.
    """
    iuv = np.asarray(iuv)
    if iuv.ndim not in (3, 4) or iuv.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) or (N, H, W, 3) IUV array, got shape {iuv.shape}")
    if not (np.issubdtype(iuv.dtype, np.integer) or iuv.dtype == np.bool_):
        raise ValueError(f"expected an integer IUV array (uint8), got {iuv.dtype}")
    lookup = get_lookup(table)
    if iuv.dtype != np.uint8:
        if iuv.size and (iuv.min() < 0 or iuv.max() > 255):
            raise ValueError("IUV values must lie in 0..255")
        iuv = iuv.astype(np.uint8)
    parts = iuv[..., 0]
    if parts.size and parts.max() > 24:
        raise ValueError(f"IUV part index I must lie in 0..24, found {int(parts.max())}")
    index = (parts.astype(np.int32) << 16) | (iuv[..., 1].astype(np.int32) << 8) | iuv[..., 2]
    return np.take(lookup.reshape(-1, 2), index, axis=0)
