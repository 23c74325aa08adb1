"""Issue 32 (reliability round 3), one test class per failure class, each with variants:

inputs never overwritten (the output set is disjoint from the input set, sidecars included), only
regular files read or replaced (FIFOs, devices, folders, symlink loops), declared sizes checked before
decoding (images and ``.npz``), documented bounds for numeric options, all-or-nothing outputs, cache
entries of any kind recomputed, progress bars that never share the ``error:`` line, and the final
rename of a concurrent run.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from retarget.cli import main
from retarget.errors import InputError, UsageError
from tests import badmedia
from tests.conftest import one_error_line

FLAGS = ["--size", "64", "--weight-free", "-q"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    badmedia.write_source(folder, (96, 128))
    badmedia.write_driver(folder, "driver", n=4)
    return folder


@pytest.fixture
def work(media, tmp_path) -> Path:
    for item in media.iterdir():
        shutil.copy(item, tmp_path / item.name)
    return tmp_path


def _video(work: Path, *extra, source=None, driver=None, out=None) -> list[str]:
    return ["video", "--source", str(source or work / "source.png"), "--driver", str(driver or work / "driver.mp4"),
            "-o", str(out or work / "out.mp4"), *FLAGS, *extra]


def _png(width: int, height: int, bits: int = 8, colour: int = 2, rows: int = 1) -> bytes:
    """A PNG whose header announces ``width x height`` (``bits``-bit samples, ``colour`` type); the data is
    ``rows`` zero rows, so a decoder that trusts the header allocates the whole image first."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    channels = {0: 1, 2: 3, 6: 4}[colour]
    row = b"\0" + b"\0" * (width * channels * bits // 8)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * rows)) + chunk(b"IEND", b""))


def _fails_without_blocking(argv: list[str], fifo: Path, capsys, code: int = 1) -> str:
    """Run ``argv``; should it open ``fifo`` (and block), a helper opens the other end after 10 s so that the
    test ends, and then fails on the elapsed time."""
    def unblock():
        time.sleep(10)
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
    threading.Thread(target=unblock, daemon=True).start()
    start = time.monotonic()
    result = main(argv)
    assert time.monotonic() - start < 8, "the command blocked on the FIFO"
    assert result == code
    return one_error_line(capsys)


# ------------------------------------------------------------------------------------------ guard
class TestGuard:
    """retarget.io.guard, the one place that resolves a command's paths."""

    def test_special_inputs_are_refused_unopened(self, tmp_path):
        from retarget.io.guard import check_input

        fifo = tmp_path / "pipe.png"
        os.mkfifo(fifo)
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
        (tmp_path / "file.txt").write_text("x")
        cases = {fifo: "FIFO", Path("/dev/zero"): "character device", Path("/dev/urandom"): "character device",
                 tmp_path: "is a folder", tmp_path / "loop": "symlink loop",
                 tmp_path / "file.txt" / "below.png": "a part of the path is a file",
                 tmp_path / "missing.png": "not found"}
        for path, says in cases.items():
            with pytest.raises(InputError, match=says):
                check_input(path, noun="an image file")
        assert check_input(tmp_path, kind="folder") == tmp_path.resolve()
        with pytest.raises(InputError, match="is a file, expected a folder"):
            check_input(tmp_path / "file.txt", kind="folder")

    def test_outputs_are_new_or_regular_files(self, tmp_path):
        from retarget.io.guard import check_output

        fifo = tmp_path / "pipe.mp4"
        os.mkfifo(fifo)
        link = tmp_path / "null.mp4"
        link.symlink_to("/dev/null")
        for path in (Path("/dev/null"), fifo, link):  # never replaced, even as root, even with --overwrite
            with pytest.raises(InputError, match="only regular files are replaced"):
                check_output(path, overwrite=True)
        (tmp_path / "old.mp4").write_bytes(b"x")
        with pytest.raises(UsageError, match="--overwrite"):
            check_output(tmp_path / "old.mp4")
        assert check_output(tmp_path / "old.mp4", overwrite=True) == (tmp_path / "old.mp4").resolve()
        with pytest.raises(InputError, match="folder"):
            check_output(tmp_path, overwrite=True)

    def test_output_set_is_disjoint_from_inputs_in_any_order_and_spelling(self, tmp_path):
        from retarget.io.guard import PathPlan

        photo = tmp_path / "photo.png"
        photo.write_bytes(b"x")
        alias = tmp_path / "alias.png"
        alias.symlink_to(photo)
        for first_input in (True, False):
            plan = PathPlan()
            if first_input:
                plan.input(photo)
                with pytest.raises(UsageError, match="overwrite an input"):
                    plan.output(alias, overwrite=True)
            else:
                plan.output(tmp_path / "sub" / ".." / "photo.png", overwrite=True)
                with pytest.raises(UsageError, match="overwrite an input"):
                    plan.input(photo)
        plan = PathPlan()
        plan.output(tmp_path / "a.png")
        with pytest.raises(UsageError, match="same file"):
            plan.output(tmp_path / "." / "a.png")

    def test_output_folder_may_not_hold_an_input(self, tmp_path):
        import re

        from retarget.io.guard import PathPlan

        inside = tmp_path / "out" / "source" / "texture_colour.png"
        inside.parent.mkdir(parents=True)
        inside.write_bytes(b"x")
        plan = PathPlan()
        plan.input(inside)
        with pytest.raises(UsageError, match="holds the input"):
            plan.output_folder(tmp_path / "out")
        # with the names the run writes, only an input of such a name (or the folder itself) conflicts
        plan = PathPlan()
        plan.input(inside)
        plan.output_folder(inside.parent, names=re.compile(r"v_\d{6}_IUV\.png"))
        plan.input(tmp_path / "out", kind="folder")  # a parent folder of the outputs is no conflict
        with pytest.raises(UsageError, match="holds the input"):
            plan.input(inside.parent, kind="folder")


class TestInputsNeverOverwritten:
    @pytest.mark.parametrize("out", ["source_IUV.png", "source.png", "source_IUV.mask.png"])
    def test_texture_output_over_an_input_or_its_sidecar(self, work, capsys, out):
        if out.endswith(".mask.png"):  # -o source_IUV.mask.png writes its mask to source_IUV.mask.mask.png: an input
            shutil.copy(work / "source.png", work / "source_IUV.mask.mask.png")
            shutil.copy(work / "source_IUV.png", work / "source_IUV.mask.mask_IUV.png")
            source = work / "source_IUV.mask.mask.png"
        else:
            source = work / "source.png"
        before = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
        assert main(["texture", "--source", str(source), "--weight-free", "--size", "64", "-o", str(work / out),
                     "--overwrite"]) == 2
        assert "overwrite an input" in one_error_line(capsys)
        assert {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()} == before

    def test_texture_npz_over_an_input(self, work, capsys):
        npz = work / "tex.npz"  # -o tex.png writes tex.npz: here it is the source IUV (a UV .npy would be too)
        shutil.copy(work / "source_IUV.png", npz)
        assert main(["texture", "--source", str(work / "source.png"), "--source-iuv", str(npz), "--weight-free",
                     "--size", "64", "-o", str(work / "tex.png"), "--overwrite"]) == 2
        assert "overwrite an input" in one_error_line(capsys)

    def test_frames_overwrite_keeps_an_input_inside_the_output_folder(self, work, capsys):
        out = work / "inspect"
        edited = out / "source" / "texture_colour.png"
        edited.parent.mkdir(parents=True)
        from PIL import Image

        Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(edited)  # a good texture, in the wrong place
        before = edited.read_bytes()
        assert main(["frames", "--source", str(work / "source.png"), "--driver", str(work / "driver.mp4"),
                     "--out", str(out), "--overwrite", "--texture", str(edited), *FLAGS]) == 2
        assert "holds the input" in one_error_line(capsys)
        assert edited.read_bytes() == before

    def test_video_output_is_the_driver_sidecar_through_a_symlink(self, work, capsys):
        link = work / "alias.mp4"
        link.symlink_to(work / "driver.mp4")
        assert main(_video(work, "--overwrite", out=link)) == 2
        assert "overwrite an input" in one_error_line(capsys)

    def test_densepose_frames_never_replace_precomputed_iuv(self, work, capsys):
        import cv2

        folder = work / "iuv"
        folder.mkdir()
        for i, frame in enumerate(np.load(work / "driver.iuv.npz")["iuv"]):
            cv2.imwrite(str(folder / f"driver_{i:06d}_IUV.png"), frame)
        assert main(["densepose", str(work / "driver.mp4"), "--iuv", str(folder), "--out", str(folder), "-q"]) == 2
        assert "holds the input" in one_error_line(capsys)

    def test_convert_iuv_onto_itself(self, work, capsys):
        assert main(["convert-iuv", str(work / "source_IUV.png"), "-o", str(work / "source_IUV.png"),
                     "--overwrite"]) == 2
        assert "overwrite an input" in one_error_line(capsys)


class TestSpecialFiles:
    def test_fifo_source_driver_texture_and_garment_fail_at_once(self, work, capsys):
        fifo = work / "pipe.png"
        os.mkfifo(fifo)
        for argv in (_video(work, source=fifo), _video(work, driver=fifo), _video(work, "--texture", str(fifo)),
                     _video(work, "--garment", str(fifo)), _video(work, "--source-iuv", str(fifo))):
            assert "FIFO" in _fails_without_blocking(argv, fifo, capsys)

    def test_fifo_as_sidecar_and_in_other_commands(self, work, capsys):
        fifo = work / "driver.iuv.npz"
        (work / "driver.iuv.npz").unlink()
        os.mkfifo(fifo)
        assert "FIFO" in _fails_without_blocking(_video(work), fifo, capsys)
        pipe = work / "p_IUV.png"
        os.mkfifo(pipe)
        assert "FIFO" in _fails_without_blocking(["convert-iuv", str(pipe)], pipe, capsys)
        assert "FIFO" in _fails_without_blocking(["densepose", str(pipe), "--out", str(work / "o.npz")], pipe, capsys)
        assert "FIFO" in _fails_without_blocking(["weights", "import", str(pipe)], pipe, capsys)

    def test_devices_as_inputs(self, work, capsys):
        for device in ("/dev/zero", "/dev/urandom"):
            assert main(_video(work, driver=Path(device))) == 1
            assert "character device" in one_error_line(capsys)
            assert main(_video(work, "--texture", device)) == 1
            assert "character device" in one_error_line(capsys)

    def test_dev_null_is_never_an_output(self, work, capsys):
        st = os.stat("/dev/null")
        os.symlink("/dev/null", work / "null.mp4")
        assert main(_video(work, "--overwrite", out=work / "null.mp4")) == 1
        assert "only regular files are replaced" in one_error_line(capsys)
        assert main(["texture", "--source", str(work / "source.png"), "--weight-free", "--size", "64",
                     "-o", str(work / "t.png"), "--overwrite"]) == 0
        os.symlink("/dev/null", work / "n.png")
        assert main(["image", "--source", str(work / "source.png"), "--source-iuv", str(work / "source_IUV.png"),
                     "--target-iuv", str(work / "source_IUV.png"), "--weight-free", "-o", str(work / "n.png"),
                     "--overwrite"]) == 1
        assert "only regular files are replaced" in one_error_line(capsys)
        assert os.stat("/dev/null").st_rdev == st.st_rdev and not Path("/dev/null").is_file()

    def test_folders_and_loops(self, work, capsys):
        garment = work / "garment"
        garment.mkdir()
        assert main(_video(work, "--garment", str(garment))) == 1
        assert "garment photo is a folder" in one_error_line(capsys)
        assert main(_video(work, "--texture", str(garment))) == 1
        assert "texture is a folder" in one_error_line(capsys)
        loop = work / "loop.png"
        loop.symlink_to(loop)
        assert main(_video(work, source=loop)) == 1
        assert "symlink loop" in one_error_line(capsys)

    def test_hashing_refuses_special_files(self, tmp_path):
        from densepose_adapter.hashing import file_sha256

        fifo = tmp_path / "f"
        os.mkfifo(fifo)
        for path in (fifo, Path("/dev/zero"), tmp_path):
            with pytest.raises(InputError, match="not a regular file"):
                file_sha256(path)


# ------------------------------------------------------------------------------------------ bombs
class TestDecompressionBombs:
    BOMB = dict(width=30000, height=26000, bits=16)  # 4.7 GB of 16-bit RGB declared by a tiny file

    def test_texture_bomb_is_refused_from_its_header(self, work, capsys):
        bomb = work / "bomb.png"
        bomb.write_bytes(_png(**self.BOMB))
        assert bomb.stat().st_size < 200_000
        assert main(_video(work, "--texture", str(bomb))) == 1
        assert "texture is 30000x26000 but this run uses 64x64" in one_error_line(capsys)

    def test_photo_and_garment_bombs(self, work, capsys):
        from PIL import Image

        before = Image.MAX_IMAGE_PIXELS
        bomb = work / "bomb.png"
        bomb.write_bytes(_png(**self.BOMB))
        shutil.copy(work / "source_IUV.png", work / "bomb_IUV.png")
        assert main(_video(work, source=bomb)) == 1
        assert "above the 50 MP limit" in one_error_line(capsys)
        assert main(_video(work, "--allow-large", source=bomb)) == 1  # --allow-large has a ceiling too
        assert "that can be decoded, even with --allow-large" in one_error_line(capsys)
        assert main(_video(work, "--garment", str(bomb))) == 1
        assert "above the 50 MP limit" in one_error_line(capsys)
        assert Image.MAX_IMAGE_PIXELS == before  # never changed process-wide

    def test_iuv_bombs(self, work, capsys):
        bomb = work / "bomb_IUV.png"
        bomb.write_bytes(_png(**self.BOMB))
        assert main(_video(work, "--source-iuv", str(bomb))) == 1
        assert "DensePose map is 30000x26000 but the photo is 96x128" in one_error_line(capsys)
        assert main(["convert-iuv", str(bomb)]) == 1  # no photo to compare with: the ceiling
        assert "above the 180 MP limit" in one_error_line(capsys)
        bomb.write_bytes(_png(96, 128, bits=16))
        assert main(_video(work, "--source-iuv", str(bomb))) == 1
        assert "must be 8-bit" in one_error_line(capsys)
        bomb.write_bytes(_png(30000, 26000))  # 8-bit: the photo's size decides
        assert main(_video(work, "--source-iuv", str(bomb))) == 1
        assert "DensePose map is 30000x26000 but the photo is 96x128" in one_error_line(capsys)
        assert main(["convert-iuv", str(bomb)]) == 1
        assert "above the 180 MP limit" in one_error_line(capsys)

    def test_16bit_photos_still_read_and_round_like_before(self, tmp_path):
        from PIL import Image

        from retarget.io.image import read_image_rgb

        values = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
        Image.fromarray(values).save(tmp_path / "deep.png")
        got = read_image_rgb(tmp_path / "deep.png")[..., 0]
        assert np.array_equal(got, np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8))

    def test_no_pil_warning_for_accepted_sizes(self, work, monkeypatch):
        from PIL import Image

        from retarget.pipeline.texture import read_texture

        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(work / "t.png")
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 64x64 now counts as "mid-size" for PIL
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read_texture(work / "t.png", (64, 64))
        assert not [w for w in caught if "DecompressionBomb" in type(w.message).__name__]

    def test_npz_bombs(self, tmp_path):
        from densepose_adapter.safe_npz import NpzError, load_npz

        path = tmp_path / "bomb.npz"
        np.savez_compressed(path, iuv=np.zeros((2000, 2000, 3), np.uint8))  # 12 MB from ~12 KB
        assert path.stat().st_size < 100_000
        with pytest.raises(NpzError, match="decompression bomb"):
            load_npz(path, {"iuv": 96 * 96 * 3})
        assert load_npz(path, 12_000_000)["iuv"].shape == (2000, 2000, 3)
        buf = io.BytesIO()
        np.save(buf, np.zeros(10, np.uint8))
        lying = buf.getvalue().replace(b"'shape': (10,)", b"'shape': (99,)")  # same length: header announces more
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("iuv.npy", lying)
        with pytest.raises(NpzError, match="declares"):
            load_npz(path, 1 << 30)
        np.savez(path, iuv=np.array([{"a": 1}], dtype=object))
        with pytest.raises(NpzError, match="Python objects"):
            load_npz(path, 1 << 30)

    def test_driver_sidecar_npz_bomb(self, work, capsys):
        iuv = np.load(work / "driver.iuv.npz")["iuv"]
        np.savez_compressed(work / "driver.iuv.npz", iuv=iuv, boxes=np.zeros((400_000, 4), np.float64),
                            frame_index=np.zeros(400_000, np.int64))
        assert main(_video(work)) == 1
        assert "decompression bomb" in one_error_line(capsys)


