"""The error model (docs/errors.md), table-driven over every bad input the reliability issue lists.

Each case builds its inputs in the test's folder (truncating, bit-flipping, re-encoding with rotation
metadata, ...), runs the command line in-process and checks: the exit code (0 / 1 input / 2 usage),
exactly one ``error:`` line on stderr naming the file and what to do, no traceback, and no output,
partial or temporary file left behind unless the case says so.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest
from PIL import Image

from retarget.cli import main
from tests import badmedia
from tests.assets import coordinpaint_dir, uv_pair_dir
from tests.conftest import REPO
from tests.media import faststart_copy

VIDEO_FLAGS = ["--size", "64", "--weight-free", "-q"]


@dataclass
class Ctx:
    """One case's folder, with a good source photo (+ IUV sidecar) and a good 4-frame driver (+ sidecar)."""

    folder: Path
    source: Path
    source_iuv: Path
    driver: Path
    out: Path
    monkeypatch: pytest.MonkeyPatch
    extra: dict = field(default_factory=dict)

    def video(self, *args, source: Path | None = None, driver: Path | None = None, out: Path | None = None,
              weight_free: bool = True) -> list[str]:
        flags = VIDEO_FLAGS if weight_free else [f for f in VIDEO_FLAGS if f != "--weight-free"]
        return ["video", "--source", str(source or self.source), "--driver", str(driver or self.driver),
                "-o", str(out or self.out), *flags, *args]

    def text_file(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.write_text(text)
        return path

    def with_sidecar(self, driver: Path) -> Path:
        """Give ``driver`` the good driver's IUV sidecar (so only the video itself is bad)."""
        shutil.copy(self.driver.with_name("driver.iuv.npz"), driver.with_name(driver.stem + ".iuv.npz"))
        return driver

    def photo(self) -> np.ndarray:
        return np.asarray(Image.open(self.source).convert("RGB"))

    def source_variant(self, name: str, write: Callable[[Path], None]) -> Path:
        """A photo ``name`` written by ``write``, with the good IUV sidecar beside it."""
        path = self.folder / name
        write(path)
        shutil.copy(self.source_iuv, path.with_name(path.stem + "_IUV.png"))
        return path


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    badmedia.write_source(folder, (96, 128))
    badmedia.write_driver(folder, "driver", n=4)
    return folder


@pytest.fixture
def ctx(media_dir, tmp_path, monkeypatch) -> Ctx:
    for item in media_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    return Ctx(folder=tmp_path, source=tmp_path / "source.png", source_iuv=tmp_path / "source_IUV.png",
               driver=tmp_path / "driver.mp4", out=tmp_path / "out" / "result.mp4", monkeypatch=monkeypatch)


# ------------------------------------------------------------------------------------------- builders
def _encode_photo(ctx: Ctx, fmt: str, convert: Callable[[Image.Image], Image.Image] = lambda im: im, **kw):
    def write(path: Path) -> None:
        convert(Image.fromarray(ctx.photo())).save(path, fmt, **kw)
    return write


def _truncated_jpeg(ctx: Ctx) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        buffer = io.BytesIO()
        Image.fromarray(ctx.photo()).save(buffer, "JPEG", quality=95)
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return write


def _exif_rotated(ctx: Ctx) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        stored = np.ascontiguousarray(np.rot90(ctx.photo(), k=1))  # orientation 6: rotate 90° cw to display
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(stored).save(path, "JPEG", exif=exif, quality=95)
    return write


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width x height`` (the pixel data is a stub)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def _long_driver(ctx: Ctx, n: int = 12) -> Path:
    frames, iuvs = badmedia.person_frames(n, 96, 96)
    path = badmedia.write_video(ctx.folder / "long.mp4", frames, audio=True)
    np.savez(ctx.folder / "long.iuv.npz", iuv=iuvs)
    return path


def _truncated_driver(ctx: Ctx) -> Path:
    fast = faststart_copy(_long_driver(ctx), ctx.folder / "fast.mp4")
    bad = badmedia.truncate(fast, 0.6, ctx.folder / "cut.mp4")
    shutil.copy(ctx.folder / "long.iuv.npz", ctx.folder / "cut.iuv.npz")
    return bad


def _matroska_driver(ctx: Ctx, suffix: str, fraction: float | None) -> Path:
    """A Matroska / WebM clip (no sample index at the front), cut to ``fraction`` of its bytes (``None``: whole)."""
    frames, iuvs = badmedia.person_frames(12, 96, 96)
    codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    path = badmedia.write_video(ctx.folder / f"clip{suffix}", frames, codec=codec, pix_fmt="yuv420p")
    np.savez(ctx.folder / "clip.iuv.npz", iuv=iuvs)
    return path if fraction is None else badmedia.truncate(path, fraction)


def _corrupt_driver(ctx: Ctx, at: int = 6) -> Path:
    """A PNG-coded clip whose frame ``at`` is overwritten: the decoder fails there."""
    frames, iuvs = badmedia.person_frames(10, 96, 96)
    path = badmedia.write_video(ctx.folder / "coded.mov", frames, codec="png", fmt="mov", pix_fmt="rgb24")
    with av.open(str(path)) as container:
        entry = container.streams.video[0].index_entries[at]
    data = bytearray(path.read_bytes())
    start = entry.pos + entry.size // 3
    data[start:start + 40] = bytes(b ^ 0xFF for b in data[start:start + 40])
    bad = ctx.folder / "damaged.mov"
    bad.write_bytes(bytes(data))
    np.savez(ctx.folder / "damaged.iuv.npz", iuv=iuvs)
    return bad


def _zero_frame_driver(ctx: Ctx) -> Path:
    """A Matroska file with a video track that holds no frame (and some audio, so that it is written)."""
    path = ctx.folder / "empty.mkv"
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        badmedia._encode_audio(container, audio, badmedia._tone(0.3))
    return ctx.with_sidecar(path)


def _checkpoints(ctx: Ctx, inpainter: bytes | None, refiner: bytes | None) -> Path:
    folder = ctx.folder / "ckpt"
    folder.mkdir()
    for name, data in (("inpainter.pth", inpainter), ("refiner.pth", refiner)):
        if data is not None:
            (folder / name).write_bytes(data)
    return folder


def _ck(name: str) -> bytes:
    return (coordinpaint_dir() / name).read_bytes()


def _disk_full_after(monkeypatch, frames: int) -> None:
    """The encoder's writes fail with ENOSPC after ``frames`` frames, as on a full disk."""
    from retarget.io import video as video_io

    real = video_io.VideoWriter.write

    def write(self, rgb, pts=None):
        if self.frames_written >= frames:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        return real(self, rgb, pts)

    monkeypatch.setattr(video_io.VideoWriter, "write", write)


def _not_writable(ctx: Ctx) -> Path:
    folder = ctx.folder / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    ctx.extra["cleanup"] = lambda: folder.chmod(0o755)
    if os.geteuid() == 0:  # root writes anyway: make the folder refuse, as the kernel would for a user
        import tempfile

        from retarget.io import atomic

        real = tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == folder:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(Path(dir) / "tmp"))
            return real(*args, dir=dir, **kwargs)

        ctx.monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
        ctx.monkeypatch.setattr(atomic.os, "access", lambda p, mode: Path(p) != folder)
    return folder / "result.mp4"


