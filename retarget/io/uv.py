"""UV map files in the reference format: ``.npy`` float ``(H, W, 2)``, channels (u, v), NaN background."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retarget.errors import InputError


def read_uv_npy(path: str | Path) -> np.ndarray:
    """Read and validate a UV ``.npy``; returns ``(H, W, 2) float32`` with NaN background."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: UV file not found")
    try:
        uv = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0][:100]})") from None
    if uv.ndim != 3 or uv.shape[2] != 2 or not np.issubdtype(uv.dtype, np.floating):
        raise InputError(f"{path}: expected a float (H, W, 2) UV array, got {uv.dtype} {uv.shape}")
    uv = uv.astype(np.float32, copy=False)
    finite = uv[np.isfinite(uv)]
    if finite.size and (finite.min() < -1.0001 or finite.max() > 1.0001):
        raise InputError(f"{path}: UV values must lie in [-1, 1] (NaN = background), "
                         f"found [{finite.min():.3g}, {finite.max():.3g}]")
    if np.isinf(uv).any():
        raise InputError(f"{path}: UV map contains infinite values")
    return uv