# ------------------------------------------------------------------------------------------ bounds
class TestBounds:
    def test_check_bounds(self):
        from retarget.pipeline.bounds import (
            BATCH_SIZE_BOUNDS,
            DENSEPOSE_SIZE_BOUNDS,
            SIZE_BOUNDS,
            check_bounds,
        )

        assert check_bounds("size", SIZE_BOUNDS[0]) == 64 and check_bounds("size", SIZE_BOUNDS[1]) == 2048
        assert check_bounds("batch_size", BATCH_SIZE_BOUNDS[1]) == 256
        assert check_bounds("densepose_size", DENSEPOSE_SIZE_BOUNDS[0]) == 32
        for name, value in (("size", 100000), ("size", 66), ("size", 60), ("size", True), ("size", 64.0),
                            ("batch_size", 0), ("batch_size", 257), ("densepose_size", 31),
                            ("densepose_size", 100000), ("densepose_size", "800")):
            with pytest.raises(UsageError):
                check_bounds(name, value)
        with pytest.raises(UsageError, match=r"^jobs.csv:3: size must be"):
            check_bounds("size", 100000, "jobs.csv:3: size")

    @pytest.mark.parametrize("extra, says", [
        (["--size", "100000"], "--size must be a multiple of 4 from 64 to 2048"),
        (["--batch-size", "100000"], "--batch-size must be from 1 to 256"),
        (["--batch-size", "0"], "--batch-size must be from 1 to 256"),
        (["--densepose-size", "100000"], "--densepose-size must be from 32 to 4096"),
    ])
    def test_video_refuses_out_of_bounds(self, work, capsys, extra, says):
        assert main(_video(work, *extra)) == 2
        assert says in one_error_line(capsys)
        assert not (work / "out.mp4").exists()

    def test_other_commands(self, work, capsys):
        base = ["--source", str(work / "source.png"), "--weight-free"]
        assert main(["texture", *base, "--size", "100000", "-o", str(work / "t.png")]) == 2
        assert "--size" in one_error_line(capsys)
        assert main(["frames", *base, "--driver", str(work / "driver.mp4"), "--out", str(work / "f"),
                     "--size", "4096"]) == 2
        assert "--size" in one_error_line(capsys)
        assert main(["densepose", str(work / "source.png"), "--out", str(work / "o.npz"),
                     "--densepose-size", "8"]) == 2
        assert "--densepose-size" in one_error_line(capsys)

    @pytest.mark.parametrize("value", ["+-1", "²", "١", "1_0", "--1", "99999999999", "1.5", " "])
    def test_person_values_are_usage_errors(self, work, capsys, value):
        assert main(_video(work, "--person", value)) == 2
        line = one_error_line(capsys)
        assert line.startswith("error: --person") and "internal error" not in line