# --- driver sidecars (every format checked alike) and tiny drivers
def _sidecar_npz(ctx: Ctx, name: str = "driver.iuv.npz", edit=None, **arrays) -> Path:
    """The good driver's ``.npz`` sidecar, rewritten with ``edit(iuv)`` applied and extra ``arrays``."""
    iuv = np.load(ctx.driver.with_name("driver.iuv.npz"))["iuv"].copy()
    iuv = edit(iuv) if edit is not None else iuv
    path = ctx.folder / name
    np.savez(path, iuv=iuv, **arrays)
    return path


def _with_part_30(iuv: np.ndarray) -> np.ndarray:
    iuv[2, 10:12, 10:12, 0] = 30
    return iuv


def _sidecar_pngs(ctx: Ctx, edit=None, names=None) -> Path:
    """The good sidecar as a folder ``driver.iuv/`` of PNGs (after ``edit(iuv)``), named ``names(i)``."""
    import cv2

    iuv = np.load(ctx.driver.with_name("driver.iuv.npz"))["iuv"].copy()
    ctx.driver.with_name("driver.iuv.npz").unlink()
    folder = ctx.folder / "driver.iuv"
    folder.mkdir()
    frames = edit(iuv) if edit is not None else list(iuv)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / (names(i) if names else f"frame_{i:06d}_IUV.png")), frame)
    return folder


def _one_frame_resized(iuv: np.ndarray) -> list[np.ndarray]:
    import cv2

    frames = list(iuv)
    frames[1] = cv2.resize(frames[1], (40, 40), interpolation=cv2.INTER_NEAREST)
    return frames


def _tiny_driver(ctx: Ctx, width: int, height: int) -> Path:
    frames = [np.full((height, width, 3), 90 + 20 * i, np.uint8) for i in range(3)]
    path = badmedia.write_video(ctx.folder / "tiny.mov", frames, codec="png", fmt="mov", pix_fmt="rgb24")
    np.savez(ctx.folder / "tiny.iuv.npz", iuv=np.zeros((3, height, width, 3), np.uint8))
    return path


