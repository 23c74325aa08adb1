"""Media for the reliability tests: small clips in awkward shapes, and ways to damage files.

Everything is generated in the test's folder: tiny H.264 clips (optionally rotated, variable frame
rate, odd-sized, with audio), a person cut from the example photo moving over a textured
background with the matching per-frame DensePose IUV as a ``<stem>.iuv.npz`` sidecar, and helpers
that truncate files, flip bits and rewrite an mp4's track matrix the way phones store rotation.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import numpy as np

from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO



def _imread(path: Path, flags=None) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED if flags is None else flags)
    assert image is not None, path
    return image


def write_source(folder: Path, size: tuple[int, int] = (128, 128), name: str = "source") -> tuple[Path, Path]:
    """A source photo ``<name>.png`` and its IUV sidecar ``<name>_IUV.png``, resized to ``size`` (w, h)."""
    import cv2

    photo = _imread(EXAMPLE_PHOTO, cv2.IMREAD_COLOR)
    iuv = _imread(EXAMPLE_IUV)
    photo = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    iuv = cv2.resize(iuv, size, interpolation=cv2.INTER_NEAREST)
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}.png"), photo)
    cv2.imwrite(str(folder / f"{name}_IUV.png"), iuv)
    return folder / f"{name}.png", folder / f"{name}_IUV.png"


def person_frames(n: int, width: int = 96, height: int = 96, seed: int = 0,
                  missing: tuple[int, ...] = ()) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` RGB frames of a person moving over a textured background, and their ``(n, H, W, 3)`` IUV.

    Frames listed in ``missing`` show only the background (their IUV is all zero).
    """
    import cv2

    person = _imread(EXAMPLE_PHOTO, cv2.IMREAD_COLOR)[..., ::-1]
    iuv = _imread(EXAMPLE_IUV)
    scale = 0.8 * height / person.shape[0]
    pw, ph = int(person.shape[1] * scale), int(person.shape[0] * scale)
    person = cv2.resize(np.ascontiguousarray(person), (pw, ph), interpolation=cv2.INTER_AREA)
    iuv = cv2.resize(iuv, (pw, ph), interpolation=cv2.INTER_NEAREST)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([120 + 80 * x / width, 160 - 50 * y / height, 140 + 30 * np.sin(x / 7)], -1)
    background = np.clip(background + rng.normal(0, 4, background.shape), 0, 255).astype(np.uint8)
    frames, iuvs = [], []
    for i in range(n):
        dx = int(round((width - pw) / 2 + 0.2 * width * np.sin(2 * np.pi * i / max(n, 2))))
        dy = (height - ph) // 2
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        frame_iuv = cv2.warpAffine(iuv, m, (width, height), flags=cv2.INTER_NEAREST)
        warped = cv2.warpAffine(person, m, (width, height), flags=cv2.INTER_LINEAR)
        alpha = (frame_iuv[..., 0] > 0)[..., None]
        if i in missing:
            frame_iuv = np.zeros_like(frame_iuv)
            alpha = np.zeros_like(alpha)
        frames.append(np.where(alpha, warped, background).astype(np.uint8))
        iuvs.append(frame_iuv)
    return frames, np.stack(iuvs)


def _tone(seconds: float, rate: int = 16000) -> np.ndarray:
    total = max(1, int(rate * seconds))
    return (0.1 * np.sin(2 * np.pi * 440 * np.arange(total) / rate)).astype(np.float32)


def _encode_audio(container, stream, tone: np.ndarray, rate: int = 16000) -> None:
    import av

    for start in range(0, len(tone), 1024):
        chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = rate, start
        for packet in stream.encode(chunk):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, *, pts: list[int] | None = None,
                time_base: Fraction | None = None, rotation: int = 0, audio: bool = False,
                codec: str = "libx264", fmt: str | None = None, pix_fmt: str | None = None) -> Path:
    """Encode RGB frames (all the same size) to ``path``.

    Args:
        pts: per-frame timestamps in ``time_base`` (default ``0, 1, 2, ...`` in ``1/fps``); uneven
            steps give a variable-frame-rate file.
        rotation: display-matrix angle (degrees, counter-clockwise) written into the container.
        audio: add an AAC tone as long as the video.
        fmt: container format (default: from the suffix).
        pix_fmt: pixel format (default: yuv420p, or yuv444p for odd sizes).
    """
    import av

    time_base = time_base or Fraction(1, fps)
    pts = list(range(len(frames))) if pts is None else pts
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        # 4:2:0 needs even sizes; odd-sized clips are stored 4:4:4
        pix_fmt = pix_fmt or ("yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p")
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        astream = None
        if audio:
            astream = container.add_stream("aac", rate=16000)
            astream.layout = "mono"
        for rgb, t in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = t, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if astream is not None:
            _encode_audio(container, astream, _tone((pts[-1] + 1) * float(time_base)))
    return path


def write_audio_only(path: Path, seconds: float = 0.5) -> Path:
    """An mp4 holding only an AAC stream."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        astream = container.add_stream("aac", rate=16000)
        astream.layout = "mono"
        _encode_audio(container, astream, _tone(seconds))
    return path


def write_empty_video(path: Path, width: int = 64, height: int = 64) -> Path:
    """An mp4 with a video stream that holds no frames."""
    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    return path


def write_driver(folder: Path, name: str = "driver", n: int = 6, width: int = 96, height: int = 96,
                 fps: int = 10, missing: tuple[int, ...] = (), **video_kwargs) -> Path:
    """A driver clip ``<name>.mp4`` with its IUV sidecar ``<name>.iuv.npz`` (in display orientation)."""
    frames, iuvs = person_frames(n, width, height, missing=missing)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_video(folder / f"{name}.mp4", frames, fps, **video_kwargs)
    rotation = video_kwargs.get("rotation", 0) % 360
    if rotation:  # the sidecar describes frames as displayed (counter-clockwise by the matrix angle)
        iuvs = np.stack([np.rot90(i, k=rotation // 90) for i in iuvs])
    np.savez(folder / f"{name}.iuv.npz", iuv=iuvs)
    return path


def set_track_rotation(path: Path, clockwise: int, out: Path | None = None) -> Path:
    """Rewrite the first ``tkhd`` matrix of an mp4 as a phone does: display rotated ``clockwise`` degrees.

    Independent of PyAV's side-data API: the 3x3 matrix in the track header is patched in place
    (the box layout is fixed by ISO/IEC 14496-12).
    """
    one = 1 << 16
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[clockwise % 360]
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0, "no track header"
    version = data[at + 4]
    # version/flags, times/track id/reserved/duration, reserved(8), layer, alt group, volume, reserved
    offset = at + 4 + 4 + (20 if version == 0 else 32) + 8 + 2 + 2 + 2 + 2
    matrix = (cos * one, sin * one, 0, -sin * one, cos * one, 0, 0, 0, 1 << 30)
    data[offset:offset + 36] = struct.pack(">9i", *matrix)
    out = out or path
    out.write_bytes(bytes(data))
    return out


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of a video as RGB arrays (as stored, rotation not applied)."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def video_pts(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as container:
        return [f.pts for f in container.decode(video=0)]


def truncate(path: Path, fraction: float, out: Path | None = None) -> Path:
    data = path.read_bytes()
    out = out or path
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def flip_bits(data: bytes, count: int, rng: np.random.Generator, start: int = 0) -> bytes:
    buffer = bytearray(data)
    for pos in rng.integers(start, len(buffer), size=count):
        buffer[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(buffer)
