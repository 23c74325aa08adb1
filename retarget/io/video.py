"""Streaming video I/O with PyAV: probe, decode frame by frame, encode H.264 with audio pass-through.

Frames are ``(H, W, 3) uint8`` RGB numpy arrays. Nothing here holds more than a few frames.
Timing is kept exactly: every output frame reuses its input frame's ``pts`` in the input stream's
time base, so variable frame rates survive.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from retarget.errors import InputError


def _av():
    import av

    return av


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a driver video before decoding it.

    Attributes:
        width, height: display size (after rotation metadata is applied).
        fps: average frame rate (frames per second) as a fraction.
        time_base: time base of the video stream's ``pts``.
        frame_count: frames announced by the container (0 when unknown).
        duration: seconds (0 when unknown).
        has_audio: the file has an audio stream.
        rotation: clockwise degrees the frames are rotated by on display (0/90/180/270).
        truncated: the container's index lists frames whose data lies beyond the end of the file
            (an interrupted download or copy); decoding stops early with :class:`VideoDecodeError`.
    """

    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    frame_count: int
    duration: float
    has_audio: bool
    rotation: int
    truncated: bool = False


class VideoDecodeError(InputError):
    """Decoding stopped before the end of the video (corrupt or truncated data).

    Attributes:
        frames: how many frames were decoded (and yielded) before the problem.
    """

    def __init__(self, message: str, frames: int):
        super().__init__(message)
        self.frames = frames


@dataclass
class VideoFrame:
    """One decoded frame: ``index`` counts from 0; ``pts`` is in the stream time base (may be None)."""

    index: int
    pts: int | None
    time: float
    rgb: np.ndarray


def _open(path: Path):
    from retarget.io.guard import check_input

    av = _av()
    check_input(path, noun="a video file")  # a regular file: a FIFO or a device would block or never end
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable video ({_reason(exc)}); it is not a video file, or an "
                         "incomplete one (interrupted download or copy)") from None


def _reason(exc: BaseException) -> str:
    """The library's description of ``exc``, without errno numbers and file names (we print those)."""
    text = getattr(exc, "strerror", None) or str(exc)
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    text = text[:1].lower() + text[1:] if text[1:2].islower() else text
    return text[:120]


def _truncation(container, stream, path: Path) -> tuple[int, int] | None:
    """``(complete, listed)`` frames when the index lists sample data beyond the end of the file, else None.

    Containers with a sample index (mp4/mov) record where every frame's bytes are; a file cut short
    (interrupted download/copy with the index at the front) still lists all of them.
    """
    try:
        entries = stream.index_entries
        size = path.stat().st_size
    except (AttributeError, OSError):
        return None
    listed = complete = 0
    for entry in entries:
        if entry.pos < 0:
            continue
        listed += 1
        complete += entry.pos + entry.size <= size
    return (complete, listed) if complete < listed else None


def _declared_duration(container, stream) -> float | None:
    """Seconds a Matroska / WebM video stream declares (its ``DURATION`` tag, written with the header), or ``None``.

    Those files keep no sample index at the front (their cues are at the end), so a file cut short is found by
    comparing where its decoded frames end with what it declares. Other containers: ``None`` (an mp4's index
    serves, :func:`_truncation`).
    """
    if "matroska" not in (getattr(container.format, "name", "") or ""):
        return None
    text = (stream.metadata or {}).get("DURATION") or (stream.metadata or {}).get("duration")
    if not text:
        return None
    try:
        hours, minutes, seconds = str(text).strip().split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _rotation_of(stream, first_frame=None) -> int:
    angle = 0
    if first_frame is not None and getattr(first_frame, "rotation", None) is not None:
        angle = int(first_frame.rotation)
    return (-angle) % 360  # PyAV reports the counter-clockwise display-matrix angle


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's metadata (decodes at most its first frame to learn the rotation)."""
    path = Path(path)
    with contextlib.closing(_open(path)) as container:
        if not container.streams.video:
            kind = "an audio-only file" if container.streams.audio else "the file holds no streams (empty video?)"
            raise InputError(f"{path}: no video stream ({kind}); give a video with at least one frame")
        stream = container.streams.video[0]
        first = None
        try:
            for first in container.decode(stream):
                break
        except (_av().FFmpegError, ValueError) as exc:
            raise InputError(f"{path}: cannot decode the first video frame ({_reason(exc)}); the file is "
                             "corrupt — re-encode or repair it") from None
        if first is None:
            raise InputError(f"{path}: the video stream has no frames; give a video with at least one frame")
        rotation = _rotation_of(stream, first)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        fps = stream.average_rate or stream.guessed_rate or Fraction(25)
        duration = float(stream.duration * stream.time_base) if stream.duration else (
            float(container.duration / 1e6) if container.duration else 0.0)
        return VideoInfo(width=width, height=height, fps=Fraction(fps), time_base=Fraction(stream.time_base),
                         frame_count=int(stream.frames or 0), duration=duration,
                         has_audio=bool(container.streams.audio), rotation=rotation,
                         truncated=_truncation(container, stream, path) is not None)