def _evil_checkpoints(ctx: Ctx, name: str) -> Path:
    """An inpainter.pth whose pickle calls ``name`` (``module.function``) when loaded, beside a good refiner."""
    import importlib

    import torch

    module, _, attr = name.rpartition(".")

    class Calls:
        def __reduce__(self):
            return (getattr(importlib.import_module(module), attr), (str(ctx.folder / "victim"),))

    folder = _checkpoints(ctx, None, _ck("refiner.pth"))
    torch.save({"gate1.conv_f.weight": torch.zeros(1), "payload": Calls()}, folder / "inpainter.pth")
    return folder


def _victim_kept(ctx: Ctx) -> None:
    assert (ctx.folder / "victim").is_dir(), "the payload ran"


def _victim(ctx: Ctx) -> Ctx:
    (ctx.folder / "victim").mkdir()
    return ctx


class FakePeople:
    """A DensePose model stand-in that sees two people in a photo: a small one and a large one."""

    name = "fake-people"

    def cache_key(self) -> str:
        return "fake-people"

    def reset_tracking(self) -> None:
        pass

    def predict(self, images_bgr):
        from densepose_adapter.types import DensePoseResult

        out = []
        for image in images_bgr:
            h, w = image.shape[:2]
            iuv = np.zeros((h, w, 3), np.uint8)
            small, large = (2, 2, 20, 30), (30, 10, 90, 120)
            for part, (x0, y0, x1, y1) in ((3, small), (2, large)):
                iuv[y0:y1, x0:x1] = (part, 120, 120)
            boxes = np.array([small, large], np.float32)
            out.append(DensePoseResult(image_hw=(h, w), boxes=boxes, scores=np.array([0.99, 0.95], np.float32),
                                       iuv=iuv))
        return out


# ------------------------------------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    build: Callable[[Ctx], list[str]]
    code: int
    says: tuple[str, ...] = ()
    names: Callable[[Ctx], Path] | None = None  # the file the message must name (default: none checked)
    check: Callable[[Ctx], None] | None = None  # extra checks after the run
    keeps: tuple[str, ...] = ()  # files a failing run may leave (the --keep-partial output)


def _video_out_ok(ctx: Ctx) -> None:
    assert ctx.out.is_file() and ctx.out.stat().st_size > 0


