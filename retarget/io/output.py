"""Where rendered frames go: a video file (H.264, FFV1 or ProRes) or a numbered PNG sequence.

One entry point for every command that writes frames (``retarget video``, ``batch``, ``stream``):

- :func:`output_spec` turns an output path and ``--codec``/``--crf`` into an :class:`OutputSpec`
  (checked: codec known and in this PyAV build, extension able to hold it, crf in range);
- :func:`check_output` refuses, before any work, an output that exists (without ``--overwrite``) or
  that would replace an input;
- :func:`open_output` opens the writer. Everything is written to a temporary file or folder and
  renamed into place only when the writer is closed without error, so an interrupted run leaves no
  half-written output.

Output forms (what the user names with ``-o``):

=====================================  ===========================================================
``out.mp4`` / ``.m4v`` / ``.mov``       H.264 (``yuv420p``, odd sizes cropped by one pixel), ``--crf``
``out.mkv``                             H.264, or FFV1 with ``--codec ffv1`` (RGB, lossless, any size)
``out.mov`` with ``--codec prores``     ProRes 4444 (``prores_ks``, 10-bit 4:4:4, any size)
``out/`` (a folder, or ``--codec png``)  ``out/frame_00000.png`` ... and ``out/frames.json``
``out/name_%05d.png``                   ``out/name_00000.png`` ... and ``out/name.json``
=====================================  ===========================================================

PNG frames are numbered from 0 in output order (consecutive also under ``--on-missing skip``); the
sidecar JSON holds the timing (fps, time base, every frame's ``pts`` and time), the driver and a note
about its audio (a PNG sequence has none).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from retarget.errors import InputError, UsageError
from retarget.io.atomic import atomic_output, check_output_path, remove_stale_temporaries, temporary_prefix

#: ``--codec`` values. ``png`` is the numbered PNG sequence.
CODECS = ("h264", "ffv1", "prores", "png")
#: Containers (extensions) each video codec can be written to; the first is the default.
CODEC_SUFFIXES = {"h264": (".mp4", ".m4v", ".mov", ".mkv"), "ffv1": (".mkv",), "prores": (".mov",)}
#: The PyAV encoder behind each video codec.
ENCODERS = {"h264": "libx264", "ffv1": "ffv1", "prores": "prores_ks"}
DEFAULT_CRF = 18
MAX_CRF = 51
#: File names of a PNG sequence written into a folder (``-o DIR/``), and its sidecar.
FOLDER_PATTERN = "frame_%05d.png"
FOLDER_SIDECAR = "frames.json"

_FIELD = re.compile(r"%(0?\d*)d")
_FORMS = ("use .mp4, .m4v, .mov or .mkv (video), a folder ending in / or a name_%05d.png pattern "
          "(PNG sequence)")


def check_codec_options(codec: str | None, crf: int | None) -> None:
    """Check ``--codec`` and ``--crf`` on their own (no output path yet).

    Raises:
        UsageError: unknown codec; crf outside ``0..51``; a crf with a codec that has none.
    """
    if codec is not None and codec not in CODECS:
        raise UsageError(f"--codec {codec!r}: expected one of {', '.join(CODECS)}")
    if crf is not None:
        if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= MAX_CRF:
            raise UsageError(f"--crf must be 0..{MAX_CRF} (0 = lossless H.264, default {DEFAULT_CRF}), got {crf}")
        if codec not in (None, "h264"):
            what = {"ffv1": "FFV1 is always lossless", "prores": "ProRes 4444 has a fixed quality",
                    "png": "a PNG sequence is lossless"}[codec]
            raise UsageError(f"--crf applies to --codec h264 only ({what}); leave it out")


def has_encoder(codec: str) -> bool:
    """Whether this PyAV build can encode ``codec`` (one of :data:`CODECS`)."""
    if codec == "png":
        return True
    import av

    try:
        av.codec.Codec(ENCODERS[codec], "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends: not in this build
        return False
    return True


@dataclass(frozen=True)
class OutputSpec:
    """A resolved output.

    Attributes:
        codec: ``h264``, ``ffv1``, ``prores`` or ``png``.
        crf: H.264 constant rate factor (0 = lossless); :data:`DEFAULT_CRF` for the other codecs (unused).
        path: the video file, or the folder of a PNG sequence.
        pattern: PNG file names (``frame_%05d.png``) in ``path``; ``None`` for a video.
        named: the output as the user named it (a pattern path for ``-o name_%05d.png``), for messages.
    """

    codec: str
    crf: int
    path: Path
    pattern: str | None = None
    named: str = ""

    @property
    def is_sequence(self) -> bool:
        return self.pattern is not None

    @property
    def sidecar(self) -> Path | None:
        """The PNG sequence's timing JSON (``frames.json``, or ``<name>.json`` for ``name_%05d.png``)."""
        if self.pattern is None:
            return None
        if self.pattern == FOLDER_PATTERN:
            return self.path / FOLDER_SIDECAR
        stem = self.pattern[: _FIELD.search(self.pattern).start()].rstrip("_-. ")
        return self.path / (f"{stem}.json" if stem else FOLDER_SIDECAR)

    @property
    def display(self) -> Path:
        """What messages and the summary call the output: the file, the folder (``DIR/``) or the pattern path."""
        if self.pattern is None or self.pattern == FOLDER_PATTERN:
            return self.path
        return self.path / self.pattern

    def file_name(self, index: int) -> str:
        return self.pattern % index

    def matches(self, name: str) -> bool:
        """Whether ``name`` is one of this sequence's frame files (any frame number)."""
        match = _FIELD.search(self.pattern)
        head, tail = self.pattern[: match.start()], self.pattern[match.end():]
        return re.fullmatch(re.escape(head) + r"\d+" + re.escape(tail), name) is not None

    def existing(self) -> list[Path]:
        """Files of this output that exist now (the video; or the frames and sidecar of a sequence)."""
        if self.pattern is None:
            return [self.path] if self.path.exists() else []
        if not self.path.is_dir():
            return []
        found = sorted(p for p in self.path.iterdir() if self.matches(p.name))
        return found + ([self.sidecar] if self.sidecar.exists() else [])

    def partial(self) -> "OutputSpec":
        """Where ``--keep-partial`` writes the frames before a driver decoding error:
        ``<stem>.partial<suffix>``, ``<folder>.partial/`` or ``<name>.partial_%05d.png``."""
        if self.pattern is None:
            return replace(self, path=self.path.with_name(f"{self.path.stem}.partial{self.path.suffix}"))
        if self.pattern == FOLDER_PATTERN:
            return replace(self, path=self.path.with_name(f"{self.path.name}.partial"))
        start = _FIELD.search(self.pattern).start()
        head = self.pattern[:start]
        core = head.rstrip("_-. ")
        pattern = f"{core}.partial{head[len(core):]}{self.pattern[start:]}" if core else f"partial_{self.pattern}"
        return replace(self, pattern=pattern)


