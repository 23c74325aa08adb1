"""DensePose IUV images: the in-memory check and the reader of DensePose's ``*_IUV.png`` files.

In memory an IUV image is ``(H, W, 3) uint8`` with channels ``[I, U, V]`` (I = part 0..24, 0 =
background; U and V 0..255); on disk, as DensePose writes it, B = I, G = U, R = V, which is exactly
the channel order ``cv2.imread`` / ``cv2.imwrite`` use, so ``cv2.imwrite("x_IUV.png", iuv)`` exports one.
Problems raise :class:`densepose_adapter.errors.InputError` with a one-line message naming the file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from densepose_adapter.errors import InputError


def check_iuv(iuv: np.ndarray, name: str = "IUV array") -> np.ndarray:
    """Validate an in-memory IUV image; returns it as ``(H, W, 3) uint8 [I, U, V]``.

    Raises:
        InputError: wrong shape or dtype, or a part index above 24.
    """
    iuv = np.asarray(iuv)
    if iuv.ndim != 3 or iuv.shape[2] != 3 or iuv.shape[0] == 0 or iuv.shape[1] == 0:
        raise InputError(f"{name}: expected an (H, W, 3) IUV image, got shape {iuv.shape}")
    if iuv.dtype != np.uint8:
        raise InputError(f"{name}: expected an 8-bit IUV image, got {iuv.dtype}")
    top = int(iuv[..., 0].max())
    if top > 24:
        raise InputError(f"{name}: not a DensePose IUV image (part index I up to 24 expected in the "
                         f"blue channel, found {top})")
    return iuv


def read_iuv_png(path: str | Path) -> np.ndarray:
    """Read a DensePose IUV PNG.

    Returns:
        ``(H, W, 3) uint8`` with channels ``[I, U, V]`` (I = part 0..24, U and V 0..255).

    Raises:
        InputError: missing/unreadable file, not 8-bit 3-channel, or part index above 24.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: IUV file not found")
    try:
        raw = np.fromfile(path, dtype=np.uint8)  # also handles names OpenCV cannot open
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    except cv2.error:
        image = None
    if image is None:
        raise InputError(f"{path}: not a readable image; the file is damaged or not a PNG")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        channels = 1 if image.ndim == 2 else image.shape[2]
        raise InputError(f"{path}: an IUV PNG must be 8-bit with 3 channels, got {image.dtype} with "
                         f"{channels} channel(s)")
    return check_iuv(image, str(path))
