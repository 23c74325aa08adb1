"""Bounded, seeded fuzzing of the decode edges: mutated small videos and images never crash.

A few hundred mutations (bit flips, overwritten runs, truncations, deleted/duplicated/inserted
spans) of tiny valid files go through the functions that read user files; the only exception
allowed out is our one-line :class:`retarget.errors.InputError`.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retarget.errors import InputError
from retarget.io.image import read_image_rgb
from retarget.io.iuv import read_iuv_png, read_uv_npy
from retarget.io.video import iter_frames, probe_video
from tests import badmedia

SEED = 20240508


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random structural or bit-level change (sometimes two), never the identity."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 3))):
        kind = int(rng.integers(0, 6))
        n = len(out)
        if n < 8:
            break
        at = int(rng.integers(0, n))
        span = int(rng.integers(1, max(2, min(64, n - at))))
        if kind == 0:  # flip a few bits
            for pos in rng.integers(0, n, size=int(rng.integers(1, 9))):
                out[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # overwrite a run with random bytes or an extreme value
            fill = rng.integers(0, 256, size=span, dtype=np.uint8).tobytes() if rng.random() < 0.5 else \
                bytes([int(rng.choice([0x00, 0xFF, 0x7F, 0x80]))]) * span
            out[at:at + span] = fill
        elif kind == 2:  # truncate
            del out[at:]
        elif kind == 3:  # delete a span
            del out[at:at + span]
        elif kind == 4:  # duplicate a span
            out[at:at] = out[at:at + span]
        else:  # insert random bytes
            out[at:at] = rng.integers(0, 256, size=span, dtype=np.uint8).tobytes()
    return bytes(out) if bytes(out) != data else bytes(out[: len(out) // 2])


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC, so that a mutation reaches the PNG decoder instead of its checksum test."""
    out, pos = bytearray(data[:8]), 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        body = data[pos + 4:pos + 8 + length]
        if len(body) != 4 + length:
            break
        out += data[pos:pos + 4] + body + struct.pack(">I", zlib.crc32(body))
        pos += 12 + length
    return bytes(out + data[pos:])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    frames, iuvs = badmedia.person_frames(4, 32, 32)
    out = {
        "h264.mp4": badmedia.write_video(folder / "a.mp4", frames, audio=True).read_bytes(),
        "png.mov": badmedia.write_video(folder / "b.mov", frames, codec="png", fmt="mov", pix_fmt="rgb24").read_bytes(),
        "mjpeg.mkv": badmedia.write_video(folder / "c.mkv", frames, codec="mjpeg", fmt="matroska",
                                          pix_fmt="yuvj420p").read_bytes(),
    }
    for name, fmt, kwargs in (("photo.png", "PNG", {}), ("photo.jpg", "JPEG", {"quality": 90}),
                              ("photo.gif", "GIF", {})):
        buffer = io.BytesIO()
        Image.fromarray(frames[0]).save(buffer, fmt, **kwargs)
        out[name] = buffer.getvalue()
    import cv2

    out["iuv.png"] = cv2.imencode(".png", iuvs[1])[1].tobytes()
    buffer = io.BytesIO()
    np.save(buffer, np.full((8, 8, 2), 0.5, np.float32))
    out["uv.npy"] = buffer.getvalue()
    return out


def _read_video(path: Path) -> int:
    probe_video(path)
    return sum(1 for _ in iter_frames(path))


READERS = {
    "h264.mp4": _read_video, "png.mov": _read_video, "mjpeg.mkv": _read_video,
    "photo.png": read_image_rgb, "photo.jpg": read_image_rgb, "photo.gif": read_image_rgb,
    "iuv.png": read_iuv_png, "uv.npy": read_uv_npy,
}
COUNTS = {"h264.mp4": 120, "png.mov": 80, "mjpeg.mkv": 80, "photo.png": 60, "photo.jpg": 60, "photo.gif": 40,
          "iuv.png": 60, "uv.npy": 60}  # 560 inputs, a few seconds


@pytest.mark.parametrize("kind", sorted(READERS))
def test_mutated_inputs_fail_cleanly(kind, seeds, tmp_path):
    rng = np.random.default_rng([SEED, sorted(READERS).index(kind)])
    reader = READERS[kind]
    reader(_write(tmp_path / f"seed_{kind}", seeds[kind]))  # the unmutated seed reads fine
    outcomes = {"ok": 0, "error": 0}
    for i in range(COUNTS[kind]):
        data = mutate(seeds[kind], rng)
        if kind.endswith(".png") and i % 2:
            data = fix_png_crcs(data)
        path = _write(tmp_path / f"m{i:03d}_{kind}", data)
        try:
            reader(path)
            outcomes["ok"] += 1
        except InputError as exc:
            message = str(exc)
            assert "\n" not in message and str(path) in message, message
            outcomes["error"] += 1
        # anything else propagates and fails the test, with the seed and index in the file name
    assert sum(outcomes.values()) == COUNTS[kind]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