def default_suffix(codec: str | None) -> str:
    """Extension of a default-named output for ``codec``: ``.mp4``, ``.mkv``, ``.mov``, or ``""`` (a folder)."""
    return "" if codec == "png" else CODEC_SUFFIXES[codec or "h264"][0]


def output_spec(output: str | Path, codec: str | None = None, crf: int | None = None) -> OutputSpec:
    """Resolve an output path and ``--codec``/``--crf``.

    ``output`` names a PNG sequence when it ends with ``/``, is an existing folder, holds a ``%05d``
    (``%d``) field, or ``codec`` is ``png``; otherwise a video file whose codec is ``codec``
    (default ``h264``) and whose extension must be able to hold it.

    Raises:
        UsageError: bad codec/crf (:func:`check_codec_options`), an extension that cannot hold the
            codec, a PNG pattern that is not ``name_%05d.png``, a codec this PyAV build lacks.
    """
    check_codec_options(codec, crf)
    text = str(output)
    path = Path(text)
    is_pattern = "%" in path.name
    video_suffix = path.suffix.lower() in {s for suffixes in CODEC_SUFFIXES.values() for s in suffixes}
    is_folder = not is_pattern and (text.endswith(("/", os.sep)) or (path.is_dir() and not video_suffix)
                                    or (codec == "png" and not video_suffix))
    if is_pattern or is_folder:
        if codec not in (None, "png"):
            raise UsageError(f"{text}: a folder or %05d pattern is a PNG sequence; --codec {codec} needs a video "
                             f"file ({', '.join(CODEC_SUFFIXES[codec])})")
        if crf is not None:
            check_codec_options("png", crf)
        if is_folder:
            return OutputSpec("png", DEFAULT_CRF, path, FOLDER_PATTERN, text)
        fields = _FIELD.findall(path.name)
        if len(fields) != 1 or path.name.count("%") != 1 or path.suffix.lower() != ".png":
            raise UsageError(f"{text}: a PNG sequence pattern needs one %d field (like name_%05d.png) and the "
                             ".png extension")
        return OutputSpec("png", DEFAULT_CRF, path.parent, path.name, text)
    suffix = path.suffix.lower()
    if codec == "png":
        raise UsageError(f"{text}: --codec png writes a PNG sequence: give a folder (out/) or a pattern "
                         "(out/name_%05d.png)")
    codec = codec or "h264"
    if suffix not in {s for suffixes in CODEC_SUFFIXES.values() for s in suffixes}:
        raise UsageError(f"{text}: unknown output type {suffix or '(no extension)'!r}; {_FORMS}")
    if suffix not in CODEC_SUFFIXES[codec]:
        raise UsageError(f"{text}: {suffix} cannot hold --codec {codec}; use "
                         f"{' or '.join(CODEC_SUFFIXES[codec])} (e.g. {path.stem}{CODEC_SUFFIXES[codec][0]})")
    if not has_encoder(codec):
        raise UsageError(f"--codec {codec}: this PyAV build has no {ENCODERS[codec]} encoder; use --codec h264 "
                         "(--crf 0 for lossless) or a PNG sequence (-o DIR/)")
    return OutputSpec(codec, DEFAULT_CRF if crf is None else crf, path, None, text)


