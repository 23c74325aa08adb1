"""Live video I/O for ``retarget stream``: open a pipe, camera, network URL or file as a frame source,
and write frames to a pipe, URL, file or virtual camera while they come.

Inputs (:class:`StreamInput`): ``-`` (stdin: YUV4MPEG2 or any container FFmpeg detects in a pipe, or
``input_format``), ``/dev/videoN`` (v4l2), a URL (``udp://``, ``rtsp://``, ``srt://``, ``http://`` ...,
anything FFmpeg opens), or a file. Frames are :class:`retarget.io.video.VideoFrame` with the input's
``pts`` in its ``time_base``.

Outputs (:func:`open_output`): ``-`` (stdout, YUV4MPEG2 by default), a URL (``udp://``/``srt://``/``tcp://``
as MPEG-TS, ``rtmp://`` as FLV), a file (``.ts``, fragmented ``.mp4``/``.mov``/``.m4v``, ``.mkv``, ``.y4m``,
``.nut``, ``.flv``) or ``vcam`` (pyvirtualcam, optional extra ``retarget[vcam]``). Encoded outputs are
H.264 (``yuv420p``, low-latency settings) with the input frames' timestamps; YUV4MPEG2 has no
timestamps, so a gap in them (dropped or skipped frames) repeats the previous frame to keep time.
Frame sizes are cropped to even numbers (4:2:0).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from retarget.errors import InputError, UsageError
from retarget.io.video import VideoFrame

#: URL schemes handed to FFmpeg as network inputs/outputs.
URL_SCHEMES = ("udp", "rtp", "rtsp", "rtsps", "srt", "tcp", "http", "https", "rtmp", "rtmps", "rist", "hls")
#: Container per output file suffix.
OUTPUT_SUFFIXES = {".ts": "mpegts", ".m2ts": "mpegts", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov",
                   ".mkv": "matroska", ".y4m": "yuv4mpegpipe", ".nut": "nut", ".flv": "flv"}
#: Container per output URL scheme.
URL_FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rist": "mpegts", "rtp": "rtp_mpegts",
               "rtmp": "flv", "rtmps": "flv", "rtsp": "rtsp"}
#: What ``--output-format y4m`` and friends mean.
FORMAT_ALIASES = {"y4m": "yuv4mpegpipe", "ts": "mpegts", "mkv": "matroska", "mp4": "mp4"}
FRAGMENTED_MP4 = "frag_keyframe+empty_moov+default_base_moof"


def _av():
    import av

    return av


def url_scheme(spec: str) -> str | None:
    """``udp`` for ``udp://host:port`` (any ``scheme://``), ``None`` for paths and ``-``."""
    head, sep, _ = spec.partition("://")
    return head.lower() if sep and head.isalnum() else None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    text = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def input_kind(spec: str) -> str:
    """``pipe`` (``-``), ``camera`` (``/dev/video*``), ``url`` or ``file``."""
    if spec == "-":
        return "pipe"
    if url_scheme(spec) is not None:
        return "url"
    if spec.startswith("/dev/video"):
        return "camera"
    return "file"


class _CountingReader:
    """A binary stream for PyAV that counts the bytes read (an empty pipe tells apart from garbage)."""

    last_count = 0

    def __init__(self, raw):
        self.raw = raw
        _CountingReader.last_count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        _CountingReader.last_count += len(data)
        return data


class _FdReader:
    """Reads a file descriptor with ``os.read``: no buffered-reader lock, which a thread blocked in a read of
    ``sys.stdin.buffer`` held at interpreter exit (a fatal "could not acquire lock" abort after Ctrl-C)."""

    def __init__(self, fd: int):
        self.fd = fd

    def read(self, size: int = -1) -> bytes:
        return os.read(self.fd, size if size and size > 0 else 1 << 20)


