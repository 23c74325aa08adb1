"""Reading and writing still images (PIL for robust decoding, EXIF orientation applied)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from retarget.errors import InputError
from retarget.io.atomic import atomic_output

#: Largest photo accepted without ``--allow-large`` (width x height).
MAX_PIXELS = 50_000_000
#: Largest decoded size of any image (``--allow-large`` included): samples x their bytes (16-bit count twice).
MAX_DECODED_BYTES = 1 << 30
MIN_SIDE = 64


def _pil_hard_limit() -> int | None:
    """Pixels above which PIL refuses to open any image (twice its ``MAX_IMAGE_PIXELS``; never changed here)."""
    from PIL import Image

    return None if Image.MAX_IMAGE_PIXELS is None else 2 * int(Image.MAX_IMAGE_PIXELS)


def checked_header(path: str | Path, *, allow_large: bool | None = False, what: str = "image"):
    """The declared header of an image input, checked before anything is decoded.

    ``path`` must be a regular file (:func:`retarget.io.guard.check_input`); its declared size must be
    at most :data:`MAX_PIXELS` (unless ``allow_large``), PIL's own limit, and :data:`MAX_DECODED_BYTES`
    decoded. ``allow_large=None``: the command has no ``--allow-large`` (the messages do not offer it).
    Returns the :class:`densepose_adapter.image_header.ImageHeader`.

    Raises:
        InputError: one line naming the file.
    """
    from densepose_adapter.image_header import UnreadableHeader, read_image_header
    from retarget.io.guard import check_input

    path = Path(path)
    check_input(path, noun="an image file")
    try:
        header = read_image_header(path)
    except UnreadableHeader as exc:
        if "unknown format" in str(exc):
            raise InputError(f"{path}: not an image file (unknown format); give a JPEG or PNG photo") from None
        reason = str(exc).split("(", 1)[-1].rsplit(")", 1)[0] if "(" in str(exc) else "damaged header"
        raise InputError(f"{path}: cannot decode image ({reason}); the file is damaged or incomplete, "
                         "re-export or re-download it") from None
    w, h = header.width, header.height
    if header.pixels > MAX_PIXELS and not allow_large:
        advice = "use a smaller image" if allow_large is None else "pass --allow-large to process it anyway"
        raise InputError(f"{path}: {what} is {w}x{h} ({w * h / 1e6:.0f} MP), above the 50 MP limit; {advice}")
    hard = _pil_hard_limit()
    if (hard is not None and header.pixels > hard) or header.decoded_bytes > MAX_DECODED_BYTES:
        limit = f"{hard / 1e6:.0f} MP" if hard is not None and header.pixels > hard else \
            f"{MAX_DECODED_BYTES >> 20} MiB decoded ({header.channels} x {header.bits}-bit samples a pixel)"
        raise InputError(f"{path}: {what} is {w}x{h} ({w * h / 1e6:.0f} MP), above the {limit} that can be "
                         f"decoded{'' if allow_large is None else ', even with --allow-large'}; use a smaller image")
    return header


def read_image_rgb(path: str | Path, *, allow_large: bool = False, min_side: int = 1) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8`` RGB.

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit files are
    converted; the EXIF orientation is applied. The declared size is checked before decoding
    (:func:`checked_header`). Every problem raises :class:`InputError` with one line.

    Args:
        path: image file.
        allow_large: accept images above 50 megapixels.
        min_side: smallest accepted width/height in pixels.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    checked_header(path, allow_large=allow_large)
    try:
        with warnings.catch_warnings():  # e.g. "possibly corrupt EXIF", PIL's bomb warning: sizes are checked
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                array = _to_rgb8(img)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file (unknown format); give a JPEG or PNG photo") from None
    except MemoryError:
        raise InputError(f"{path}: image too large to decode in the available memory") from None
    except Exception as exc:  # noqa: BLE001 - decoders of untrusted files fail in many ways; all mean "damaged"
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot decode image ({reason}); the file is damaged or incomplete, "
                         "re-export or re-download it") from None
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise InputError(f"{path}: unsupported image layout {array.shape}; convert it to an RGB JPEG or PNG")
    if min(array.shape[:2]) < min_side:
        raise InputError(f"{path}: image is {array.shape[1]}x{array.shape[0]}, smaller than {min_side} px on a "
                         "side; use a larger photo")
    return array


def _to_rgb8(img) -> np.ndarray:
    if img.mode.startswith("I;16"):  # integer rounding of x / 257 (no float64 copy of a large image)
        data = np.asarray(img).astype(np.uint32)
        gray = ((data + 128) // 257).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "I":
        data = np.asarray(img, dtype=np.float64)
        scale = 257.0 if data.max() > 255 else 1.0
        gray = np.clip(np.round(data / scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        gray = np.clip(np.asarray(img) * (255.0 if np.asarray(img).max() <= 1 else 1.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def encode_image(path: str | Path, image: np.ndarray) -> bytes:
    """``(H, W, 3) uint8`` RGB encoded in the format of ``path``'s suffix (.png, .jpg, ...)."""
    import cv2

    path = Path(path)
    ext = path.suffix.lower() or ".png"
    ok, data = cv2.imencode(ext, np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise InputError(f"{path}: cannot encode an image with suffix {ext!r}")
    return data.tobytes()


def write_image_rgb(path: str | Path, image: np.ndarray, *, overwrite: bool = True) -> Path:
    """Write ``(H, W, 3) uint8`` RGB atomically (format from the suffix: .png, .jpg, ...); ``overwrite=False``
    never replaces a file that appeared meanwhile (:func:`retarget.io.atomic.atomic_output`)."""
    path = Path(path)
    data = encode_image(path, image)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return path


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in ``[0, 1]`` → uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