def check_output(spec: OutputSpec, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> OutputSpec:
    """Validate an output before any work starts (:func:`retarget.io.atomic.check_output_path` for videos).

    A PNG sequence must not exist (its frames or sidecar) unless ``overwrite``, must not be written into
    or over an input, and its folder (or, for a new folder, the parent) must exist and be writable.

    Raises:
        UsageError: exists without ``overwrite``; would overwrite an input.
        InputError: folder missing or not writable; a file where the folder should be.
    """
    if not spec.is_sequence:
        check_output_path(spec.path, overwrite=overwrite, inputs=inputs)
        return spec
    folder = spec.path
    resolved = folder.resolve()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file, but the PNG sequence needs a folder there; choose another output")
    for item in inputs:
        if item is None or not Path(item).exists():
            continue
        item = Path(item).resolve()
        ours = item.parent == resolved and (spec.matches(item.name) or item.name == spec.sidecar.name)
        if item == resolved or ours:
            raise UsageError(f"{spec.display}: output would overwrite an input ({item}); choose another output path")
    existing = spec.existing()
    if existing and not overwrite:
        frames = sum(1 for p in existing if p != spec.sidecar)
        raise UsageError(f"{spec.display}: output exists ({frames} frame file{'s' * (frames != 1)}"
                         f"{' and ' + spec.sidecar.name if spec.sidecar.exists() else ''}); pass --overwrite to "
                         "replace them")
    parent = resolved if folder.is_dir() else resolved.parent
    if not parent.is_dir():
        raise InputError(f"{parent}: output folder does not exist; create it first or choose another")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{parent}: output folder is not writable; choose another output folder")
    return spec


def _next_pts(pts: int | None, last: int | None, fps: Fraction, time_base: Fraction) -> int:
    """``pts``, or one frame after ``last`` when it is missing or not increasing (as the encoder needs)."""
    if pts is None or (last is not None and pts <= last):
        step = max(1, round(1 / (float(fps or 25) * float(time_base))))
        return 0 if last is None else last + step
    return int(pts)


def audio_codec(path: str | Path | None) -> str | None:
    """The codec name of ``path``'s first audio stream, or ``None`` (no audio, unreadable)."""
    if path is None:
        return None
    import av

    try:
        with av.open(str(path)) as container:
            return container.streams.audio[0].codec_context.name if container.streams.audio else None
    except Exception:  # noqa: BLE001 - the video's own errors are reported when it is decoded
        return None


class PngSequenceWriter:
    """Write frames as numbered PNGs plus the timing sidecar; all or nothing.

    Frames go to a temporary folder beside the output; :meth:`close` writes the sidecar and renames
    the folder into place (a new folder), or moves the files into the existing folder after removing
    that sequence's old frames (only possible with ``--overwrite``, checked by :func:`check_output`).
    Same ``write(rgb, pts)`` interface as :class:`retarget.io.video.VideoWriter`.
    """

    def __init__(self, spec: OutputSpec, width: int, height: int, fps: Fraction, time_base: Fraction,
                 audio_from: str | Path | None = None, driver: str | Path | None = None):
        self.spec, self.width, self.height = spec, width, height
        self.fps, self.time_base = Fraction(fps), Fraction(time_base)
        self.driver = driver if driver is not None else audio_from
        self._audio = audio_codec(audio_from)
        self._into_existing = spec.path.is_dir()
        where = spec.path if self._into_existing else spec.path.parent
        name = spec.path.name or "frames"
        remove_stale_temporaries(where, name)
        try:
            self._tmp: Path | None = Path(tempfile.mkdtemp(prefix=temporary_prefix(name), suffix=".part",
                                                           dir=where))
        except OSError as exc:
            _raise_naming(exc, spec.display)
        self._frames: list[dict] = []
        self._last_pts: int | None = None
        self.frames_written = 0

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        """Write one ``(H, W, 3) uint8`` RGB frame shown at ``pts`` (in ``time_base``)."""
        import cv2

        pts = _next_pts(pts, self._last_pts, self.fps, self.time_base)
        self._last_pts = pts
        name = self.spec.file_name(self.frames_written)
        ok, data = cv2.imencode(".png", np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., ::-1]))
        if not ok:
            raise InputError(f"{self.spec.display}: cannot encode frame {self.frames_written} as PNG")
        try:
            (self._tmp / name).write_bytes(data.tobytes())
        except OSError as exc:
            _raise_naming(exc, self.spec.path / name)
        self._frames.append({"file": name, "pts": pts, "time": round(float(pts * self.time_base), 6)})
        self.frames_written += 1

    def sidecar(self) -> dict:
        """The sidecar JSON's content."""
        if self._audio is None:
            audio = "the driver has no audio"
        else:
            audio = (f"not written: a PNG sequence holds no audio; take the driver's ({self._audio}) from "
                     f"{self.driver}, starting at time 0")
        return {"format": "retarget PNG sequence", "version": 1, "pattern": self.spec.pattern,
                "frame_count": self.frames_written, "first_frame": 0, "width": self.width, "height": self.height,
                "fps": str(self.fps), "fps_float": float(self.fps), "time_base": str(self.time_base),
                "driver": str(self.driver) if self.driver is not None else None, "audio": audio,
                "frames": self._frames}

    def close(self) -> None:
        """Write the sidecar and move the sequence into place (errors propagate; nothing is left behind)."""
        if self._tmp is None:
            return
        try:
            if self.frames_written == 0:  # no sequence at all (the caller says why: e.g. no frame had a person)
                return
            (self._tmp / self.spec.sidecar.name).write_text(sidecar_text(self.sidecar()))
            self._commit()
        except OSError as exc:
            _raise_naming(exc, self.spec.display)
        finally:
            self.abort()

    def _commit(self) -> None:
        tmp, target = self._tmp, self.spec.path
        if not self._into_existing:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; outputs get the usual mode
            os.replace(tmp, target)
            self._tmp = None
            return
        for old in self.spec.existing():  # the sequence replaced (--overwrite was checked before any work)
            old.unlink()
        names = [f["file"] for f in self._frames] + [self.spec.sidecar.name]  # the sidecar last: it marks done
        for name in names:
            os.replace(tmp / name, target / name)

    def abort(self) -> None:
        """Remove the temporary folder (the output is left as it was)."""
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def __enter__(self) -> "PngSequenceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _raise_naming(exc: OSError, path) -> None:
    """Re-raise ``exc`` naming the output ``path`` instead of a temporary file (messages show the name)."""
    if exc.errno is None:
        raise exc
    raise OSError(exc.errno, exc.strerror, str(path)) from None


