"""DensePose IUV → SMPL-UV conversion: reference parity, properties, file I/O, cache and CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXAMPLE_IUV, SAMPLES, require_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from retarget.cli.app import main
from retarget.errors import InputError
from retarget.io.iuv import read_iuv_png, read_uv_npy, write_iuv_png, write_uv_npy
from retarget.uvmap import TABLES, get_lookup, iuv_to_uv
from retarget.uvmap import cache as uvcache

EXACT_TOL = 1e-4
MAX_MASK_DIFF = 0.001  # fraction of person pixels whose NaN-ness may differ from the reference
MIN_EXACT = {"training": 0.97, "released": 0.99}
# Reference files whose table is known (from the reference repo's history); others are detected.
KNOWN_TABLE = {"WOMEN#Blouses_Shirts#id_00000442#01_2_side": "released"}


def _sample_ids() -> list[str]:
    folder = SAMPLES / "source_iuv"
    return sorted(p.name[: -len("_IUV.png")] for p in folder.glob("*_IUV.png")) if folder.is_dir() else []


def agreement(uv: np.ndarray, reference: np.ndarray, person: np.ndarray) -> tuple[float, float]:
    """(fraction of person pixels whose NaN mask differs, fraction that agree within EXACT_TOL).

    A person pixel agrees when both maps are NaN there or both are finite and within the tolerance.
    """
    nan_uv, nan_ref = np.isnan(uv).any(-1), np.isnan(reference).any(-1)
    close = np.abs(np.nan_to_num(uv) - np.nan_to_num(reference)).max(-1) <= EXACT_TOL
    exact = (nan_uv & nan_ref) | (~nan_uv & ~nan_ref & close)
    n = max(int(person.sum()), 1)
    return float((nan_uv != nan_ref)[person].sum() / n), float(exact[person].sum() / n)


def expected_table(sample_id: str, iuv: np.ndarray, reference: np.ndarray, scores: dict) -> str:
    """Which table made ``reference``.

    Only the training table leaves NaN holes on the person (chart points no atlas face covers), so a
    hole means ``training``. Without holes, the known mapping decides, else the better-matching table.
    """
    if sample_id in KNOWN_TABLE:
        return KNOWN_TABLE[sample_id]
    person = iuv[..., 0] > 0
    if np.isnan(reference).any(-1)[person].any():
        return "training"
    return max(scores, key=lambda name: scores[name][1])


@pytest.mark.parametrize("sample_id", _sample_ids() or ["<no samples found>"])
def test_matches_reference_samples(sample_id):
    iuv_path = require_shared(SAMPLES / "source_iuv" / f"{sample_id}_IUV.png")
    reference = np.load(require_shared(SAMPLES / "source_uv" / f"{sample_id}.npy"))
    iuv = read_iuv_png(iuv_path)
    person = iuv[..., 0] > 0
    scores = {name: agreement(iuv_to_uv(iuv, name), reference, person) for name in TABLES}
    table = expected_table(sample_id, iuv, reference, scores)
    mask_diff, exact = scores[table]
    assert mask_diff <= MAX_MASK_DIFF, f"{table}: NaN mask differs on {mask_diff:.3%} of person pixels"
    assert exact >= MIN_EXACT[table], f"{table}: only {exact:.2%} of person pixels within {EXACT_TOL}"
    # The expected table must also be the one that fits the reference best.
    assert exact >= max(score[1] for score in scores.values())


def test_samples_are_present():
    assert _sample_ids(), f"no *_IUV.png under {require_shared(SAMPLES / 'source_iuv')}"


def test_known_samples_show_both_tables():
    require_shared(SAMPLES / "source_iuv")
    ids = set(_sample_ids())
    assert set(KNOWN_TABLE) <= ids


# --- properties -------------------------------------------------------------------------------------

_iuv_frames = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)).flatmap(
    lambda shape: arrays(np.uint8, (*shape, 3), elements=st.integers(0, 255)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=_iuv_frames, table=st.sampled_from(TABLES))
def test_any_iuv_converts(frames, table):
    frames = frames.copy()
    frames[..., 0] %= 25  # parts 0..24
    uv = iuv_to_uv(frames, table)
    assert uv.shape == frames.shape[:-1] + (2,) and uv.dtype == np.float32
    nan = np.isnan(uv)
    assert (nan[..., 0] == nan[..., 1]).all()
    background = frames[..., 0] == 0
    assert nan[background].all()
    holes = np.isnan(get_lookup(table)[frames[..., 0], frames[..., 1], frames[..., 2], 0])
    assert (nan[..., 0] == (background | holes)).all()
    if table == "released":
        assert (nan[..., 0] == background).all()
    finite = uv[~nan]
    assert ((finite >= -1) & (finite <= 1)).all()
    # batched == per frame
    for k in range(len(frames)):
        np.testing.assert_array_equal(iuv_to_uv(frames[k], table), uv[k])


def test_training_table_covers_most_chart_points():
    lookup = get_lookup("training")
    assert np.isnan(lookup[0]).all()
    assert np.isnan(lookup[1:, ..., 0]).mean() < 0.5
    assert not np.isnan(get_lookup("released")[1:]).any()


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.full((2, 2, 3), 25, np.uint8)])
def test_invalid_arrays_rejected(bad):
    with pytest.raises(ValueError):
        iuv_to_uv(bad)


def test_unknown_table_rejected():
    with pytest.raises(ValueError, match="unknown table"):
        iuv_to_uv(np.zeros((2, 2, 3), np.uint8), "smpltexmap")


# --- cache -------------------------------------------------------------------------------------------

def test_table_is_cached_on_disk_and_reloaded(monkeypatch):
    """Built once, then loaded from the cache folder; a corrupt cache file is rebuilt."""
    path = uvcache.table_cache_path("released")
    first = get_lookup("released")
    uvcache.clear_memory_cache()
    if not path.exists():  # the in-memory copy came from another test; force a build here
        get_lookup("released")
        uvcache.clear_memory_cache()
    assert path.is_file()

    def no_build(*args, **kwargs):
        raise AssertionError("table rebuilt although cached")

    with monkeypatch.context() as patch:
        patch.setattr(uvcache, "build_lookup", no_build)
        np.testing.assert_array_equal(get_lookup("released"), first)
    uvcache.clear_memory_cache()
    path.write_bytes(b"corrupt")
    np.testing.assert_array_equal(get_lookup("released"), first)  # rebuilt and re-cached
    assert uvcache._read_cached(path) is not None


# --- file I/O ----------------------------------------------------------------------------------------

def test_iuv_png_round_trip_and_channel_order(tmp_path):
    iuv = np.zeros((5, 6, 3), np.uint8)
    iuv[..., 0] = 7
    iuv[..., 1] = 100
    iuv[..., 2] = 200
    path = tmp_path / "x_IUV.png"
    write_iuv_png(path, iuv)
    np.testing.assert_array_equal(read_iuv_png(path), iuv)
    on_disk = cv2.imread(str(path))  # B, G, R
    assert tuple(on_disk[0, 0]) == (7, 100, 200)
    assert [p.name for p in tmp_path.iterdir()] == ["x_IUV.png"]  # no temp files left


def _iuv_with_zero_uv(h: int = 12, w: int = 10) -> np.ndarray:
    """``[I, U, V]`` with a background column, parts 1..24 and U, V spanning 0..255 (zeros on the body too)."""
    rng = np.random.default_rng(3)
    iuv = np.zeros((h, w, 3), np.uint8)
    iuv[:, 1:, 0] = rng.integers(1, 25, (h, w - 1))
    iuv[:, 1:, 1:] = rng.integers(0, 256, (h, w - 1, 2))
    iuv[0, 1:, 1:] = 0  # U = V = 0 on body pixels (DensePose truncates to 0 at chart edges)
    return iuv


def test_iuv_png_in_pil_channel_order_is_read(tmp_path):
    """Files saved from an (I, U, V) stack by PIL or imageio hold R = I, G = U, B = V: read as [I, U, V]."""
    from PIL import Image

    iuv = _iuv_with_zero_uv()
    path = tmp_path / "pil_iuv.png"
    Image.fromarray(iuv).save(path)  # PIL writes channel 0 as red
    assert cv2.imread(str(path))[..., 2].max() <= 24  # what OpenCV sees: I in red
    np.testing.assert_array_equal(read_iuv_png(path), iuv)
    assert main(["convert-iuv", str(path), "-o", str(tmp_path / "pil.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "pil.npy"), iuv_to_uv(iuv))


def test_iuv_png_red_channel_not_taken_for_parts_when_it_cannot_be(tmp_path):
    """A DensePose-order file with a damaged I channel stays refused even where its V (red) is ≤ 24: red is
    0 on body pixels, which a part channel never is."""
    iuv = _iuv_with_zero_uv()
    iuv[..., 2] = np.where(iuv[..., 0] > 0, iuv[..., 2] % 25, 0)  # V ≤ 24, still 0 on some body pixels
    iuv[3, 4, 0] = 30
    path = tmp_path / "damaged_IUV.png"
    cv2.imwrite(str(path), iuv)
    with pytest.raises(InputError, match=r"damaged_IUV.png: not a DensePose IUV image .*blue channel.*red "
                                         r"channel; found 30 and 24"):
        read_iuv_png(path)


def test_pose_with_style_iuv_read_in_its_order():
    """The shared pose-with-style IUV (PIL order, see its PROVENANCE.md) reads with I in 0..24, every body pixel
    with a part, and U and V in the channels its provenance verified (G = U, B = V)."""
    folder = require_shared(SAMPLES.parent / "real" / "pose-with-style")
    files = sorted(folder.glob("*_iuv.png"))
    assert files
    for png in files:
        raw = cv2.imread(str(png))
        iuv = read_iuv_png(png)
        np.testing.assert_array_equal(iuv, raw[..., ::-1])
        assert iuv[..., 0].max() == 24 and ((iuv[..., 0] == 0) <= (iuv[..., 1:] == 0).all(axis=2)).all()


def test_iuv_png_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_iuv_png(tmp_path / "missing.png")
    bad = tmp_path / "photo.png"
    cv2.imwrite(str(bad), np.full((4, 4, 3), 200, np.uint8))
    with pytest.raises(InputError, match="photo.png.*part index"):
        read_iuv_png(bad)
    rgba = tmp_path / "rgba.png"
    cv2.imwrite(str(rgba), np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(InputError, match="3 channels"):
        read_iuv_png(rgba)
    text = tmp_path / "text.png"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a readable image"):
        read_iuv_png(text)


def test_uv_npy_round_trip_and_validation(tmp_path):
    uv = np.full((3, 4, 2), np.nan, np.float32)
    uv[1, 1] = (0.5, -0.25)
    path = tmp_path / "a.npy"
    write_uv_npy(path, uv)
    np.testing.assert_array_equal(read_uv_npy(path), uv)
    half = uv.copy()
    half[2, 2] = (np.nan, 0.1)
    # kept as in the reference pipeline: a person pixel whose NaN channel samples as -10
    read_back = read_uv_npy(_save(tmp_path / "half.npy", half))[2, 2]
    assert np.isnan(read_back[0]) and read_back[1] == np.float32(0.1)
    with pytest.raises(InputError, match="big.npy.*\\[-1, 1\\]"):
        read_uv_npy(_save(tmp_path / "big.npy", np.full((2, 2, 2), 3.0)))
    with pytest.raises(InputError, match="shape.npy"):
        read_uv_npy(_save(tmp_path / "shape.npy", np.zeros((2, 2, 3))))
    with pytest.raises(InputError, match="obj.npy"):
        read_uv_npy(_save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object)))
    with pytest.raises(InputError):
        write_uv_npy(tmp_path / "w.npy", np.zeros((2, 2), np.float32))
    assert not (tmp_path / "w.npy").exists()


def _save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array, allow_pickle=True)
    return path


# --- CLI ---------------------------------------------------------------------------------------------

def _copy_sample(tmp_path: Path) -> Path:
    return Path(shutil.copy(EXAMPLE_IUV, tmp_path / "WOMEN#Blouses_Shirts#id_00007424#02_7_additional_IUV.png"))


def test_cli_converts_file_next_to_input(tmp_path, capsys):
    png = _copy_sample(tmp_path)
    expected_out = tmp_path / (png.name[: -len("_IUV.png")] + ".npy")
    assert main(["convert-iuv", str(png)]) == 0
    np.testing.assert_array_equal(np.load(expected_out), iuv_to_uv(read_iuv_png(png)))
    assert main(["convert-iuv", str(png)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert-iuv", str(png), "--table", "released", "--overwrite"]) == 0
    np.testing.assert_array_equal(np.load(expected_out), iuv_to_uv(read_iuv_png(png), "released"))
    assert main(["convert-iuv", str(png), "-o", str(png)]) == 2  # never overwrite an input


def test_cli_converts_folder(tmp_path):
    png = _copy_sample(tmp_path)
    write_iuv_png(tmp_path / "second_IUV.png", np.zeros((8, 8, 3), np.uint8))
    out_dir = tmp_path / "uv"
    assert main(["convert-iuv", str(tmp_path), "-o", str(out_dir)]) == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted([png.name[: -len("_IUV.png")] + ".npy", "second.npy"])
    assert np.isnan(np.load(out_dir / "second.npy")).all()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["convert-iuv", str(tmp_path / "nothing_IUV.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "nothing_IUV.png" in err and "\n" not in err
    assert main(["convert-iuv", str(tmp_path)]) == 1  # empty folder
    assert main(["convert-iuv", "--help"]) == 0
    assert "retarget convert-iuv" in capsys.readouterr().out


# --- the clean table --------------------------------------------------------------------------------

def _stray_fraction(lookup: np.ndarray, part: int, texel_part: np.ndarray) -> float:
    """Fraction of ``part``'s chart points whose value lands on a texel that another part's points hold
    (``texel_part``: ``(side, side)``, the majority vote of the training table's points)."""
    side = texel_part.shape[0]
    values = lookup[part][~np.isnan(lookup[part][..., 0])]
    row = np.clip(np.rint(((values[:, 1] + 1) * side - 1) / 2), 0, side - 1).astype(int)
    col = np.clip(np.rint(((values[:, 0] + 1) * side - 1) / 2), 0, side - 1).astype(int)
    return float((texel_part[row, col] != part).mean())


def test_clean_table_moves_stray_points_home_and_keeps_the_rest():
    """``training`` rasterises atlas faces that cross a cut of the texture: some of a foot's chart points land
    on an arm's or a thigh's island. ``clean`` moves exactly those to the nearest point of the foot's own."""
    from retarget.uvmap.tables import texel_parts

    training, clean = get_lookup("training"), get_lookup("clean")
    vote = texel_parts(training, 512, 512)[0].reshape(512, 512)
    assert _stray_fraction(training, 5, vote) > 0.05 and _stray_fraction(training, 6, vote) > 0.05
    for part in range(1, 25):
        assert _stray_fraction(clean, part, vote) == 0.0, part
    np.testing.assert_array_equal(np.isnan(clean), np.isnan(training))  # no point gained or lost
    moved = np.abs(np.nan_to_num(clean) - np.nan_to_num(training)).max(axis=-1) > 0
    valid = ~np.isnan(training[..., 0])
    assert 0.01 < moved[valid].mean() < 0.1  # a few per cent of the points, the rest as they were


def test_clean_table_on_the_example_iuv_reads_each_part_from_its_own_island():
    from retarget.uvmap.layout import texture_layout

    iuv = read_iuv_png(EXAMPLE_IUV)
    part = texture_layout(256, 256).part

    def elsewhere(table: str) -> float:
        uv = iuv_to_uv(iuv, table)
        on = ~np.isnan(uv[..., 0])
        row = np.clip(np.rint(((uv[..., 1][on] + 1) * 256 - 1) / 2), 0, 255).astype(int)
        col = np.clip(np.rint(((uv[..., 0][on] + 1) * 256 - 1) / 2), 0, 255).astype(int)
        return float((part[row, col] != iuv[..., 0][on]).mean())

    assert elsewhere("training") > 0.008 and elsewhere("clean") < 0.5 * elsewhere("training")


def test_table_auto_resolves_by_path_and_image_uses_it(tmp_path):
    from retarget.uvmap import resolve_table

    assert resolve_table("auto", weight_free=True) == "clean" and resolve_table("auto", weight_free=False) == "training"
    assert resolve_table("released", weight_free=True) == "released"
    with pytest.raises(ValueError, match="unknown table"):
        resolve_table("nope", weight_free=True)
    from conftest import EXAMPLE_PHOTO

    outputs = {}
    for table in ("auto", "clean", "training"):
        out = tmp_path / f"{table}.png"
        assert main(["image", "--source", str(EXAMPLE_PHOTO), "--source-iuv", str(EXAMPLE_IUV), "--target-iuv",
                     str(EXAMPLE_IUV), "--weight-free", "--table", table, "-o", str(out)]) == 0
        outputs[table] = cv2.imread(str(out))
    np.testing.assert_array_equal(outputs["auto"], outputs["clean"])
    assert (outputs["clean"] != outputs["training"]).any()
    assert main(["image", "--source", str(EXAMPLE_PHOTO), "--source-iuv", str(EXAMPLE_IUV), "--target-iuv",
                 str(EXAMPLE_IUV), "--table", "nope", "-o", str(tmp_path / "x.png")]) == 2


def test_table_auto_is_training_on_the_learned_path(tmp_path):
    """With the networks (tiny random weights in the official format) `--table auto` converts IUV with the table
    they were trained on, ``training``."""
    from conftest import EXAMPLE_PHOTO

    from tests.assets import coordinpaint_dir

    ckpt = coordinpaint_dir()
    outputs = {}
    for table in ("auto", "training", "clean"):
        out = tmp_path / f"{table}.png"
        assert main(["image", "--source", str(EXAMPLE_PHOTO), "--source-iuv", str(EXAMPLE_IUV), "--target-iuv",
                     str(EXAMPLE_IUV), "--checkpoint-dir", str(ckpt), "--table", table, "-o", str(out)]) == 0
        outputs[table] = cv2.imread(str(out))
    np.testing.assert_array_equal(outputs["auto"], outputs["training"])
    assert (outputs["training"] != outputs["clean"]).any()