# ------------------------------------------------------------------------------------------ partial outputs
class TestPartialOutputs:
    def _texture(self, work: Path, *extra) -> list[str]:
        return ["texture", "--source", str(work / "source.png"), "--weight-free", "--size", "64",
                "-o", str(work / "tex.png"), "--legend", *extra]

    @pytest.mark.parametrize("fail_at", [1, 2, 3, 4])
    def test_texture_disk_full_keeps_nothing(self, work, capsys, monkeypatch, fail_at):
        real = Path.write_bytes
        calls = []

        def write_bytes(self, data):
            calls.append(self)
            if len(calls) == fail_at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
            return real(self, data)

        monkeypatch.setattr(Path, "write_bytes", write_bytes)
        before = sorted(p.name for p in work.iterdir())
        assert main(self._texture(work)) == 1
        line = one_error_line(capsys)
        assert "no space left" in line and "nothing was kept" in line and ".part" not in line
        assert sorted(p.name for p in work.iterdir()) == before

    def test_texture_disk_full_with_overwrite_keeps_the_old_set(self, work, capsys, monkeypatch):
        assert main(self._texture(work)) == 0
        capsys.readouterr()
        old = {p.name: p.read_bytes() for p in work.glob("tex*")}
        assert len(old) == 4
        real = Path.write_bytes
        monkeypatch.setattr(Path, "write_bytes", lambda self, data: real(self, data) if "mask" not in self.name
                            else (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device", str(self))))
        assert main(self._texture(work, "--overwrite", "--size", "128")) == 1
        assert {p.name: p.read_bytes() for p in work.glob("tex*")} == old

    def test_frames_person_3_of_one_leaves_nothing_and_the_rerun_works(self, work, capsys):
        def args(out: Path, *extra) -> list[str]:
            return ["frames", "--source", str(work / "source.png"), "--driver", str(work / "driver.mp4"),
                    "--out", str(out), "--frames", "0,1", *FLAGS, *extra]

        out = work / "inspect"
        assert main(args(out, "--person", "3")) == 1
        assert "--person 3" in one_error_line(capsys)
        assert not out.exists()
        assert main(args(out)) == 0  # the corrected rerun is not refused as "not empty"
        kept = work / "kept"
        kept.mkdir()
        (kept / "mine.txt").write_text("x")
        assert main(args(kept, "--person", "3", "--overwrite")) == 1
        capsys.readouterr()
        assert [p.name for p in kept.iterdir()] == ["mine.txt"]  # the user's file stays, nothing of the run


# ------------------------------------------------------------------------------------------ cache entries
class TestCacheEntries:
    def _result(self, hw=(8, 10)):
        from densepose_adapter.types import DensePoseResult

        iuv = np.zeros((*hw, 3), np.uint8)
        iuv[2:5, 3:6] = (1, 100, 100)
        return DensePoseResult.from_iuv(iuv)

    @pytest.mark.parametrize("kind", ["folder", "fifo", "garbage", "bomb", "other-arrays", "link-loop"])
    def test_bad_densepose_entry_is_recomputed(self, tmp_path, kind):
        from retarget.pipeline.densepose_stage import DensePoseCache

        driver = tmp_path / "d.mp4"
        driver.write_bytes(b"driver")
        cache = DensePoseCache(driver, "key", root=tmp_path / "cache")
        cache.folder.mkdir(parents=True)
        entry = cache._path(0)
        if kind == "folder":
            (entry / "inner").mkdir(parents=True)
        elif kind == "fifo":
            os.mkfifo(entry)
        elif kind == "garbage":
            entry.write_bytes(b"PK\x03\x04 not really")
        elif kind == "bomb":
            np.savez_compressed(entry, iuv=np.zeros((3000, 3000, 3), np.uint8), boxes=np.zeros((0, 4), np.float32),
                                scores=np.zeros(0, np.float32), checksum=np.array("x"))
        elif kind == "other-arrays":
            np.savez(entry, something=np.zeros(3))
        else:
            entry.symlink_to(entry)
        start = time.monotonic()
        assert cache.load(0, (8, 10)) is None and cache.corrupt == 1
        cache.store(0, self._result())
        assert time.monotonic() - start < 5
        again = DensePoseCache(driver, "key", root=tmp_path / "cache").load(0, (8, 10))
        assert again is not None and again.iuv.shape == (8, 10, 3)

    @pytest.mark.parametrize("kind", ["file", "fifo-meta", "folder-bin", "link"])
    def test_bad_openvino_entry_is_removed_without_blocking(self, tmp_path, kind, capsys):
        from densepose_adapter.openvino_cache import ModelCache

        cache = ModelCache(tmp_path / "engines")
        entry = cache.entry_dir("tiny", "k1")
        entry.parent.mkdir(parents=True)
        if kind == "file":
            entry.write_text("x")
        elif kind == "link":
            entry.symlink_to(tmp_path)
        else:
            entry.mkdir()
            for name in ("meta.json", "model.xml", "model.bin"):
                (entry / name).write_text("{}")
            if kind == "fifo-meta":
                (entry / "meta.json").unlink()
                os.mkfifo(entry / "meta.json")
            else:
                (entry / "model.bin").unlink()
                (entry / "model.bin").mkdir()
        start = time.monotonic()
        assert cache.load("tiny", "k1") is None and time.monotonic() - start < 5
        assert not os.path.lexists(entry) and tmp_path.is_dir()  # removed; a link's target is left alone
        assert "damaged" in capsys.readouterr().err

    @pytest.mark.parametrize("kind", ["folder", "fifo", "short", "huge"])
    def test_bad_uv_table_entry_is_rebuilt(self, kind):
        from retarget.uvmap import cache as uvcache

        path = uvcache.table_cache_path("training")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        if kind == "folder":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "short":
            path.write_bytes(b"\x93NUMPY garbage")
        else:
            with open(path, "wb") as handle:
                handle.truncate(1 << 30)  # sparse: a "table" of 1 GiB is not read
        uvcache.clear_memory_cache()
        start = time.monotonic()
        lookup = uvcache.get_lookup("training")
        assert lookup.shape == uvcache.LOOKUP_SHAPE and time.monotonic() - start < 30
        assert path.is_file() and path.stat().st_size < 2 * lookup.nbytes


# ------------------------------------------------------------------------------------------ smaller items
class TestSmallerItems:
    def test_progress_only_on_a_terminal(self, monkeypatch):
        from retarget.io.progress import progress_bar, progress_enabled

        monkeypatch.delenv("RETARGET_PROGRESS", raising=False)
        assert not progress_enabled()  # pytest's stderr is not a terminal
        monkeypatch.setenv("RETARGET_PROGRESS", "1")
        assert progress_enabled() and not progress_enabled(quiet=True)
        monkeypatch.setenv("RETARGET_PROGRESS", "0")
        assert progress_bar(10, "x").disable

    def test_error_line_starts_a_line_after_a_forced_bar(self, work, capsys, monkeypatch):
        from retarget.io import video as video_io

        monkeypatch.setenv("RETARGET_PROGRESS", "1")
        real = video_io.VideoWriter.write

        def write(self, rgb, pts=None):
            if self.frames_written >= 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
            return real(self, rgb, pts)

        monkeypatch.setattr(video_io.VideoWriter, "write", write)
        argv = [a for a in _video(work) if a != "-q"]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert [line for line in err.split("\n") if line.startswith("error: ")], repr(err)

    def test_concurrent_new_output_is_never_replaced(self, tmp_path):
        from retarget.io.atomic import atomic_output

        target = tmp_path / "o.mp4"
        with pytest.raises(UsageError, match="appeared while this run was writing"):
            with atomic_output(target, overwrite=False) as tmp:
                tmp.write_bytes(b"mine")
                target.write_bytes(b"theirs")  # another run finished first
        assert target.read_bytes() == b"theirs" and list(tmp_path.iterdir()) == [target]
        with atomic_output(target) as tmp:  # --overwrite: replaced
            tmp.write_bytes(b"mine")
        assert target.read_bytes() == b"mine"

    def test_concurrent_group_and_single_writers(self, tmp_path):
        from retarget.io.atomic import atomic_outputs, write_bytes_atomic
        from retarget.io.iuv import write_uv_npy

        paths = [tmp_path / "t.png", tmp_path / "t.mask.png", tmp_path / "t.npz"]
        with pytest.raises(UsageError, match="appeared"):
            with atomic_outputs(paths, overwrite=False) as temps:
                for tmp in temps:
                    tmp.write_bytes(b"mine")
                paths[1].write_bytes(b"theirs")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mask.png"]  # none of this run's set is kept
        with pytest.raises(UsageError, match="appeared"):
            write_bytes_atomic(paths[1], b"mine", overwrite=False)
        with pytest.raises(UsageError, match="appeared"):
            write_uv_npy(paths[1], np.zeros((4, 4, 2), np.float32), overwrite=False)
        assert paths[1].read_bytes() == b"theirs"

    def test_two_video_runs_to_one_new_output(self, work, capsys):
        from retarget.pipeline.job import VideoJob, run_video_job
        from retarget.pipeline.video import VideoOptions

        out = work / "same.mp4"

        def meanwhile(index, rgb):
            if index == 0:
                out.write_bytes(b"the other run's video")

        job = VideoJob(source=work / "source.png", driver=work / "driver.mp4", output=out, size=64,
                       options=VideoOptions(quiet=True))
        with pytest.raises(UsageError, match="appeared while this run was writing"):
            run_video_job(job, None, on_frame=meanwhile)
        assert out.read_bytes() == b"the other run's video"
        assert not [p for p in work.iterdir() if ".part" in p.name]