def _dims(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height


def _frames(path: Path) -> int:
    return len(badmedia.decode_all(path))


def _exif_is_applied(ctx: Ctx) -> None:
    from retarget.io.image import read_image_rgb

    image = read_image_rgb(ctx.folder / "exif.jpg")
    assert image.shape == ctx.photo().shape
    assert np.abs(image.astype(int) - ctx.photo()).mean() < 3  # JPEG noise only, not a rotated picture
    _video_out_ok(ctx)


def _rotation_honoured(ctx: Ctx) -> None:
    assert _dims(ctx.out) == (96, 128)  # stored 128x96, displayed portrait


def _vfr_kept(ctx: Ctx) -> None:
    tb_in = _stream_time_base(ctx.folder / "vfr.mp4")
    tb_out = _stream_time_base(ctx.out)
    times_in = [p * tb_in for p in badmedia.video_pts(ctx.folder / "vfr.mp4")]
    times_out = [p * tb_out for p in badmedia.video_pts(ctx.out)]
    assert times_out == times_in and len(set(np.diff(times_in))) > 1


def _stream_time_base(path: Path) -> Fraction:
    with av.open(str(path)) as container:
        return Fraction(container.streams.video[0].time_base)


def _partial_kept(frames: int) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        partial = ctx.out.with_name("result.partial.mp4")
        assert not ctx.out.exists() and partial.is_file()
        assert _frames(partial) == frames
    return check


def _hash_mismatch(ctx: Ctx) -> list[str]:
    folder = coordinpaint_dir()
    assert main(["weights", "import", str(folder / "inpainter.pth"), str(folder / "refiner.pth")]) == 0
    from retarget.paths import weights_dir

    installed = next(weights_dir().rglob("inpainter.pth"))
    data = bytearray(installed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    installed.write_bytes(bytes(data))
    ctx.extra["installed"] = installed
    return ctx.video(weight_free=False)


def _several_people(ctx: Ctx) -> list[str]:
    import retarget.pipeline.job as job_module

    ctx.monkeypatch.setattr(job_module, "_model_backend", lambda job, role, track=None: FakePeople())
    ctx.monkeypatch.setattr(job_module, "check_densepose_weights", lambda job, needs=None: None)
    ctx.source_iuv.unlink()  # DensePose runs on the photo
    return ctx.video()


def _internal_error(ctx: Ctx) -> list[str]:
    import retarget.pipeline.source as source_module

    def broken(*args, **kwargs):
        raise ZeroDivisionError("injected bug")

    ctx.monkeypatch.setattr(source_module, "prepare_source_crop", broken)
    return ctx.video()


def _cuda(ctx: Ctx) -> list[str]:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    return ctx.video("--device", "cuda")


def _source_missing_person(ctx: Ctx) -> list[str]:
    Image.fromarray(np.zeros((128, 96, 3), np.uint8)).save(ctx.source_iuv)
    return ctx.video()


CASES = [
    # --- source photo
    Case("source-missing", lambda c: c.video(source=c.folder / "nope.jpg"), 1, ("file not found",),
         lambda c: c.folder / "nope.jpg"),
    Case("source-folder", lambda c: c.video(source=c.folder), 1, ("is a folder",), lambda c: c.folder),
    Case("source-not-an-image", lambda c: c.video(source=c.source_variant("notes.jpg", lambda p: p.write_text(
        "shopping list"))), 1, ("not an image file", "JPEG or PNG"), lambda c: c.folder / "notes.jpg"),
    Case("source-truncated-jpeg", lambda c: c.video(source=c.source_variant("cut.jpg", _truncated_jpeg(c))), 1,
         ("cannot decode image", "damaged or incomplete"), lambda c: c.folder / "cut.jpg"),
    Case("source-grayscale", lambda c: c.video(source=c.source_variant("gray.png", _encode_photo(
        c, "PNG", lambda im: im.convert("L")))), 0, check=_video_out_ok),
    Case("source-rgba", lambda c: c.video(source=c.source_variant("alpha.png", _encode_photo(
        c, "PNG", lambda im: im.convert("RGBA")))), 0, check=_video_out_ok),
    Case("source-cmyk", lambda c: c.video(source=c.source_variant("print.jpg", _encode_photo(
        c, "JPEG", lambda im: im.convert("CMYK")))), 0, check=_video_out_ok),
    Case("source-16bit-png", lambda c: c.video(source=c.source_variant("deep.png", lambda p: Image.fromarray(
        c.photo()[..., 1].astype(np.uint16) * 257).save(p))), 0, check=_video_out_ok),
    Case("source-exif-rotated", lambda c: c.video(source=c.source_variant("exif.jpg", _exif_rotated(c))), 0,
         check=_exif_is_applied),
    Case("source-tiny", lambda c: c.video(source=c.source_variant("tiny.png", lambda p: Image.fromarray(
        c.photo()[:40, :30]).save(p))), 1, ("smaller than 64 px", "larger photo"), lambda c: c.folder / "tiny.png"),
    Case("source-huge", lambda c: c.video(source=c.source_variant("huge.png", lambda p: p.write_bytes(
        _png_header(9000, 6000)))), 1, ("9000x6000", "50 MP", "--allow-large"), lambda c: c.folder / "huge.png"),
    Case("source-huge-allowed", lambda c: (c.monkeypatch.setattr("retarget.io.image.MAX_PIXELS", 10_000),
                                           c.video("--allow-large"))[1], 0, check=_video_out_ok),
    Case("source-no-person", _source_missing_person, 1, ("no person found",), lambda c: c.source),
    Case("source-several-people", _several_people, 0, ("2 people found", "using the largest"),
         lambda c: c.source, _video_out_ok),
    # --- driver
    Case("driver-not-a-video", lambda c: c.video(driver=c.with_sidecar(c.text_file("clip.mp4", "not a video"))), 1,
         ("not a readable video",), lambda c: c.folder / "clip.mp4"),
    Case("driver-truncated-no-index", lambda c: c.video(driver=badmedia.truncate(
        _long_driver(c), 0.6)), 1, ("not a readable video", "incomplete"), lambda c: c.folder / "long.mp4"),
    Case("driver-truncated", lambda c: c.video(driver=_truncated_driver(c)), 1, ("truncated", "--keep-partial"),
         lambda c: c.folder / "cut.mp4"),
    Case("driver-truncated-keep-partial", lambda c: c.video("--keep-partial", driver=_truncated_driver(c)), 1,
         ("truncated", "kept the 6 frames", "result.partial.mp4"), lambda c: c.folder / "cut.mp4",
         _partial_kept(6), keeps=("out/result.partial.mp4",)),
    Case("driver-truncated-mkv", lambda c: c.video(driver=_matroska_driver(c, ".mkv", 0.5)), 1,
         ("truncated", "s it declares", "--keep-partial"), lambda c: c.folder / "clip.mkv"),
    Case("driver-truncated-webm", lambda c: c.video(driver=_matroska_driver(c, ".webm", 0.8)), 1,
         ("truncated", "s it declares", "--keep-partial"), lambda c: c.folder / "clip.webm"),
    Case("driver-mkv-whole", lambda c: c.video(driver=_matroska_driver(c, ".mkv", None)), 0, check=_video_out_ok),
    Case("driver-corrupt", lambda c: c.video(driver=_corrupt_driver(c)), 1,
         ("corrupt after frame 6", "--keep-partial"), lambda c: c.folder / "damaged.mov"),
    Case("driver-corrupt-keep-partial", lambda c: c.video("--keep-partial", driver=_corrupt_driver(c)), 1,
         ("corrupt after frame 6", "kept the 6 frames"), lambda c: c.folder / "damaged.mov", _partial_kept(6),
         keeps=("out/result.partial.mp4",)),
    Case("driver-zero-frames", lambda c: c.video(driver=_zero_frame_driver(c)), 1, ("no frames",),
         lambda c: c.folder / "empty.mkv"),
    Case("driver-audio-only", lambda c: c.video(driver=c.with_sidecar(badmedia.write_audio_only(
        c.folder / "song.mp4"))), 1, ("no video stream", "audio-only"), lambda c: c.folder / "song.mp4"),
    Case("driver-rotation-metadata", lambda c: c.video(driver=badmedia.write_driver(
        c.folder, "turned", n=4, width=128, height=96, rotation=90)), 0, check=_rotation_honoured),
    Case("driver-variable-frame-rate", lambda c: c.video(driver=badmedia.write_driver(
        c.folder, "vfr", n=6, pts=[0, 1, 3, 4, 9, 10])), 0, check=_vfr_kept),
    Case("driver-odd-size", lambda c: c.video(driver=badmedia.write_driver(c.folder, "odd", n=4, width=97, height=75)),
         0, check=lambda c: _dims(c.out) == (96, 74) or pytest.fail(f"size {_dims(c.out)}")),
    Case("driver-frames-without-person", lambda c: c.video(driver=badmedia.write_driver(
        c.folder, "gaps", n=6, missing=(1, 2, 3))), 0, check=lambda c: _frames(c.out) == 6 or pytest.fail()),
    Case("driver-nobody-at-all", lambda c: c.video(driver=badmedia.write_driver(
        c.folder, "empty_room", n=4, missing=(0, 1, 2, 3))), 1, ("no person found in any",),
         lambda c: c.folder / "empty_room.mp4"),
    # --- driver sidecars: one validation for every format, sizes and frame indices checked
    Case("sidecar-npz-part-above-24", lambda c: (_sidecar_npz(c, edit=_with_part_30), c.video())[1], 1,
         ("not a DensePose IUV image", "found 30", "(frame 2)"), lambda c: c.folder / "driver.iuv.npz"),
    Case("sidecar-png-part-above-24", lambda c: (_sidecar_pngs(c, edit=lambda i: list(_with_part_30(i))),
                                                 c.video())[1], 1, ("not a DensePose IUV image", "found 30"),
         lambda c: c.folder / "driver.iuv" / "frame_000002_IUV.png"),
    Case("sidecar-npz-wrong-size", lambda c: (_sidecar_npz(c, edit=lambda i: i[:, :70, :50]), c.video())[1], 1,
         ("IUV frames are 50x70", "is 96x96"), lambda c: c.folder / "driver.iuv.npz"),
    Case("sidecar-png-one-frame-40x40", lambda c: (_sidecar_pngs(c, edit=_one_frame_resized), c.video())[1], 1,
         ("IUV frames are 40x40", "is 96x96"), lambda c: c.folder / "driver.iuv" / "frame_000001_IUV.png"),
    Case("sidecar-fewer-frames", lambda c: (_sidecar_npz(c, edit=lambda i: i[:2]), c.video())[1], 0,
         ("no IUV for 2 of the driver's 4 frames", "--on-missing hold"), lambda c: c.folder / "driver.iuv.npz",
         _video_out_ok),
    Case("sidecar-fewer-frames-skip", lambda c: (_sidecar_npz(c, edit=lambda i: i[:3]), c.video(
        "--on-missing", "skip"))[1], 0, ("no IUV for 1 of the driver's 4 frames", "--on-missing skip"),
         check=lambda c: _frames(c.out) == 3 or pytest.fail(f"{_frames(c.out)} frames")),
    Case("sidecar-more-frames", lambda c: (_sidecar_npz(c, edit=lambda i: np.concatenate([i, i[:2]])),
                                           c.video())[1], 1, ("IUV for frame 4 (and 1 more)", "has 4 frames"),
         lambda c: c.folder / "driver.iuv.npz"),
    Case("sidecar-npz-duplicate-index", lambda c: (_sidecar_npz(c, frame_indices=np.array([0, 1, 1, 2])),
                                                   c.video())[1], 1, ("frame 1 more than once",),
         lambda c: c.folder / "driver.iuv.npz"),
    Case("sidecar-npz-20-digit-index", lambda c: (_sidecar_npz(c, frame_indices=np.array(
        [0, 1, 2, 12345678901234567890], np.uint64)), c.video())[1], 1, ("frame 12345678901234567890",),
         lambda c: c.folder / "driver.iuv.npz"),
    Case("sidecar-png-duplicate-index", lambda c: (_sidecar_pngs(c, names=lambda i: f"f{i}_IUV.png" if i != 2
                                                                 else "f001_IUV.png"), c.video())[1], 1,
         ("two IUV PNGs for frame 1",), lambda c: c.folder / "driver.iuv"),
    Case("sidecar-png-20-digit-index", lambda c: (_sidecar_pngs(c, names=lambda i: f"f{i}_IUV.png" if i != 3
                                                                else "f12345678901234567890_IUV.png"),
                                                  c.video())[1], 1, ("frame 12345678901234567890", "has 4 frames"),
         lambda c: c.folder / "driver.iuv"),
    Case("sidecar-png-huge-header", lambda c: (_sidecar_pngs(c), (c.folder / "driver.iuv" / "frame_000003_IUV.png")
                                               .write_bytes(_png_header(90000, 90000)), c.video())[2], 1,
         ("IUV frames are 90000x90000", "is 96x96"), lambda c: c.folder / "driver.iuv" / "frame_000003_IUV.png"),
    # --- tiny drivers: refused before any work, with the smallest size supported
    Case("driver-1x1", lambda c: c.video(driver=_tiny_driver(c, 1, 1)), 1, ("1x1", "smaller than 32 px"),
         lambda c: c.folder / "tiny.mov"),
    Case("driver-31x64", lambda c: c.video(driver=_tiny_driver(c, 31, 64)), 1, ("31x64", "smaller than 32 px"),
         lambda c: c.folder / "tiny.mov"),
    Case("driver-smallest-odd", lambda c: c.video(driver=badmedia.write_driver(c.folder, "small", n=3, width=33,
                                                                               height=35)), 0,
         check=lambda c: _dims(c.out) == (32, 34) or pytest.fail(f"size {_dims(c.out)}")),
    # --- weights
    Case("weights-missing", lambda c: c.video("--checkpoint-dir", str(_checkpoints(c, _ck("inpainter.pth"), None)),
                                              weight_free=False), 1, ("not found",),
         lambda c: c.folder / "ckpt" / "refiner.pth"),
    Case("weights-truncated", lambda c: c.video("--checkpoint-dir", str(_checkpoints(
        c, _ck("inpainter.pth")[:5000], _ck("refiner.pth"))), weight_free=False), 1, ("truncated",),
         lambda c: c.folder / "ckpt" / "inpainter.pth"),
    Case("weights-wrong-slot", lambda c: c.video("--checkpoint-dir", str(_checkpoints(
        c, _ck("refiner.pth"), _ck("inpainter.pth"))), weight_free=False), 1, ("refiner checkpoint", "inpainter"),
         lambda c: c.folder / "ckpt" / "inpainter.pth"),
    Case("weights-not-pytorch", lambda c: c.video("--checkpoint-dir", str(_checkpoints(
        c, b"<html>sign in to download</html>", _ck("refiner.pth"))), weight_free=False), 1,
         ("not a readable torch checkpoint",), lambda c: c.folder / "ckpt" / "inpainter.pth"),
    Case("weights-code-running-posix", lambda c: _victim(c).video("--checkpoint-dir", str(_evil_checkpoints(
        c, "posix.rmdir")), weight_free=False), 1, ("refused", "references posix.rmdir"),
         lambda c: c.folder / "ckpt" / "inpainter.pth", _victim_kept),
    Case("weights-code-running-unblocked-module", lambda c: _victim(c).video("--checkpoint-dir", str(
        _evil_checkpoints(c, "shutil.rmtree")), weight_free=False), 1, ("refused", "references shutil.rmtree"),
         lambda c: c.folder / "ckpt" / "inpainter.pth", _victim_kept),
    Case("weights-hash-mismatch", _hash_mismatch, 1, ("damaged", "sha256", "retarget weights fetch"),
         lambda c: c.extra["installed"]),
    # --- environment and outputs
    Case("output-folder-missing", lambda c: c.video(out=c.folder / "no" / "such" / "o.mp4"), 1,
         ("output folder does not exist",),
         lambda c: c.folder / "no" / "such"),
    Case("output-folder-not-writable", lambda c: c.video(out=_not_writable(c)), 1, ("writ",),
         lambda c: c.folder / "locked"),
    Case("disk-full-while-encoding", lambda c: (_disk_full_after(c.monkeypatch, 2), c.video())[1], 1,
         ("no space left", "nothing was kept"), lambda c: c.out),
    Case("cuda-without-cuda", _cuda, 2, ("CUDA is not available", "--device cpu")),
    Case("output-exists", lambda c: (c.out.write_bytes(b"old"), c.video())[1], 2, ("--overwrite",),
         lambda c: c.out, lambda c: c.out.read_bytes() == b"old" or pytest.fail("output replaced")),
    Case("output-is-an-input", lambda c: c.video(out=c.driver), 2,
         ("overwrite an input",), lambda c: c.driver),
    Case("usage-missing-option", lambda c: ["video", "--driver", str(c.driver)], 2, ("--source", "-h")),
    Case("usage-bad-number", lambda c: c.video("--batch-size", "many"), 2, ("--batch-size",)),
    Case("internal-error", _internal_error, 1, ("internal error", "ZeroDivisionError", "--debug")),
    # --- the same model in the other commands
    Case("image-source-damaged", lambda c: _image(c, source=c.source_variant("cut.jpg", _truncated_jpeg(c))), 1,
         ("cannot decode image",), lambda c: c.folder / "cut.jpg"),
    Case("image-disk-full", lambda c: (_image(c), _disk_full_on_write_bytes(c))[0], 1, ("no space left",),
         lambda c: c.folder / "out" / "result.png"),
    Case("image-ok", lambda c: _image(c), 0,
         check=lambda c: (c.folder / "out" / "result.png").is_file() or pytest.fail()),
    Case("convert-iuv-damaged", lambda c: ["convert-iuv", str(c.text_file("x_IUV.png", "not a png"))], 1,
         ("not a readable image",), lambda c: c.folder / "x_IUV.png"),
    Case("densepose-missing-input", lambda c: ["densepose", str(c.folder / "nope.jpg"), "-o", str(c.folder / "o.npz")],
         1, ("file not found",), lambda c: c.folder / "nope.jpg"),
    Case("weights-unknown-model", lambda c: ["weights", "fetch", "no-such-model"], 2, ("no-such-model",)),
]


def _image(ctx: Ctx, source: Path | None = None) -> list[str]:
    fixture = uv_pair_dir()
    return ["image", "--source", str(source or fixture / "source.png"), "--source-uv", str(fixture / "source_uv.npy"),
            "--target-uv", str(fixture / "target_uv.npy"), "-o", str(ctx.folder / "out" / "result.png"),
            "--weight-free"]


def _disk_full_on_write_bytes(ctx: Ctx) -> None:
    """Every write of a file's content fails with ENOSPC (a full disk), from now on."""
    def write_bytes(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    ctx.monkeypatch.setattr(Path, "write_bytes", write_bytes)


@pytest.fixture
def output_folder(ctx):
    ctx.out.parent.mkdir()
    yield
    if "cleanup" in ctx.extra:
        ctx.extra["cleanup"]()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_error_model(case: Case, ctx: Ctx, output_folder, capsys):
    argv = case.build(ctx)
    before = _listing(ctx.folder)
    code = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip() and not line.startswith("note:")]
    notes = [line for line in captured.err.splitlines() if line.startswith("note:")]
    assert code == case.code, captured.err
    assert "Traceback" not in captured.err
    if case.code:
        assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
        text = lines[0]
        new = _listing(ctx.folder) - before - set(case.keeps)
        assert not new, f"left behind: {sorted(new)}"  # no output, no partial, no temporary file
    else:
        assert not [line for line in lines if line.startswith("error")], captured.err
        text = " ".join(notes)
    for phrase in case.says:
        assert phrase in text, text
    if case.names is not None:
        assert str(case.names(ctx)) in text, text
    if case.check is not None:
        case.check(ctx)
    assert not [p for p in ctx.folder.rglob(".*") if ".part" in p.name], "temporary file left"


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_debug_shows_the_traceback(ctx, output_folder):
    _internal_error(ctx)
    with pytest.raises(ZeroDivisionError):
        main(["--debug", *ctx.video()])


def test_huge_photo_is_refused_before_decoding(tmp_path):
    """The 50 MP check reads only the header: a 54 MP photo costs nothing to refuse."""
    from retarget.errors import InputError
    from retarget.io.image import read_image_rgb

    path = tmp_path / "huge.png"
    path.write_bytes(_png_header(9000, 6000))
    with pytest.raises(InputError, match="--allow-large"):
        read_image_rgb(path)
    with pytest.raises(InputError, match="cannot decode"):  # allowed: decoding the stub then fails cleanly
        read_image_rgb(path, allow_large=True)


def test_phone_rotation_matrix_is_honoured_in_both_passes(tmp_path):
    """A clip whose track header says "rotate 90° clockwise" (as phones write it) is decoded upright."""
    from retarget.io.video import iter_frames, probe_video

    frames, _ = badmedia.person_frames(3, 128, 96)
    for frame in frames:
        frame[:12, :12] = (255, 0, 0)  # a red marker in the stored top-left corner
    plain = badmedia.write_video(tmp_path / "plain.mp4", frames)
    phone = badmedia.set_track_rotation(plain, 90, tmp_path / "phone.mp4")
    info = probe_video(phone)
    assert (info.rotation, info.width, info.height) == (90, 96, 128)
    for frame in iter_frames(phone):
        assert frame.rgb.shape == (128, 96, 3)
        top_right = frame.rgb[:12, -12:].reshape(-1, 3).mean(axis=0)
        assert top_right[0] > 200 and top_right[1] < 60  # clockwise: top-left went to top-right


@pytest.mark.parametrize("temporal", [False, True], ids=["no-filter", "filter"])
def test_disk_full_for_real_leaves_nothing(ctx, output_folder, temporal):
    """A file-size limit makes the kernel refuse the output's writes (EFBIG), as a full disk does.

    With the temporal filter on, its cache writes are refused first; the filtered frames then stay in
    memory and the output is still the file the error names."""
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))\n"
        "from retarget.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    from retarget.uvmap import iuv_to_uv

    iuv_to_uv(np.zeros((4, 4, 3), np.uint8))  # the conversion table is cached now, not by the limited child
    big = badmedia.write_driver(ctx.folder, "big", n=8, width=160, height=160)
    args = ctx.video(driver=big) + ([] if temporal else ["--no-temporal-filter"])
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("note:")]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and str(ctx.out) in lines[0] and "large" in lines[0], result.stderr
    assert list(ctx.out.parent.iterdir()) == []