def _stdin() -> object:
    """Standard input for PyAV: its file descriptor (:class:`_FdReader`), or ``sys.stdin.buffer`` without one."""
    try:
        return _FdReader(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return sys.stdin.buffer


class InputEnded(Exception):
    """The input stopped delivering frames after some had come (network silence, camera gone)."""


class StreamInput:
    """A live or recorded source of RGB frames, opened and checked by :meth:`open`.

    Args:
        spec: ``-``, ``/dev/videoN``, a URL or a file path.
        input_format: FFmpeg demuxer name to use instead of probing (``--input-format``).
        timeout: seconds to wait for a network/camera input to open and, once open, between packets.
        realtime: pace a file at its own frame rate (as a camera would deliver it).
    """

    def __init__(self, spec: str, input_format: str | None = None, timeout: float = 10.0,
                 realtime: bool = False):
        self.spec = spec
        self.kind = input_kind(spec)
        self.input_format = FORMAT_ALIASES.get(input_format, input_format) if input_format else None
        self.timeout = float(timeout)
        self.realtime = realtime
        self._container = None
        self._stream = None
        self._first = None
        self.width = self.height = 0
        self.fps: Fraction = Fraction(25)
        self.time_base: Fraction = Fraction(1, 25)

    @property
    def frame_count(self) -> int:
        """Frames a file input's container announces (0: unknown, and for live inputs)."""
        if self.kind != "file" or self._stream is None:
            return 0
        return int(self._stream.frames or 0)

    @property
    def live(self) -> bool:
        """Frames arrive at the source's pace whatever we do (camera, network, or a paced file)."""
        return self.kind in ("camera", "url") or (self.kind == "file" and self.realtime)

    def open(self) -> "StreamInput":
        """Open the input and decode its first frame (so a bad input fails before any output exists).

        Raises:
            InputError: one line: missing file or camera, unreachable URL, a pipe that closed, data
                that is not video.
        """
        av = _av()
        options: dict[str, str] = {}
        kwargs: dict = {}
        fmt = self.input_format
        if self.kind == "file":
            path = Path(self.spec)
            if not path.exists():
                raise InputError(f"{self.spec}: file not found")
            if path.is_dir():
                raise InputError(f"{self.spec}: is a folder, expected a video file or stream")
            target = str(path)
        elif self.kind == "camera":
            if not Path(self.spec).exists():
                raise InputError(f"{self.spec}: no such camera (the device does not exist); list cameras with "
                                 "`ls /dev/video*`")
            fmt = fmt or "v4l2"
            target = self.spec
            kwargs["timeout"] = (self.timeout, self.timeout)
        elif self.kind == "url":
            target = self.spec
            kwargs["timeout"] = (self.timeout, self.timeout)
            if url_scheme(self.spec) == "udp":
                options.update({"fifo_size": "1000000", "overrun_nonfatal": "1"})
        else:
            target = _CountingReader(_stdin())
        try:
            self._container = av.open(target, "r", format=fmt, options=options, **kwargs)
        except av.ExitError:
            raise InputError(f"{self.spec}: nothing arrived within {self.timeout:g} s; check that the sender is "
                             "running and the address (or raise --timeout)") from None
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
            raise InputError(self._open_message(exc)) from None
        streams = self._container.streams.video
        if not streams:
            self.close()
            raise InputError(f"{self.spec}: no video stream in the input; give a video")
        self._stream = streams[0]
        self._stream.thread_type = "AUTO" if (self.kind == "file" and not self.realtime) else "SLICE"
        self._frames = self._container.decode(self._stream)
        try:
            self._first = next(self._frames, None)
        except av.ExitError:
            self.close()
            raise InputError(f"{self.spec}: no video frame arrived within {self.timeout:g} s; check that the "
                             "sender is running (or raise --timeout)") from None
        except (av.FFmpegError, ValueError) as exc:
            self.close()
            raise InputError(f"{self.spec}: cannot decode the first video frame ({_reason(exc)})") from None
        if self._first is None:
            self.close()
            raise InputError(f"{self.spec}: the input ended before its first video frame"
                             + ("; the pipe closed" if self.kind == "pipe" else ""))
        self.width, self.height = self._first.width, self._first.height
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self.fps = Fraction(rate) if rate else Fraction(25)
        self.time_base = Fraction(self._stream.time_base) if self._stream.time_base else 1 / self.fps
        return self

    def _open_message(self, exc: BaseException) -> str:
        reason = _reason(exc)
        if self.kind == "pipe":
            if isinstance(exc, EOFError) or "end of file" in reason.lower() or not self._container_bytes():
                return "-: the input pipe closed before any data arrived; start the sender first"
            return (f"-: the data on stdin is not a video stream FFmpeg can read ({reason}); send YUV4MPEG2 "
                    "(e.g. `ffmpeg ... -f yuv4mpegpipe -`) or name the container with --input-format")
        if self.kind == "camera":
            return f"{self.spec}: cannot open the camera ({reason}); is it a video capture device, and free?"
        if self.kind == "url":
            return (f"{self.spec}: cannot open the stream ({reason}); check the address and that the sender is "
                    "running")
        return f"{self.spec}: not a readable video ({reason})"

    def _container_bytes(self) -> int:
        return 0 if self.kind != "pipe" else _CountingReader.last_count

    def frames(self) -> Iterator[VideoFrame]:
        """The frames from the first, ``index`` counting from 0; a file is paced with ``realtime``.

        Raises:
            InputEnded: a live input went silent for ``timeout`` seconds or broke after some frames.
        """
        av = _av()
        index = 0
        start_wall = start_media = None
        step = 1 / self.fps
        frame = self._first
        self._first = None
        while frame is not None:
            media = float(frame.time) if frame.time is not None else index * float(step)
            pts = frame.pts if frame.pts is not None else int(round(index * step / self.time_base))
            if self.realtime:
                now = time.monotonic()
                if start_wall is None:
                    start_wall, start_media = now, media
                wait = start_wall + (media - start_media) - now
                if wait > 0:
                    time.sleep(wait)
            yield VideoFrame(index=index, pts=pts, time=media, rgb=frame.to_ndarray(format="rgb24"))
            index += 1
            try:
                frame = next(self._frames, None)
            except av.ExitError:
                raise InputEnded(f"{self.spec}: no data for {self.timeout:g} s; treating it as the end of the "
                                 "stream") from None
            except (av.FFmpegError, ValueError) as exc:
                raise InputEnded(f"{self.spec}: the input broke off after {index} frames ({_reason(exc)})") from None

    def close(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None


# -- outputs ----------------------------------------------------------------------------------------


def output_kind(spec: str) -> str:
    """``pipe`` (``-``), ``vcam``, ``url`` or ``file``."""
    if spec == "-":
        return "pipe"
    if spec == "vcam":
        return "vcam"
    return "url" if url_scheme(spec) is not None else "file"


#: H.264 quality of stream outputs when ``--crf`` is not given (a little below ``video``'s 18: live bitrate)
STREAM_CRF = 20


def output_format(spec: str, requested: str | None = None) -> str:
    """The container ``spec`` is written in (``requested``: ``--output-format``).

    Raises:
        UsageError: a file suffix or URL scheme without a known container, and no ``requested``.
    """
    if requested:
        return FORMAT_ALIASES.get(requested, requested)
    kind = output_kind(spec)
    if kind == "pipe":
        return "yuv4mpegpipe"
    if kind == "vcam":
        return "vcam"
    if kind == "url":
        scheme = url_scheme(spec)
        if scheme not in URL_FORMATS:
            raise UsageError(f"--output {spec}: no default container for {scheme}://; give --output-format "
                             "(e.g. mpegts or flv)")
        return URL_FORMATS[scheme]
    suffix = Path(spec).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise UsageError(f"--output {spec}: unknown output type {suffix or '(no suffix)'}; use .ts, .mp4 "
                         "(fragmented), .mkv, .y4m, .nut or .flv, a URL, - (stdout) or vcam")
    return OUTPUT_SUFFIXES[suffix]


class StreamWriter:
    """Encode RGB frames to a container as they come (see the module docstring).

    Args:
        target: ``-``, a URL or a file path.
        width, height: frame size (cropped to even numbers).
        fps: nominal frame rate; time_base: of the ``pts`` given to :meth:`write` (the input's).
        fmt: container (:func:`output_format`).
        crf: H.264 constant rate factor 0..51 (``--crf``; 0 = lossless), default :data:`STREAM_CRF`.
    """

    def __init__(self, target: str, width: int, height: int, fps: Fraction, time_base: Fraction, fmt: str,
                 crf: int | None = None):
        av = _av()
        self.target = target
        self.format = fmt
        self.width, self.height = width - width % 2, height - height % 2
        self.fps = Fraction(fps)
        self.time_base = Fraction(time_base)
        options: dict[str, str] = {}
        where: object = target
        self._stdout = None
        if target == "-":  # unbuffered: every frame reaches the reader when it is written
            self._stdout = open(sys.stdout.fileno(), "wb", buffering=0, closefd=False)
            where = self._stdout
        if fmt in ("mp4", "mov"):
            options["movflags"] = FRAGMENTED_MP4
        else:
            options["flush_packets"] = "1"  # no frame waits in FFmpeg's buffer for the next one
        if url_scheme(target) == "udp" and "pkt_size" not in target:
            where = f"{target}{'&' if '?' in target else '?'}pkt_size=1316"
        self.rawvideo = fmt in ("yuv4mpegpipe", "rawvideo")
        try:
            self._container = av.open(where, "w", format=fmt, options=options)
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"{target}: cannot open the output ({_reason(exc)})") from None
        self._stream = self._container.add_stream("rawvideo" if self.rawvideo else "libx264", rate=self.fps)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        if not self.rawvideo:
            self._stream.time_base = self.time_base
            self._stream.codec_context.time_base = self.time_base
            gop = max(1, int(round(float(self.fps))))  # a keyframe a second: joinable, mp4 fragments
            self._stream.options = {"preset": "veryfast", "tune": "zerolatency",
                                    "crf": str(STREAM_CRF if crf is None else int(crf)), "g": str(gop), "bf": "0"}
        self._last_pts: int | None = None
        self._first_pts: int | None = None
        self._last_slot = -1
        self._last_frame = None
        self.frames_written = 0

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        """Encode one ``(H, W, 3) uint8`` RGB frame shown at ``pts`` (in ``time_base``; ``None``: the next)."""
        av = _av()
        rgb = np.ascontiguousarray(rgb[: self.height, : self.width])
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        step = max(1, round(1 / (float(self.fps) * float(self.time_base))))
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            pts = 0 if self._last_pts is None else self._last_pts + step
        if self._first_pts is None:
            self._first_pts = pts
        self._last_pts = pts
        if self.rawvideo:  # no timestamps in the format: keep time by repeating the previous frame over gaps
            slot = int(round((pts - self._first_pts) * float(self.time_base) * float(self.fps)))
            slot = max(slot, self._last_slot + 1)
            while self._last_frame is not None and self._last_slot + 1 < slot:
                self._encode(self._last_frame, self._last_slot + 1)
                self._last_slot += 1
            self._encode(frame, slot)
            self._last_slot, self._last_frame = slot, frame
        else:
            frame.pts, frame.time_base = pts, self.time_base
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        self.frames_written += 1

    def _encode(self, frame, slot: int) -> None:
        frame.pts, frame.time_base = slot, 1 / self.fps
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the container (errors propagate)."""
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            container, self._container = self._container, None
            container.close()
        finally:
            self.abort()
        if self._stdout is not None:
            with contextlib.suppress(Exception):
                self._stdout.flush()

    def abort(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None


class VirtualCameraWriter:
    """Frames to a virtual camera (pyvirtualcam: v4l2loopback on Linux, OBS on Windows/macOS)."""

    def __init__(self, width: int, height: int, fps: Fraction):
        try:
            import pyvirtualcam
        except ImportError:
            raise UsageError("--output vcam needs pyvirtualcam: pip install 'retarget[vcam]' (on Linux also the "
                             "v4l2loopback module)") from None
        try:
            self._cam = pyvirtualcam.Camera(width=width, height=height, fps=float(fps))
        except Exception as exc:  # noqa: BLE001 - pyvirtualcam raises RuntimeError & co per platform
            raise InputError(f"vcam: cannot start the virtual camera ({_reason(exc)})") from None
        self.frames_written = 0
        self.format = "vcam"

    def write(self, rgb: np.ndarray, pts: int | None) -> None:
        self._cam.send(np.ascontiguousarray(rgb))
        self.frames_written += 1

    def close(self) -> None:
        self._cam.close()

    abort = close


def open_output(target: str, width: int, height: int, fps: Fraction, time_base: Fraction,
                fmt: str | None = None, crf: int | None = None):
    """A writer for ``target`` (:class:`StreamWriter` or :class:`VirtualCameraWriter`)."""
    fmt = output_format(target, fmt)
    if fmt == "vcam":
        return VirtualCameraWriter(width, height, fps)
    return StreamWriter(target, width, height, fps, time_base, fmt, crf)


def check_stream_crf(crf: int | None, fmt: str) -> None:
    """``--crf`` in range (``video``'s bounds, :func:`retarget.io.output.check_codec_options`) and for an H.264
    output only (not YUV4MPEG2 / raw frames or a virtual camera); a one-line :class:`UsageError`."""
    if crf is None:
        return
    from retarget.io.output import MAX_CRF

    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= MAX_CRF:  # video's bounds and words
        raise UsageError(f"--crf must be 0..{MAX_CRF} (0 = lossless H.264, default {STREAM_CRF}), got {crf}")
    if fmt in ("yuv4mpegpipe", "rawvideo", "vcam"):
        what = "a virtual camera takes raw frames" if fmt == "vcam" else "this output is raw frames (YUV4MPEG2)"
        raise UsageError(f"--crf applies to H.264 outputs (files, URLs, --output-format mpegts/nut/...) only "
                         f"({what}); leave it out")


def remove_output(target: str) -> None:
    """Delete a file output that holds no frame (a run that failed before its first frame)."""
    if output_kind(target) == "file":
        with contextlib.suppress(OSError):
            os.unlink(target)