def sidecar_text(content: dict) -> str:
    """``content`` as indented JSON with one line per frame record."""
    frames = content.get("frames", [])
    text = json.dumps({**content, "frames": "\0"}, indent=1)
    listed = "[\n  " + ",\n  ".join(json.dumps(f) for f in frames) + "\n ]" if frames else "[]"
    return text.replace('"\\u0000"', listed) + "\n"


def _umask() -> int:
    from retarget.io import atomic

    return atomic._UMASK


class _AtomicVideo:
    """A :class:`retarget.io.video.VideoWriter` on a temporary file renamed to the output on success."""

    def __init__(self, spec: OutputSpec, width: int, height: int, fps: Fraction, time_base: Fraction,
                 audio_from: str | Path | None, overwrite: bool = True):
        from retarget.io.video import VideoWriter

        self.spec = spec
        self._stack = contextlib.ExitStack()
        try:  # overwrite=False: a file that appeared meanwhile (a concurrent run) is never replaced
            tmp = self._stack.enter_context(atomic_output(spec.path, overwrite=overwrite))
            self.writer = self._stack.enter_context(
                VideoWriter(tmp, width, height, fps, time_base, audio_from=audio_from, crf=spec.crf,
                            codec=ENCODERS[spec.codec]))
        except BaseException:
            self._stack.close()
            raise
        self.audio_note = self.writer.audio_note

    @property
    def frames_written(self) -> int:
        return self.writer.frames_written

    def write(self, rgb: np.ndarray, pts: int | None = None) -> None:
        self.writer.write(rgb, pts)

    def __enter__(self) -> "_AtomicVideo":
        return self

    def __exit__(self, exc_type, exc, tb):
        return self._stack.__exit__(exc_type, exc, tb)


