"""Reading and writing still images (PIL for robust decoding, EXIF orientation applied)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from retarget.errors import InputError
from retarget.io.atomic import atomic_output

MAX_PIXELS = 50_000_000
MIN_SIDE = 64


def read_image_rgb(path: str | Path, *, allow_large: bool = False, min_side: int = 1) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8`` RGB.

    Grayscale, palette, RGBA (alpha dropped), CMYK and 16-bit files are
    converted; the EXIF orientation is applied. Every problem raises :class:`InputError` with one line.

    Args:
        path: image file.
        allow_large: accept images above 50 megapixels.
        min_side: smallest accepted width/height in pixels.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an image file")
    Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below, with a clearer message
    try:
        with warnings.catch_warnings():  # e.g. "possibly corrupt EXIF": the result is what counts
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_PIXELS and not allow_large:
                    raise InputError(f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} MP), above the 50 MP limit; "
                                     "pass --allow-large to process it anyway")
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
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        data = np.asarray(img, dtype=np.float64)
        scale = 257.0 if data.max() > 255 or img.mode.startswith("I;16") else 1.0
        gray = np.clip(np.round(data / scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        gray = np.clip(np.asarray(img) * (255.0 if np.asarray(img).max() <= 1 else 1.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def write_image_rgb(path: str | Path, image: np.ndarray) -> Path:
    """Write ``(H, W, 3) uint8`` RGB atomically (format from the suffix: .png, .jpg, ...)."""
    import cv2

    path = Path(path)
    ext = path.suffix.lower() or ".png"
    ok, data = cv2.imencode(ext, np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise InputError(f"{path}: cannot encode an image with suffix {ext!r}")
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in ``[0, 1]`` → uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