#: Smallest driver side: the output is cropped to even sizes (H.264 4:2:0) and the person is framed
#: in a square crop around the DensePose box, which needs a few pixels of person to mean anything.
MIN_DRIVER_SIDE = 32


def check_driver_size(info: VideoInfo, path: str | Path) -> None:
    """Refuse a driver smaller than :data:`MIN_DRIVER_SIDE` on a side (displayed size), before any work.

    Raises:
        InputError: one line naming the file, its size and the limit.
    """
    if min(info.width, info.height) < MIN_DRIVER_SIDE:
        raise InputError(f"{path}: video is {info.width}x{info.height}, smaller than {MIN_DRIVER_SIDE} px on a "
                         f"side (the smallest driver retarget supports); use a larger video")


def _apply_rotation(rgb: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 90:
        return np.ascontiguousarray(np.rot90(rgb, k=-1))
    if rotation == 180:
        return np.ascontiguousarray(rgb[::-1, ::-1])
    if rotation == 270:
        return np.ascontiguousarray(np.rot90(rgb, k=1))
    return rgb


def iter_frames(path: str | Path, rotation: int | None = None, *, on_error: str = "raise") -> Iterator[VideoFrame]:
    """Decode a video frame by frame (threaded decoding), applying rotation metadata.

    Args:
        path: video file.
        rotation: clockwise display rotation from :func:`probe_video` (probed when ``None``).
        on_error: ``"raise"``: a decoding error mid-stream raises :class:`VideoDecodeError` naming the
            frame, after every frame before it was yielded.

    Yields:
        :class:`VideoFrame` with ``rgb`` of shape ``(H, W, 3) uint8``.

    Raises:
        VideoDecodeError: corrupt data mid-stream, or a truncated file (after its last complete frame).
    """
    path = Path(path)
    if rotation is None:
        rotation = probe_video(path).rotation
    av = _av()
    with contextlib.closing(_open(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        truncated = _truncation(container, stream, path)
        declared = _declared_duration(container, stream) if truncated is None else None
        index, end = 0, 0.0
        try:
            for frame in container.decode(stream):
                rgb = _apply_rotation(frame.to_ndarray(format="rgb24"), rotation)
                yield VideoFrame(index=index, pts=frame.pts, time=float(frame.time or 0.0), rgb=rgb)
                index += 1
                end = max(end, float(frame.time or 0.0))
        except (av.FFmpegError, ValueError) as exc:
            raise VideoDecodeError(f"{path}: video is corrupt after frame {index} ({_reason(exc)}); "
                                   "re-encode or repair it", frames=index) from None
        if truncated is not None:
            raise VideoDecodeError(f"{path}: the file is truncated (an interrupted download or copy?): only "
                                   f"{truncated[0]} of its {truncated[1]} frames are in the file, {index} "
                                   "decoded; get the complete file", frames=index)
        if declared is not None and index:
            period = 1.0 / float(stream.average_rate or stream.guessed_rate or 25)
            if end + period < declared - max(2 * period, 0.1):  # more than two frames short of its declared end
                raise VideoDecodeError(f"{path}: the file is truncated (an interrupted download or copy?): its "
                                       f"video ends at {end + period:.2f} s of the {declared:.2f} s it declares, "
                                       f"{index} frames decoded; get the complete file", frames=index)


def _cpu_has_avx512() -> bool:
    """Whether this CPU (and OS) runs AVX-512, as NumPy's runtime dispatch detected it."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # NumPy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return False
    return bool(features.get("AVX512F") and features.get("AVX2"))


#: x264 options that make the bitstream a function of the frames only. x264's AVX-512 kernels
#: (macroblock-tree rate control with B-frames) read heap memory they never wrote, so identical frames
#: encoded in one process gave different files, depending on what earlier allocations had left there
#: (thread timing, CPU load): decoded frames differed by up to ~15 levels. Capping x264 at AVX2 (every
#: AVX-512 CPU has it) gives the bitstream of an unaffected run whatever the heap holds.
_X264_DETERMINISTIC: dict[str, str] = {"x264-params": "asm=avx2"} if _cpu_has_avx512() else {}


#: Container format of each output extension.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}

#: Per encoder: pixel format, whether odd sizes are cropped to even, encoder options. FFV1 stores the
#: RGB frames themselves (``bgr0``: lossless, any size); ProRes is 4444 (10-bit 4:4:4, any size).
_ENCODINGS = {
    "libx264": ("yuv420p", True, {}),
    "ffv1": ("bgr0", False, {"level": "3", "slicecrc": "1"}),
    "prores_ks": ("yuv444p10le", False, {"profile": "4444"}),
}


class VideoWriter:
    """Encode RGB frames to a video file, copying an input's audio stream.

    ``codec``: ``libx264`` (H.264 ``yuv420p`` at ``crf``; 0 is lossless (``qp 0``), up to the
    RGB→``yuv420p`` conversion; odd frame sizes are cropped by one pixel to the even size ``yuv420p``
    needs), ``ffv1`` (lossless RGB, ``.mkv``) or ``prores_ks`` (ProRes 4444, ``.mov``). The container
    follows the extension (``.mp4``/``.m4v``, ``.mov``, ``.mkv``). Frame ``pts`` are given by the
    caller in ``time_base`` (use the driver's), so the input timing is preserved (Matroska rounds
    times to the millisecond).

    The audio is copied when the container can hold its codec; otherwise the output has no audio and
    :attr:`audio_note` says why.

    Use as a context manager; :meth:`close` flushes the encoder and muxes the audio.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: Fraction, time_base: Fraction,
                 audio_from: str | Path | None = None, crf: int = 18, preset: str = "veryfast",
                 codec: str = "libx264"):
        av = _av()
        self.path = Path(path)
        pix_fmt, even, defaults = _ENCODINGS.get(codec, ("yuv420p", True, {}))
        self.width, self.height = (width - width % 2, height - height % 2) if even else (width, height)
        self.time_base = time_base
        container_format = CONTAINERS.get(self.path.suffix.lower(), "mp4")
        # Matroska would shift every timestamp by the audio's priming (negative) start; keep the video's
        options = {"avoid_negative_ts": "disabled"} if container_format == "matroska" else {}
        self._container = av.open(str(self.path), "w", format=container_format, options=options)
        self._stream = self._container.add_stream(codec, rate=fps)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = pix_fmt
        self._stream.time_base = time_base
        self._stream.codec_context.time_base = time_base
        options = dict(defaults)
        if codec == "libx264":
            options.update({"preset": preset, **({"qp": "0"} if crf == 0 else {"crf": str(crf)})})
            options.update(_X264_DETERMINISTIC)
        self._stream.options = options
        self._audio_in = None
        self._audio_out = None
        self.audio_note: str | None = None
        if audio_from is not None:
            source = av.open(str(audio_from))
            name = source.streams.audio[0].codec_context.name if source.streams.audio else None
            if name is not None and name not in self._container.supported_codecs:
                self.audio_note = (f"the driver's audio ({name}) cannot be stored in {self.path.suffix}; the "
                                   "output has no audio (use .mkv to keep it)")
                name = None
            if name is not None:
                self._audio_in = source
                self._audio_out = self._container.add_stream_from_template(source.streams.audio[0])
            else:
                source.close()
        self._last_pts: int | None = None
        self.frames_written = 0

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        """Encode one ``(H, W, 3) uint8`` RGB frame at ``pts`` (in ``time_base``)."""
        av = _av()
        rgb = np.ascontiguousarray(rgb[: self.height, : self.width])
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            step = max(1, round(1 / (float(self._stream.average_rate or 25) * float(self.time_base))))
            pts = 0 if self._last_pts is None else self._last_pts + step
        frame.pts, frame.time_base = pts, self.time_base
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, copy the audio packets and finish the file (errors propagate)."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            if self._audio_in is not None:
                self._copy_audio()
            container, self._container = self._container, None
            container.close()
        finally:
            self.abort()

    def _copy_audio(self) -> None:
        """Copy the input's audio packets; a damaged input's audio ends at its first unreadable packet."""
        av = _av()
        packets = self._audio_in.demux(self._audio_in.streams.audio[0])
        while True:
            try:
                packet = next(packets, None)
            except (av.FFmpegError, ValueError):
                return
            if packet is None:
                return
            if packet.dts is None:
                continue
            packet.stream = self._audio_out
            self._container.mux(packet)

    def abort(self) -> None:
        """Release every handle without finishing the file (the caller discards it)."""
        for handle in (self._audio_in, self._container):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        self._audio_in = self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
