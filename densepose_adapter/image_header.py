"""What an image file declares about itself, read before anything is decoded.

A small file can announce a huge image (a "decompression bomb": a 329 KB 16-bit PNG that decodes to
4.7 GB). :func:`read_image_header` reads only the header: PNG's ``IHDR`` chunk directly (width,
height, bit depth, colour type), any other format through PIL's ``Image.open`` (which parses the header
and decodes nothing). :func:`check_image_header` compares what it declares with a budget before the
caller decodes. PIL's process-wide ``Image.MAX_IMAGE_PIXELS`` is never changed; its
``DecompressionBombWarning`` is silenced for the header read only, and its ``DecompressionBombError``
(above twice that limit) becomes a one-line :class:`~densepose_adapter.errors.InputError` like any
other image that is too large.
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from densepose_adapter.errors import InputError

__all__ = ["ImageHeader", "UnreadableHeader", "check_image_header", "read_image_header"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: PNG colour type → channels.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: PIL mode → (channels, bytes per channel) of the decoded image.
_PIL_MODES = {"1": (1, 1), "L": (1, 1), "P": (1, 1), "LA": (2, 1), "La": (2, 1), "PA": (2, 1), "RGB": (3, 1),
              "YCbCr": (3, 1), "LAB": (3, 1), "HSV": (3, 1), "RGBA": (4, 1), "RGBa": (4, 1), "RGBX": (4, 1),
              "CMYK": (4, 1), "I": (1, 4), "F": (1, 4), "I;16": (1, 2), "I;16L": (1, 2), "I;16B": (1, 2),
              "I;16N": (1, 2)}


class UnreadableHeader(InputError):
    """The file is not an image of a known format, or its header is damaged (callers may reword it)."""


@dataclass(frozen=True)
class ImageHeader:
    """What a file declares.

    Attributes:
        width, height: pixels.
        channels: samples per pixel (1 gray / palette, 2 gray + alpha, 3 RGB, 4 RGBA / CMYK).
        bits: bits per sample (8 or 16 for PNG; from PIL's mode otherwise).
        format: ``PNG``, ``JPEG``, ... (PIL's name).
    """

    width: int
    height: int
    channels: int
    bits: int
    format: str

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the decoded pixels at full sample depth (what OpenCV's ``IMREAD_UNCHANGED`` allocates)."""
        return self.pixels * self.channels * max(1, (self.bits + 7) // 8)


def _png_header(head: bytes) -> ImageHeader | None:
    if len(head) < 29 or head[:8] != _PNG_MAGIC or head[12:16] != b"IHDR":
        return None
    width, height, bits, colour = struct.unpack(">IIBB", head[16:26])
    return ImageHeader(width, height, _PNG_CHANNELS.get(colour, 4), max(8, bits), "PNG")


def read_image_header(path: str | Path) -> ImageHeader:
    """The declared size and sample layout of the image file ``path``; nothing is decoded.

    Raises:
        InputError: not an image (unknown format), an unreadable header, or a size PIL refuses to
            even open (above its decompression-bomb limit; the message gives the declared pixels).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    png = _png_header(head)
    if png is not None:
        return png
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning, "possibly corrupt EXIF": judged below
            with Image.open(path) as image:
                channels, depth = _PIL_MODES.get(image.mode, (4, 4))
                return ImageHeader(image.width, image.height, channels, 8 * depth, str(image.format or "?"))
    except UnidentifiedImageError:
        raise UnreadableHeader(f"{path}: not an image file (unknown format)") from None
    except Image.DecompressionBombError as exc:
        numbers = re.findall(r"\d+", str(exc))
        declared = f" ({int(numbers[0]) / 1e6:.0f} MP)" if numbers else ""
        raise InputError(f"{path}: the image declares a size{declared} far above what can be decoded; the file "
                         "is damaged or not a photo") from None
    except Exception as exc:  # noqa: BLE001 - header parsers of untrusted files fail in many ways
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise UnreadableHeader(f"{path}: cannot read the image header ({reason}); the file is damaged") from None


def check_image_header(path: str | Path, *, max_pixels: int | None = None, max_bytes: int | None = None,
                       size: tuple[int, int] | None = None, what: str = "image") -> ImageHeader:
    """Read the header of ``path`` (:func:`read_image_header`) and check it against a budget, before decoding.

    Args:
        max_pixels: largest accepted width x height.
        max_bytes: largest accepted decoded size (:attr:`ImageHeader.decoded_bytes`: 16-bit samples count twice).
        size: ``(width, height)`` the image must have (a texture, an IUV of a known photo).
        what: how the message names the file's role.

    Raises:
        InputError: the declared size exceeds a limit or differs from ``size``.
    """
    header = read_image_header(path)
    w, h = header.width, header.height
    if size is not None and (w, h) != tuple(size):
        raise InputError(f"{path}: {what} is {w}x{h} but {size[0]}x{size[1]} is needed")
    if w < 1 or h < 1:
        raise InputError(f"{path}: {what} declares an empty size {w}x{h}; the file is damaged")
    if max_pixels is not None and header.pixels > max_pixels:
        raise InputError(f"{path}: {what} is {w}x{h} ({header.pixels / 1e6:.0f} MP), above the "
                         f"{max_pixels / 1e6:.0f} MP limit")
    if max_bytes is not None and header.decoded_bytes > max_bytes:
        raise InputError(f"{path}: {what} is {w}x{h} with {header.channels} x {header.bits}-bit samples: "
                         f"{header.decoded_bytes / 2**20:.0f} MiB decoded, above the {max_bytes / 2**20:.0f} MiB "
                         "limit")
    return header