def open_output(output: OutputSpec | str | Path, width: int, height: int, fps: Fraction, time_base: Fraction, *,
                codec: str | None = None, crf: int | None = None, audio_from: str | Path | None = None,
                driver: str | Path | None = None, quiet: bool = False, overwrite: bool = True):
    """Open the writer for ``output`` (a spec, or a path resolved with ``codec``/``crf`` by :func:`output_spec`).

    Use as a context manager: ``with open_output(...) as writer: writer.write(rgb, pts)``. On a clean
    exit the output is complete and in place; on an exception nothing is left. Frames are ``(H, W, 3)
    uint8`` RGB of size ``width`` × ``height``; ``pts`` are in ``time_base`` (the driver's: its timing is
    kept, variable frame rates included). Audio is copied from ``audio_from`` into a video when its
    container can hold the codec; otherwise (and for PNG sequences, whose sidecar says so) a one-line
    ``note:`` goes to stderr unless ``quiet``. ``driver`` is recorded in a PNG sequence's sidecar.
    Existence/overwrite checks are :func:`check_output`'s, done before any work; with ``overwrite=False``
    a video file that appeared since then (a concurrent run) is not replaced (:func:`retarget.io.atomic.atomic_output`).
    """
    spec = output if isinstance(output, OutputSpec) else output_spec(output, codec, crf)
    if spec.is_sequence:
        writer = PngSequenceWriter(spec, width, height, fps, time_base, audio_from=audio_from, driver=driver)
        if writer._audio is not None and not quiet:
            print(f"note: {spec.display}: a PNG sequence has no audio; the driver's audio stays in {writer.driver} "
                  f"(timing in {spec.sidecar.name})", file=sys.stderr)
        return writer
    writer = _AtomicVideo(spec, width, height, fps, time_base, audio_from, overwrite)
    if writer.audio_note and not quiet:
        print(f"note: {spec.display}: {writer.audio_note}", file=sys.stderr)
    stored = (writer.writer.width, writer.writer.height)
    if stored != (width, height) and not quiet:  # H.264 4:2:0 stores even sides only
        print(f"note: {spec.display}: stored at {stored[0]}x{stored[1]}: H.264 needs even sides, so the "
              f"{width}x{height} frames lose their last odd column / row (--codec ffv1 or prores keeps every pixel)",
              file=sys.stderr)
    return writer


def output_exists(path: str | Path) -> bool:
    """Whether a finished output exists at ``path`` (a video file, or a PNG sequence's sidecar)."""
    path = Path(path)
    if path.is_file():
        return True
    if "%" in path.name or path.is_dir():
        try:
            return output_spec(path, "png").sidecar.is_file()
        except UsageError:
            return path.exists()
    return path.exists()


def output_digest(path: str | Path) -> str:
    """SHA-256 of an output: the video file's, or for a PNG sequence that of its sidecar and every frame file
    it lists (in order).

    Raises:
        OSError: the output (or one of its files) cannot be read.
    """
    import hashlib

    from retarget.io.hashing import file_sha256

    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    spec = output_spec(path, "png")
    digest = hashlib.sha256(spec.sidecar.read_bytes())
    try:
        frames = json.loads(spec.sidecar.read_text())["frames"]
    except (ValueError, KeyError, TypeError):
        raise OSError(f"{spec.sidecar}: not a retarget PNG sequence sidecar") from None
    for frame in frames:
        digest.update(file_sha256(spec.path / frame["file"]).encode())
    return "png:" + digest.hexdigest()
