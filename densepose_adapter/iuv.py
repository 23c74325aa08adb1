"""DensePose IUV images: the in-memory check and the reader of DensePose's ``*_IUV.png`` files.

In memory an IUV image is ``(H, W, 3) uint8`` with channels ``[I, U, V]`` (I = part 0..24, 0 =
background; U and V 0..255); on disk, as DensePose writes it, B = I, G = U, R = V, which is exactly
the channel order ``cv2.imread`` / ``cv2.imwrite`` use, so ``cv2.imwrite("x_IUV.png", iuv)`` exports one.
Tools that save the ``(I, U, V)`` stack with PIL or imageio write the reverse (R = I, G = U, B = V);
:func:`read_iuv_png` recognises those files by their red channel (:func:`iuv_from_png_channels`).
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


def iuv_from_png_channels(image: np.ndarray, name: str = "IUV image") -> np.ndarray:
    """``[I, U, V]`` of an IUV PNG decoded by OpenCV (``(H, W, 3) uint8`` in B, G, R order).

    DensePose's own files hold I in blue (B = I, G = U, R = V: returned as they are). Files written from an
    ``(I, U, V)`` stack by PIL or imageio hold I in red (R = I, G = U, B = V: returned reversed). Red is taken
    as I only when blue cannot be (a value above 24), red can (none above 24), and red is non-zero on every
    pixel where any channel is (background is 0 in all three, a body pixel has a part): a DensePose-order
    file with a damaged I channel is refused rather than read with V as the part.

    Raises:
        InputError: neither blue nor red holds part indices.
    """
    blue, red = image[..., 0], image[..., 2]
    if blue.max() <= 24:
        return image
    if red.max() <= 24 and not ((red == 0) & image.any(axis=2)).any():
        return np.ascontiguousarray(image[..., ::-1])
    raise InputError(f"{name}: not a DensePose IUV image (part index I up to 24 expected in the blue channel, "
                     f"as DensePose writes it, or in the red channel; found {int(blue.max())} and "
                     f"{int(red.max())})")


#: Largest IUV image read when its size is not known in advance (PIL's hard limit for photos, 3 bytes a pixel).
MAX_IUV_PIXELS = 180_000_000


def read_iuv_png(path: str | Path, *, size: tuple[int, int] | None = None, size_of: str = "the image",
                 max_pixels: int = MAX_IUV_PIXELS) -> np.ndarray:
    """Read a DensePose IUV PNG.

    The header is checked before anything is decoded (:mod:`densepose_adapter.image_header`): a
    16-bit file, a size other than ``size``, or more than ``max_pixels`` pixels is refused unread.

    Args:
        size: ``(width, height)`` it must have (the photo it was computed on), if known.
        size_of: how the message names what ``size`` is (``"the photo"``).
        max_pixels: largest accepted width x height.

    Returns:
        ``(H, W, 3) uint8`` with channels ``[I, U, V]`` (I = part 0..24, U and V 0..255), from a file in
        DensePose's channel order or in the reverse one (:func:`iuv_from_png_channels`).

    Raises:
        InputError: missing/unreadable file (or not a regular file), too large, not 8-bit 3-channel,
            or no channel of part indices.
    """
    import os
    import stat

    from densepose_adapter.image_header import UnreadableHeader, check_image_header

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise InputError(f"{path}: IUV file not found") from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise InputError(f"{path}: IUV file is {what}; expected an IUV PNG")
    try:
        header = check_image_header(path, max_pixels=None if size is not None else max_pixels, what="IUV image")
    except UnreadableHeader:
        raise InputError(f"{path}: not a readable image; the file is damaged or not a PNG") from None
    if size is not None and (header.width, header.height) != tuple(size):
        raise InputError(f"{path}: DensePose map is {header.width}x{header.height} but {size_of} is "
                         f"{size[0]}x{size[1]}; it must be computed on the same image")
    if header.bits > 8:
        raise InputError(f"{path}: an IUV PNG must be 8-bit with 3 channels, got {header.bits}-bit samples")
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
    return check_iuv(iuv_from_png_channels(image, str(path)), str(path))