_PEAK_SCRIPT = """
import resource, sys, tracemalloc
tracemalloc.start()
from retarget.cli import main
code = main(sys.argv[1:])
held = tracemalloc.get_traced_memory()[1] // 2**20  # peak MiB of Python/NumPy data (frames, plates, ...)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # MiB (Linux reports KiB)
print(held, rss)
sys.exit(code)
"""


def _uhd_driver(folder: Path, n: int) -> Path:
    """A 3840x2160, 60 fps clip of ``n`` frames with a per-frame IUV PNG sidecar folder."""
    import cv2

    frames, iuvs = badmedia.person_frames(n, 3840, 2160)
    path = badmedia.write_video(folder / f"uhd{n}.mp4", frames, fps=60)
    sidecar = folder / f"uhd{n}.iuv"
    sidecar.mkdir()
    for i, iuv in enumerate(iuvs):
        cv2.imwrite(str(sidecar / f"frame_{i:05d}_IUV.png"), iuv)
    return path


@pytest.mark.slow
def test_4k_60fps_memory_stays_bounded(ctx, output_folder):
    """Peak memory of a 4K/60 render does not grow with the clip's length (bounded queues and plate).

    The data the pipeline holds is measured with tracemalloc (NumPy reports its buffers there), so the
    check does not depend on allocator fragmentation or machine load; the process peak is only
    sanity-checked.
    """
    peaks, rss = {}, {}
    for n in (24, 48):  # both long enough to fill the bounded queues and the encoder's lookahead
        driver = _uhd_driver(ctx.folder, n)
        out = ctx.out.with_name(f"uhd{n}.mp4")
        result = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, *ctx.video(driver=driver, out=out)],
                                capture_output=True, text=True, cwd=REPO, timeout=900)
        assert result.returncode == 0, result.stderr
        peaks[n], rss[n] = map(int, result.stdout.strip().splitlines()[-1].split())
        assert _dims(out) == (3840, 2160) and _frames(out) == n
    # Keeping every frame would add >= 24 x 25 MB = 600 MB; bounded buffers add only thread-timing noise.
    assert peaks[48] - peaks[24] < 300, (peaks, rss)
    assert max(rss.values()) < 6144, (peaks, rss)  # MiB, whole process (x264, decoder threads included)
