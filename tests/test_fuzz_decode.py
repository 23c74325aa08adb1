"""Bounded, seeded fuzzing of the input edges: mutated files never crash, never reach "internal error".

Two levels, all seeded and bounded (well under two minutes together, so CI runs it with ``make test``):

- readers: mutations (bit flips, overwritten runs, truncations, deleted/duplicated/inserted spans)
  of tiny valid videos, images, IUV/UV files and driver IUV sidecars (``.npz`` and PNG folders) go
  through the functions that read them; the only exception allowed out is our one-line
  :class:`retarget.errors.InputError` naming the file;
- the command line: mutated archives and checkpoints through ``retarget weights import``, and tiny,
  odd-sized and mutated drivers and mutated sidecars through ``retarget video``; every run must end
  with exit 0, or 1 and one ``error:`` line, never "internal error" nor a traceback.

:data:`COUNTS` and :data:`CLI_COUNTS` are the number of inputs per target.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densepose_adapter.precomputed import PrecomputedIUV
from retarget.cli import main
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
    for name, save in (("sidecar.npz", np.savez), ("sidecar-deflated.npz", np.savez_compressed)):
        buffer = io.BytesIO()
        save(buffer, iuv=iuvs, frame_indices=np.arange(4), boxes=np.tile([[2.0, 2, 20, 30]], (4, 1, 1)),
             scores=np.ones((4, 1), np.float32))
        out[name] = buffer.getvalue()
    out["sidecar.png"] = out["iuv.png"]
    return out


def _read_video(path: Path) -> int:
    probe_video(path)
    return sum(1 for _ in iter_frames(path))


def _read_sidecar(path: Path) -> int:
    """A driver sidecar as the video runner reads it: sizes checked, every frame of a 4-frame 32x32 driver."""
    sidecar = PrecomputedIUV(path)
    sidecar.check_driver(32, 32, "driver.mp4")
    sidecar.coverage(4)
    return sum(sidecar.get(i, (32, 32)).has_person for i in range(4))


def _read_sidecar_folder(path: Path) -> int:
    """The mutated PNG as frame 1 of a ``.iuv/`` folder whose other frames are good."""
    folder = path.with_suffix(".iuv")
    folder.mkdir()
    seed = path.with_name("seed_iuv.png") if path.with_name("seed_iuv.png").exists() else path
    for i in (0, 2, 3):
        (folder / f"frame_{i:06d}_IUV.png").write_bytes(seed.read_bytes())
    path.rename(folder / "frame_000001_IUV.png")
    try:
        return _read_sidecar(folder)
    except InputError as exc:
        raise InputError(str(exc).replace(str(folder / "frame_000001_IUV.png"), str(path))
                         .replace(str(folder), str(path))) from None


READERS = {
    "h264.mp4": _read_video, "png.mov": _read_video, "mjpeg.mkv": _read_video,
    "photo.png": read_image_rgb, "photo.jpg": read_image_rgb, "photo.gif": read_image_rgb,
    "iuv.png": read_iuv_png, "uv.npy": read_uv_npy,
    "sidecar.npz": _read_sidecar, "sidecar-deflated.npz": _read_sidecar, "sidecar.png": _read_sidecar_folder,
}
COUNTS = {"h264.mp4": 120, "png.mov": 80, "mjpeg.mkv": 80, "photo.png": 60, "photo.jpg": 60, "photo.gif": 40,
          "iuv.png": 60, "uv.npy": 60, "sidecar.npz": 120, "sidecar-deflated.npz": 120,
          "sidecar.png": 80}  # 880 inputs, a few seconds


@pytest.mark.parametrize("kind", sorted(READERS))
def test_mutated_inputs_fail_cleanly(kind, seeds, tmp_path):
    rng = np.random.default_rng([SEED, sorted(READERS).index(kind)])
    reader = READERS[kind]
    if kind == "sidecar.png":
        _write(tmp_path / "seed_iuv.png", seeds[kind])
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


# ------------------------------------------------------------------------------------------------
# the command line: no input reaches "internal error" or a traceback

CLI_COUNTS = {"archive.zip": 60, "archive.tar": 60, "archive.tar.gz": 40, "checkpoint.pth": 60,
              "tiny-or-odd-driver": 24, "mutated-driver": 20, "mutated-sidecar": 30}  # 294 runs, about 30 s


def _run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, (argv, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code in (0, 1) and (code == 0) == (not errors) and len(errors) <= 1, (argv, code, err)
    return code, err


@pytest.fixture(scope="module")
def archive_seeds(tmp_path_factory) -> dict[str, bytes]:
    import tarfile
    import zipfile

    from tests.assets import coordinpaint_dir

    folder = tmp_path_factory.mktemp("archive-seeds")
    files = [coordinpaint_dir() / name for name in ("inpainter.pth", "refiner.pth")]
    with zipfile.ZipFile(folder / "a.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for file in files:
            z.write(file, f"checkpoint/{file.name}")
    for name, mode in (("a.tar", "w"), ("a.tar.gz", "w:gz")):
        with tarfile.open(folder / name, mode) as t:
            for file in files:
                t.add(file, f"checkpoint/{file.name}")
    return {"archive.zip": (folder / "a.zip").read_bytes(), "archive.tar": (folder / "a.tar").read_bytes(),
            "archive.tar.gz": (folder / "a.tar.gz").read_bytes(), "checkpoint.pth": files[1].read_bytes()}


@pytest.mark.parametrize("kind", ["archive.zip", "archive.tar", "archive.tar.gz", "checkpoint.pth"])
def test_weights_import_of_mutated_archives_never_crashes(kind, archive_seeds, tmp_path, capsys):
    rng = np.random.default_rng([SEED, 100, len(kind)])
    suffix = "." + kind.split(".", 1)[1]
    assert _run_cli(["weights", "import", str(_write(tmp_path / f"seed{suffix}", archive_seeds[kind]))],
                    capsys)[0] == 0
    codes = []
    for i in range(CLI_COUNTS[kind]):
        path = _write(tmp_path / f"m{i:03d}{suffix}", mutate(archive_seeds[kind], rng))
        codes.append(_run_cli(["weights", "import", str(path)], capsys)[0])
    assert len(codes) == CLI_COUNTS[kind] and 1 in codes


def _synthetic_driver(folder: Path, name: str, width: int, height: int, n: int, codec: str) -> Path:
    """``n`` frames of ``width x height`` with a person-like block, and its ``.iuv.npz`` sidecar."""
    rng = np.random.default_rng(width * 1000 + height)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]
    iuv = np.zeros((n, height, width, 3), np.uint8)
    iuv[:, height // 4: max(height // 4 + 1, 3 * height // 4), width // 3: max(width // 3 + 1, 2 * width // 3)] = \
        (2, 128, 128)
    kwargs = {"codec": "png", "fmt": "mov", "pix_fmt": "rgb24"} if codec == "png" else {}
    path = badmedia.write_video(folder / f"{name}.{'mov' if codec == 'png' else 'mp4'}", frames, **kwargs)
    np.savez(folder / f"{name}.iuv.npz", iuv=iuv)
    return path


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-video")
    badmedia.write_source(folder, (96, 128))
    return folder


def _video(folder: Path, driver: Path, out: Path, *extra: str) -> list[str]:
    return ["video", "--source", str(folder / "source.png"), "--driver", str(driver), "-o", str(out),
            "--size", "64", "--weight-free", "-q", "--overwrite", *extra]


def test_tiny_odd_and_mutated_drivers_and_sidecars_never_crash(video_folder, tmp_path, capsys):
    import shutil

    rng = np.random.default_rng([SEED, 200])
    for item in video_folder.iterdir():
        shutil.copy(item, tmp_path / item.name)
    out = tmp_path / "out.mp4"
    sizes = [(1, 1), (2, 2), (3, 5), (31, 32), (32, 32), (33, 47)]
    sizes += [tuple(int(v) for v in rng.integers(1, 72, 2)) for _ in range(CLI_COUNTS["tiny-or-odd-driver"] - 6)]
    results = {}
    for i, (w, h) in enumerate(sizes):  # tiny and odd-sized drivers (PNG-coded: any size; H.264 where it can)
        codec = "png" if (w < 16 or h < 16 or i % 2) else "h264"
        driver = _synthetic_driver(tmp_path, f"d{i}_{w}x{h}", w, h, 3, codec)
        results[(w, h)] = _run_cli(_video(tmp_path, driver, out, "--on-missing", ["hold", "skip"][i % 2]), capsys)[0]
    assert results[(1, 1)] == 1 and results[(31, 32)] == 1 and results[(32, 32)] == 0
    good = _synthetic_driver(tmp_path, "good", 48, 40, 4, "h264")
    good_bytes, sidecar_bytes = good.read_bytes(), good.with_name("good.iuv.npz").read_bytes()
    for i in range(CLI_COUNTS["mutated-driver"]):  # damaged drivers with a good sidecar
        driver = _write(tmp_path / f"md{i}.mp4", mutate(good_bytes, rng))
        _write(tmp_path / f"md{i}.iuv.npz", sidecar_bytes)
        _run_cli(_video(tmp_path, driver, out), capsys)
    for i in range(CLI_COUNTS["mutated-sidecar"]):  # damaged sidecars with a good driver
        driver = _write(tmp_path / f"ms{i}.mp4", good_bytes)
        _write(tmp_path / f"ms{i}.iuv.npz", mutate(sidecar_bytes, rng))
        _run_cli(_video(tmp_path, driver, out), capsys)
