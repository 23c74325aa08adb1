"""Texture workflows: `retarget texture`, rendering with an edited texture (--texture), garment swap (--garment).

Round trips use the example photo and small synthetic drivers (tests/media.py); the learned path uses the
tiny random-weight checkpoints of tests/assets.py.
"""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch

from retarget.cli import main
from retarget.pipeline import Models, prepare_source
from retarget.pipeline.texture import (
    GARMENT_REGIONS,
    export_texture,
    fill_garment,
    garment_skin,
    garment_texture,
    read_texture,
    region_mask,
    with_texture,
)
from tests.assets import coordinpaint_dir
from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO, one_error_line
from tests.media import make_driver, read_video, sample_source

SIZE = 128  # texture / crop size of the round trips (the pipeline's default is 256; smaller is faster)
RED = np.array([230, 20, 20], np.float32)
TORSO = (1, 2)


def _rgb(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float32)


def _shift_fraction(result: np.ndarray, plain: np.ndarray, target: np.ndarray) -> float:
    """How much of the mean colour shift from ``plain`` to ``target`` ``result`` shows (1 = all of it);
    each is ``(n, 3)`` pixels."""
    wanted = (target - plain).mean(axis=0)
    return float((result - plain).mean(axis=0) @ wanted / (wanted @ wanted))


def _tint_torso(texture_png, npz, out):
    """Write ``out``: the texture with its torso texels 70 % red (an edit made in an image editor)."""
    texture = _rgb(texture_png)
    torso = np.isin(np.load(npz)["part"], TORSO)
    texture[torso] = 0.3 * texture[torso] + 0.7 * RED
    cv2.imwrite(str(out), np.round(texture[..., ::-1]).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The example photo, a 4-frame driver with its IUV sidecar, the exported texture and a red-torso edit."""
    root = tmp_path_factory.mktemp("textures")
    photo, _ = sample_source(root)
    driver = root / "clip.mp4"
    iuvs = make_driver(driver, n=4, width=160, height=160, person_scale=0.9, audio=False)
    texture = root / "person_texture.png"
    assert main(["texture", "--source", str(photo), "--size", str(SIZE), "--weight-free", "-o", str(texture),
                 "--legend"]) == 0
    edited = _tint_torso(texture, root / "person_texture.npz", root / "red_torso.png")
    # the example at SIZE x SIZE for `retarget image`, which renders at the photo's size
    small, small_iuv = root / "small.png", root / "small_IUV.png"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(photo)), (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(small_iuv), cv2.resize(cv2.imread(str(EXAMPLE_IUV)), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST))
    return {"root": root, "photo": photo, "driver": driver, "iuvs": iuvs, "texture": texture, "edited": edited,
            "small": small, "small_iuv": small_iuv}


# -- retarget texture -------------------------------------------------------------------------------------
def test_texture_command_writes_texture_mask_coordinates_and_legend(exported):
    root = exported["root"]
    texture = _rgb(exported["texture"])
    assert texture.shape == (SIZE, SIZE, 3)
    mask = _rgb(root / "person_texture.mask.png")[..., 0]
    assert set(np.unique(mask)) <= {0, 128, 255}
    data = np.load(root / "person_texture.npz")
    assert data["xy"].shape == (SIZE, SIZE, 2) and np.abs(data["xy"]).max() <= 1.0 + 1e-5
    assert data["part"].shape == (SIZE, SIZE) and set(np.unique(data["part"])) == set(range(25))
    seen, part = data["seen"], data["part"]
    assert ((mask == 255) == seen).all() and ((mask == 0) == (part == 0) & ~seen).all()
    body_seen = seen[part > 0].mean()
    assert 0.1 < body_seen < 0.6  # a front photo shows a part of the body, the rest is completed
    side = int(data["crop"][2])
    assert side > 0
    legend = _rgb(root / "person_texture.legend.png")
    assert legend.shape[0] >= 768 and legend.shape[0] == legend.shape[1]


def test_texture_of_the_example_matches_the_pipeline_state():
    """The PNG is the state's colour texture (rounded), the mask its coverage: nothing else is involved."""
    from retarget.pipeline.source import frame_source, prepare_source_crop

    state = prepare_source_crop(frame_source(_rgb(EXAMPLE_PHOTO).astype(np.uint8), iuv=_iuv(), size=64), None)
    out = export_texture(state)
    assert out.rgb.shape == (64, 64, 3)
    expected = state.pred_textures[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(out.rgb - expected).max() <= 0.5 + 1e-3
    assert (out.seen == (state.coverage[0, 0].numpy() > 0.5)).all()


def _iuv() -> np.ndarray:
    from retarget.io.iuv import read_iuv_png

    return read_iuv_png(EXAMPLE_IUV)


# -- --texture on video / frames / batch / image ---------------------------------------------------------
def _video(exported, out, *extra) -> list[np.ndarray]:
    """The weight-free video, H.264 at ``--crf 0`` (lossless but for yuv420p's half-resolution chroma): at the
    default quality, a red torso moves the encoder's quantisation of the whole frame by a few levels."""
    args = ["video", "--source", str(exported["photo"]), "--driver", str(exported["driver"]), "--size", str(SIZE),
            "--weight-free", "-q", "--crf", "0", "-o", str(out), *extra]
    assert main(args) == 0
    frames, _ = read_video(out)
    return frames


def _regions(iuv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Driver pixels well inside the torso, and pixels well away from it (both from the driver's IUV)."""
    torso = np.isin(iuv[..., 0], TORSO).astype(np.uint8)
    inside = cv2.erode(torso, np.ones((5, 5), np.uint8)) > 0
    away = cv2.dilate(torso, np.ones((9, 9), np.uint8)) == 0
    return inside, away


@pytest.fixture(scope="module")
def plain_video(exported):
    return _video(exported, exported["root"] / "plain.mp4")


def test_video_with_edited_texture_is_red_on_the_torso_only(exported, plain_video):
    red = _video(exported, exported["root"] / "red.mp4", "--texture", str(exported["edited"]))
    assert len(red) == len(plain_video) == 4
    for plain, edited, iuv in zip(plain_video, red, exported["iuvs"]):
        inside, away = _regions(iuv)
        assert inside.sum() > 100 and away.sum() > 1000
        plain, edited = plain.astype(np.float32), edited.astype(np.float32)
        # the torso shows the edit: 30 % of its own colour + 70 % red (up to H.264's chroma blur)
        # (H.264's half-resolution chroma and the crop resampling blur the edit into the torso's border)
        fraction = _shift_fraction(edited[inside], plain[inside], 0.3 * plain[inside] + 0.7 * RED)
        assert 0.7 < fraction < 1.1, fraction
        assert (edited[inside][:, 0] - edited[inside][:, 1]).mean() > 100
        assert (plain[inside][:, 0] - plain[inside][:, 1]).mean() < 20
        shift = np.abs(edited[away] - plain[away])
        assert shift.mean() < 1.0, shift.mean()  # the rest is unchanged
        assert np.percentile(shift, 99) <= 6


def test_video_with_the_unedited_texture_equals_the_plain_render(exported, plain_video):
    same = _video(exported, exported["root"] / "same.mp4", "--texture", str(exported["texture"]))
    for a, b in zip(plain_video, same):
        assert np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() < 0.5


def test_frames_shows_the_edited_texture(exported):
    out = exported["root"] / "inspect"
    assert main(["frames", "--source", str(exported["photo"]), "--driver", str(exported["driver"]), "--size",
                 str(SIZE), "--weight-free", "-q", "--out", str(out), "--frames", "1",
                 "--texture", str(exported["edited"])]) == 0
    shown = _rgb(out / "source" / "texture_colour.png")
    edited = _rgb(exported["edited"])
    assert np.abs(shown - edited).max() <= 1


def test_batch_job_key_texture(exported):
    root = exported["root"]
    jobs = root / "jobs.csv"
    with open(jobs, "w", newline="") as handle:
        csv.writer(handle).writerows([["source", "driver", "output", "texture", "size"],
                                      [exported["photo"].name, exported["driver"].name, "batch_red.mp4",
                                       exported["edited"].name, SIZE]])
    assert main(["batch", "--jobs", str(jobs), "--weight-free", "-q", "--workers", "1"]) == 0
    frames, _ = read_video(root / "batch_red.mp4")
    inside, away = _regions(exported["iuvs"][1])
    assert frames[1][inside][:, 0].mean() - frames[1][inside][:, 1].mean() > 80


def test_image_with_edited_texture(exported, tmp_path):
    small, small_iuv = str(exported["small"]), str(exported["small_iuv"])
    base = ["image", "--source", small, "--source-iuv", small_iuv, "--target-iuv", small_iuv, "--weight-free"]
    assert main(base + ["-o", str(tmp_path / "plain.png")]) == 0
    assert main(base + ["-o", str(tmp_path / "red.png"), "--texture", str(exported["edited"])]) == 0
    plain, red = _rgb(tmp_path / "plain.png"), _rgb(tmp_path / "red.png")
    inside, away = _regions(_rgb(exported["small_iuv"])[..., ::-1])
    # `texture` framed the photo (crop, resize), `image` does not: the texture's colours are resampled once more
    fraction = _shift_fraction(red[inside], plain[inside], 0.3 * plain[inside] + 0.7 * RED)
    assert 0.8 < fraction < 1.1, fraction
    assert (red[inside][:, 0] - red[inside][:, 1]).mean() > 100
    assert np.abs(red[away] - plain[away]).mean() < 3, np.abs(red[away] - plain[away]).mean()


# -- the learned path: the edit is re-projected onto the photo ------------------------------------------
def test_learned_path_reprojects_the_edit_onto_the_photo():
    from retarget.pipeline.source import frame_source

    models = Models.from_checkpoint_dir(coordinpaint_dir())
    crop = frame_source(_rgb(EXAMPLE_PHOTO).astype(np.uint8), iuv=_iuv(), size=64)
    image = torch.from_numpy(crop.image.astype(np.float32) / 255).permute(2, 0, 1)[None]
    uv = torch.from_numpy(crop.uv).permute(2, 0, 1)[None]
    state = prepare_source(image, uv, models)
    assert state.learned
    same = with_texture(state, state.pred_textures, models)
    assert torch.equal(same.image, state.image)
    assert torch.allclose(same.refiner_source_input, state.refiner_source_input)

    texture = state.pred_textures.clone()
    torso_texels = torch.from_numpy(np.isin(export_texture(state).part, TORSO))
    texture[0, :, torso_texels] = torch.tensor([0.9, 0.1, 0.1])[:, None]
    edited = with_texture(state, texture, models)
    assert torch.equal(edited.pred_textures, texture)
    inside, away = _regions(crop.iuv)
    change = (edited.image - state.image)[0].permute(1, 2, 0).numpy()
    assert change[inside][:, 0].mean() > 0.2  # the photo's torso pixels turned red
    assert np.abs(change[away]).max() < 1e-6  # every other pixel is the photo's
    assert not torch.allclose(edited.refiner_source_input, state.refiner_source_input)
    assert edited.refiner_source_features is not state.refiner_source_features


# -- garment swap -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def garment_photo(tmp_path_factory):
    """B: the example person dressed in blue (the photo 40 % its own colour + 60 % blue), with the same IUV."""
    root = tmp_path_factory.mktemp("garment")
    photo = _rgb(EXAMPLE_PHOTO)
    b = root / "B.png"
    cv2.imwrite(str(b), np.round(_blue(photo)[..., ::-1]).astype(np.uint8))
    (root / "B_IUV.png").write_bytes(EXAMPLE_IUV.read_bytes())
    return b


BLUE = np.array([20, 60, 230], np.float32)


def _blue(rgb: np.ndarray) -> np.ndarray:
    return 0.4 * rgb + 0.6 * BLUE


def test_garment_texture_takes_exactly_the_region():
    part = export_texture_stub_part(32)
    person = _state_with_texture(torch.zeros(1, 3, 32, 32))
    garment = _state_with_texture(torch.ones(1, 3, 32, 32))
    for region, parts in GARMENT_REGIONS.items():
        out = garment_texture(person, garment, region)[0, 0].numpy()
        assert ((out == 1) == np.isin(part, parts)).all()
        assert not np.isin(part[out == 1], (3, 4, 5, 6, 23, 24)).any()  # hands, feet, head stay the person's


def export_texture_stub_part(size: int) -> np.ndarray:
    from retarget.uvmap.layout import texture_layout

    return texture_layout(size, size).part


def _state_with_texture(texture: torch.Tensor):
    """A prepared state stub: ``texture`` seen everywhere."""
    from types import SimpleNamespace

    return SimpleNamespace(pred_textures=texture, coverage=torch.ones_like(texture[:, :1]))


SKIN = np.array([0.80, 0.55, 0.42], np.float32)
SHIRT = np.array([0.20, 0.35, 0.75], np.float32)
BEIGE = np.array([0.85, 0.78, 0.68], np.float32)  # within a generic skin rule, not near B's own skin


def _garment_with_skin(shirt: np.ndarray, size: int = 64, seen_parts=None):
    """B: skin on the hands, head and upper arms (shaded 70–100 %, with noise), ``shirt`` on the rest."""
    from types import SimpleNamespace

    part = export_texture_stub_part(size)
    rng = np.random.default_rng(0)
    shade = rng.uniform(0.7, 1.0, (size, size, 1)).astype(np.float32)
    rgb = np.where(np.isin(part, (3, 4, 23, 24, 15, 16, 17, 18))[..., None], SKIN * shade, shirt)
    rgb = np.clip(rgb + rng.normal(0, 0.01, rgb.shape), 0, 1).astype(np.float32)
    seen = part > 0 if seen_parts is None else np.isin(part, seen_parts)
    return SimpleNamespace(pred_textures=torch.from_numpy(rgb).permute(2, 0, 1)[None],
                           coverage=torch.from_numpy(seen.astype(np.float32))[None, None]), part


@pytest.mark.parametrize("shirt", [SHIRT, BEIGE], ids=["blue", "beige"])
def test_garment_swap_keeps_the_persons_skin_where_the_garment_shows_skin(shirt):
    garment, part = _garment_with_skin(shirt)
    person = _state_with_texture(torch.zeros(1, 3, 64, 64))
    skin = garment_skin(garment, "upper")
    assert skin is not None
    out = garment_texture(person, garment, "upper", skin)[0].permute(1, 2, 0).numpy()
    bare = np.isin(part, (15, 16, 17, 18))
    torso = np.isin(part, (1, 2, 19, 20, 21, 22))
    assert (out[bare] == 0).mean() > 0.95  # B's bare upper arms: A's own texels
    assert (np.abs(out[torso] - shirt).max(axis=1) < 0.05).all()  # B's shirt (blue or beige): all B's
    assert not skin[~np.isin(part, GARMENT_REGIONS["upper"])].any()


def test_garment_skin_needs_the_garments_face_or_hands():
    """No seen face or hand texels, or a skin model that is not warm (a blue-tinted photo): no skin test,
    the whole region is taken (the behaviour without a skin model)."""
    garment, _ = _garment_with_skin(SHIRT, seen_parts=(1, 2, 15, 16, 17, 18, 19, 20, 21, 22))
    assert garment_skin(garment, "upper") is None
    garment, _ = _garment_with_skin(SHIRT)
    garment.pred_textures = torch.from_numpy(_blue(garment.pred_textures[0].permute(1, 2, 0).numpy() * 255)
                                             / 255).permute(2, 0, 1)[None].float()
    assert garment_skin(garment, "upper") is None


FILL = np.array([0.5, 0.5, 0.5], np.float32)  # what a completion reading nothing gives (grey)
TOP = np.array([0.15, 0.70, 0.25], np.float32)  # front of the shirt (the back is not seen)
SLEEVE = np.array([0.85, 0.20, 0.60], np.float32)  # left lower arm (the right arm is not seen)
TROUSERS = np.array([0.10, 0.15, 0.55], np.float32)  # upper legs (the lower legs are not seen)


def _partly_seen_garment(size: int = 64):
    """B seen from the front on its left side only: torso front ``TOP``, left arm bare upper arm (skin) and
    ``SLEEVE`` lower arm, upper legs ``TROUSERS``, head and hands skin; the torso back, the whole right arm
    and the lower legs are unseen and hold ``FILL`` (B's own completion, as if it had read nothing)."""
    from types import SimpleNamespace

    part = export_texture_stub_part(size)
    rng = np.random.default_rng(1)
    rgb = np.broadcast_to(FILL, (size, size, 3)).copy()
    skin = np.isin(part, (3, 4, 23, 24, 15, 17))
    rgb[skin] = SKIN * rng.uniform(0.8, 1.0, (int(skin.sum()), 1))
    rgb[part == 2] = TOP
    rgb[np.isin(part, (19, 21))] = SLEEVE
    rgb[np.isin(part, (7, 8, 9, 10))] = TROUSERS
    seen = np.isin(part, (2, 3, 4, 23, 24, 15, 17, 19, 21, 7, 8, 9, 10))
    texture = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None]
    return SimpleNamespace(pred_textures=texture, source_textures=texture.clone(),
                           coverage=torch.from_numpy(seen.astype(np.float32))[None, None]), part


def test_garment_region_is_completed_from_the_garments_own_texels():
    """Unseen garment texels take the garment's seen colours through the body (front → back, left arm →
    right arm, upper → lower legs); none keeps the completion's fill grey, none is the person's own."""
    garment, part = _partly_seen_garment()
    person = _state_with_texture(torch.zeros(1, 3, 64, 64))
    fill = fill_garment(garment, "full")
    assert fill.skin is not None
    out = garment_texture(person, garment, "full", fill.skin, fill)[0].permute(1, 2, 0).numpy()
    region = np.isin(part, GARMENT_REGIONS["full"])
    worn = region & ~fill.skin

    def share(parts, colour):
        where = np.isin(part, parts)
        return (np.abs(out[where] - colour).max(axis=1) < 0.02).mean()

    assert not (np.abs(out[region] - FILL).max(axis=1) < 0.05).any()  # no texel of the region left grey
    assert (out[worn].max(axis=1) > 0).all()  # nor the person's own colour where the garment is worn
    assert share((1,), TOP) > 0.99  # the back: the seen front
    assert share((20, 22), SLEEVE) > 0.99  # the right lower arm: the left sleeve
    assert share((11, 12, 13, 14), TROUSERS) > 0.99  # the lower legs: the upper legs
    bare = np.isin(part, (16, 18))  # the right upper arm mirrors the bare left one: the person's own skin
    assert fill.skin[bare].mean() > 0.95 and (out[bare & fill.skin] == 0).all()
    assert not fill.skin[np.isin(part, (1, 2, 11, 12, 13, 14, 19, 20, 21, 22))].any()


def test_garment_region_is_completed_on_a_prepared_photo_missing_one_arm():
    """A real prepared garment state (the example photo with its upper region painted one green, its
    DensePose without the right arm) through every completion: the right arm and the unseen back are that
    green, never grey, black (the nearest fill's background) or the person's."""
    from retarget.io.image import read_image_rgb
    from retarget.pipeline.source import frame_source, prepare_source_crop

    photo = read_image_rgb(EXAMPLE_PHOTO)
    iuv = _iuv().copy()
    upper = np.isin(iuv[..., 0], GARMENT_REGIONS["upper"])
    green = np.array([40, 190, 70], np.uint8)
    photo = np.where(upper[..., None], green, photo).astype(np.uint8)
    iuv[np.isin(iuv[..., 0], (16, 18, 20, 22))] = 0  # the right arm: not seen
    crop = frame_source(photo, iuv=iuv, size=64)
    region = np.isin(export_texture_stub_part(64), GARMENT_REGIONS["upper"])
    arm = np.isin(export_texture_stub_part(64), (16, 18, 20, 22))
    for fill_name in ("body", "nearest"):
        garment = prepare_source_crop(crop, None, fill=fill_name)
        fill = fill_garment(garment, "upper")
        assert fill.visible[arm].sum() == 0
        worn = region & ~(fill.skin if fill.skin is not None else False)
        assert worn[arm].mean() > 0.95  # green is not B's skin
        close = np.abs(fill.rgb[worn] * 255 - green).max(axis=1) < 40
        assert close.mean() > 0.98, (fill_name, close.mean())
        assert (np.abs(fill.rgb[arm & worn] * 255 - green).max(axis=1) < 40).mean() > 0.98


def test_image_garment_swap_region_colours(exported, garment_photo, tmp_path):
    small, small_iuv = str(exported["small"]), str(exported["small_iuv"])
    base = ["image", "--source", small, "--source-iuv", small_iuv, "--target-iuv", small_iuv, "--weight-free"]
    assert main(base + ["-o", str(tmp_path / "plain.png")]) == 0
    plain = _rgb(tmp_path / "plain.png")
    iuv = _rgb(exported["small_iuv"])[..., ::-1].astype(np.uint8)
    for region in ("upper", "lower"):
        out = tmp_path / f"{region}.png"
        assert main(base + ["-o", str(out), "--garment", str(garment_photo), "--garment-region", region]) == 0
        swapped = _rgb(out)
        parts = np.isin(iuv[..., 0], GARMENT_REGIONS[region]).astype(np.uint8)
        inside = cv2.erode(parts, np.ones((5, 5), np.uint8)) > 0
        away = (cv2.dilate(parts, np.ones((9, 9), np.uint8)) == 0) & (iuv[..., 0] > 0)
        # a few foot pixels at the seams have UVs inside the region's texels (IUV->UV across atlas islands):
        # they show the region's texels by definition, so they are not "elsewhere"
        from retarget.uvmap import iuv_to_uv
        from retarget.uvmap.layout import texel_coords

        row, col = texel_coords(np.nan_to_num(iuv_to_uv(iuv), nan=-1.0), SIZE, SIZE)
        texel_region = region_mask(region, (SIZE, SIZE))[np.clip(np.rint(row), 0, SIZE - 1).astype(int),
                                                          np.clip(np.rint(col), 0, SIZE - 1).astype(int)]
        away &= ~cv2.dilate(texel_region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        # inside the region: B's colours (B is framed, A is not: its texture is resampled once more)
        fraction = _shift_fraction(swapped[inside], plain[inside], _blue(plain[inside]))
        assert 0.85 < fraction < 1.1, fraction
        # elsewhere on the person (head, hands, feet, the other region): A's own colours
        assert np.abs(swapped[away] - plain[away]).mean() < 1.0


def test_video_garment_swap(exported, garment_photo, plain_video):
    out = exported["root"] / "garment.mp4"
    frames = _video(exported, out, "--garment", str(garment_photo), "--garment-region", "upper")
    for plain, swapped, iuv in zip(plain_video, frames, exported["iuvs"]):
        inside, away = _regions(iuv)
        p, s = plain.astype(np.float32), swapped.astype(np.float32)
        fraction = _shift_fraction(s[inside], p[inside], _blue(p[inside]))
        assert 0.7 < fraction < 1.1, fraction
        assert np.abs(s[away] - p[away]).mean() < 1.5


# -- errors -------------------------------------------------------------------------------------------------
def _bad_textures(folder):
    small = folder / "small.png"
    cv2.imwrite(str(small), np.zeros((SIZE // 2, SIZE // 2, 3), np.uint8))
    rgba = folder / "rgba.png"
    cv2.imwrite(str(rgba), np.zeros((SIZE, SIZE, 4), np.uint8))
    text = folder / "notes.png"
    text.write_text("not an image")
    truncated = folder / "truncated.png"
    ok, data = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    truncated.write_bytes(data.tobytes()[: len(data) // 2])
    return {"size": (small, "is 64x64 but this run uses 128x128"), "alpha": (rgba, "alpha channel"),
            "not-an-image": (text, "not an image"), "truncated": (truncated, "cannot read the texture"),
            "missing": (folder / "nope.png", "not found")}


@pytest.mark.parametrize("case", ["size", "alpha", "not-an-image", "truncated", "missing"])
def test_invalid_texture_is_one_line_on_every_command(exported, tmp_path, capsys, case):
    from tests.test_cli_messages import assert_options_exist

    path, says = _bad_textures(tmp_path)[case]
    runs = {
        "video": ["video", "--source", str(exported["photo"]), "--driver", str(exported["driver"]), "--size",
                  str(SIZE), "--weight-free", "-q", "-o", str(tmp_path / "o.mp4")],
        "frames": ["frames", "--source", str(exported["photo"]), "--driver", str(exported["driver"]), "--size",
                   str(SIZE), "--weight-free", "-q", "--out", str(tmp_path / "f"), "--frames", "0"],
    }
    for command, argv in runs.items():
        assert main(argv + ["--texture", str(path)]) == 1
        text = one_error_line(capsys)
        assert says in text and str(path) in text, text
        assert_options_exist((command,), text)
    assert not (tmp_path / "o.mp4").exists()
    if case == "size":
        assert "`retarget texture --size 128`" in text and "--size" in text


def test_invalid_texture_on_image_and_batch(exported, tmp_path, capsys):
    from tests.test_cli_messages import assert_options_exist

    small, _ = _bad_textures(tmp_path)["size"]
    assert main(["image", "--source", str(exported["photo"]), "--source-iuv", str(EXAMPLE_IUV), "--target-iuv",
                 str(EXAMPLE_IUV), "--weight-free", "-o", str(tmp_path / "o.png"), "--texture", str(small)]) == 1
    text = one_error_line(capsys)
    assert "is 64x64 but this run uses 256x256" in text and "`retarget texture --size N` (N = 256)" in text
    assert_options_exist(("image",), text)
    assert not (tmp_path / "o.png").exists()
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[[job]]\nsource = "{exported["photo"]}"\ndriver = "{exported["driver"]}"\n'
                    f'output = "b.mp4"\ntexture = "{small}"\n')
    assert main(["batch", "--jobs", str(jobs), "--weight-free", "-q", "--workers", "1"]) == 1
    report = (tmp_path / "batch_report.json").read_text()
    assert "is 64x64 but this run uses 256x256" in report
    assert not (tmp_path / "b.mp4").exists()


def test_texture_and_garment_options_are_checked_before_any_work(exported, garment_photo, tmp_path, capsys):
    from tests.test_cli_messages import assert_options_exist

    video = ["video", "--source", str(exported["photo"]), "--driver", str(exported["driver"]), "--weight-free",
             "-q", "-o", str(tmp_path / "o.mp4")]
    image = ["image", "--source", str(exported["photo"]), "--source-iuv", str(EXAMPLE_IUV), "--target-iuv",
             str(EXAMPLE_IUV), "--weight-free", "-o", str(tmp_path / "o.png")]
    cases = [
        (["--texture", str(exported["texture"]), "--garment", str(garment_photo)], "not both"),
        (["--garment", str(garment_photo), "--garment-region", "hat"], "expected one of upper, lower, full"),
        (["--garment-iuv", str(EXAMPLE_IUV)], "give that photo too"),
    ]
    for name, argv in (("video", video), ("image", image)):
        for extra, says in cases:
            assert main(argv + extra) == 2
            text = one_error_line(capsys)
            assert says in text, text
            assert_options_exist((name,), text)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.png").exists()


def test_garment_photo_without_a_person(exported, tmp_path, capsys):
    from tests.test_cli_messages import assert_options_exist

    empty = tmp_path / "wall.png"
    cv2.imwrite(str(empty), np.full((256, 256, 3), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "wall_IUV.png"), np.zeros((256, 256, 3), np.uint8))
    runs = {
        "video": ["video", "--source", str(exported["photo"]), "--driver", str(exported["driver"]), "--size",
                  str(SIZE), "--weight-free", "-q", "-o", str(tmp_path / "o.mp4")],
        "image": ["image", "--source", str(exported["photo"]), "--source-iuv", str(EXAMPLE_IUV), "--target-iuv",
                  str(EXAMPLE_IUV), "--weight-free", "-o", str(tmp_path / "o.png")],
    }
    for command, argv in runs.items():
        assert main(argv + ["--garment", str(empty)]) == 1
        text = one_error_line(capsys)
        assert f"{empty}: no person found in the garment photo" in text, text
        assert_options_exist((command,), text)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.png").exists()


def test_garment_photo_that_does_not_show_the_region(exported, tmp_path, capsys):
    """A garment photo whose DensePose has only a head: nothing of the upper body to take."""
    iuv = _iuv().copy()
    iuv[~np.isin(iuv[..., 0], (23, 24))] = 0
    head = tmp_path / "head.png"
    head.write_bytes(EXAMPLE_PHOTO.read_bytes())
    cv2.imwrite(str(tmp_path / "head_IUV.png"), iuv)  # I in the file's first (blue) channel
    assert main(["image", "--source", str(exported["small"]), "--source-iuv", str(exported["small_iuv"]),
                 "--target-iuv", str(exported["small_iuv"]), "--weight-free", "-o", str(tmp_path / "o.png"),
                 "--garment", str(head)]) == 1
    text = one_error_line(capsys)
    assert "shows only 0 % of the upper body region" in text, text


def test_image_garment_needs_its_iuv(exported, tmp_path, capsys):
    from tests.test_cli_messages import assert_options_exist

    lone = tmp_path / "lone.jpg"
    lone.write_bytes(EXAMPLE_PHOTO.read_bytes())
    assert main(["image", "--source", str(exported["photo"]), "--source-iuv", str(EXAMPLE_IUV), "--target-iuv",
                 str(EXAMPLE_IUV), "--weight-free", "-o", str(tmp_path / "o.png"), "--garment", str(lone)]) == 2
    text = one_error_line(capsys)
    assert "--garment-iuv" in text and "lone_IUV.png" in text and "retarget densepose" in text
    assert_options_exist(("image",), text)


def test_read_texture_accepts_grey_and_palette_pngs(tmp_path):
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((8, 8), 77, np.uint8))
    assert (read_texture(grey, (8, 8)) * 255).round().astype(int).tolist() == np.full((8, 8, 3), 77).tolist()


class _GarmentDensePose:
    """A stand-in DensePose model: the example's IUV for any photo it is given (counts calls)."""

    name = "fake"

    def __init__(self):
        self.calls = 0

    def cache_key(self) -> str:
        return "fake"

    def predict(self, images_bgr):
        from densepose_adapter.types import DensePoseResult

        self.calls += len(images_bgr)
        return [DensePoseResult.from_iuv(_iuv()) for _ in images_bgr]


def test_garment_densepose_from_the_model_on_the_learned_path(exported, garment_photo, tmp_path):
    """B without an IUV: its DensePose comes from the model backend, as the source's would; on the learned
    path (tiny random-weight models) the state handed to the runner has B's texels in the region and A's
    photo with B's colours re-projected onto it; and the whole job runs."""
    from retarget.pipeline.job import VideoJob, load_source, run_video_job
    from retarget.pipeline.source import prepare_source_crop
    from retarget.pipeline.job import edit_source
    from retarget.pipeline.video import VideoOptions

    lone = tmp_path / "B_alone.png"
    lone.write_bytes(garment_photo.read_bytes())
    models = Models.from_checkpoint_dir(coordinpaint_dir())
    job = VideoJob(source=exported["photo"], driver=exported["driver"], output=tmp_path / "out.mp4", size=64,
                   options=VideoOptions(quiet=True), garment=lone, garment_region="upper")
    backend = _GarmentDensePose()
    source = load_source(job, backend)
    assert backend.calls == 0  # the source has its IUV sidecar
    state = prepare_source_crop(source, models)
    swapped = edit_source(job, state, models, backend)
    assert backend.calls == 1  # the garment photo
    region = torch.from_numpy(np.isin(export_texture(state).part, GARMENT_REGIONS["upper"]))
    outside = ~region
    assert torch.equal(swapped.pred_textures[..., outside], state.pred_textures[..., outside])
    assert (swapped.pred_textures[..., region] - state.pred_textures[..., region]).abs().mean() > 0.05
    inside, _ = _regions(source.iuv)
    away = cv2.dilate(np.isin(source.iuv[..., 0], GARMENT_REGIONS["upper"]).astype(np.uint8),
                      np.ones((9, 9), np.uint8)) == 0
    change = (swapped.image - state.image)[0].permute(1, 2, 0).numpy()
    assert np.abs(change[inside]).mean() > 0.05
    # off the person nothing moves; on it, away from the region, only pixels whose UV lands next to a region
    # texel across an atlas seam (4 of 164 here)
    person = source.iuv[..., 0] > 0
    assert np.abs(change[away & ~person]).max() == 0
    moved = np.abs(change[away & person]).max(axis=1) > 1e-6
    assert moved.mean() < 0.05, (moved.sum(), moved.size)
    assert swapped.refiner_source_features is not state.refiner_source_features
    run_video_job(job, models, _GarmentDensePose())
    assert len(read_video(job.output)[0]) == 4


def test_garment_needs_densepose_message(exported, tmp_path, capsys):
    from tests.test_cli_messages import assert_options_exist

    lone = tmp_path / "lone.jpg"
    lone.write_bytes(EXAMPLE_PHOTO.read_bytes())
    assert main(["video", "--source", str(exported["photo"]), "--driver", str(exported["driver"]), "--weight-free",
                 "-o", str(tmp_path / "o.mp4"), "--garment", str(lone)]) == 1
    text = one_error_line(capsys)
    assert f"{lone}: the garment photo needs DensePose" in text and "--garment-iuv FILE, or lone_IUV.png" in text
    assert_options_exist(("video",), text)


def test_texture_command_usage_errors(exported, tmp_path, capsys):
    from tests.test_cli_messages import assert_options_exist

    base = ["texture", "--source", str(exported["photo"]), "--weight-free"]
    cases = [(["-o", str(tmp_path / "t.jpg")], "give an output ending in .png"),
             (["-o", str(exported["texture"])], "output exists; pass --overwrite"),
             (["-o", str(tmp_path / "t.png"), "--size", "30"], "--size must be a multiple of 4"),
             (["-o", str(tmp_path / "t.png"), "--fill", "mean"], "--fill 'mean'")]
    for extra, says in cases:
        assert main(base + extra) == 2
        text = one_error_line(capsys)
        assert says in text, text
        assert_options_exist(("texture",), text)
    assert not list(tmp_path.iterdir())


def test_missing_garment_files(exported, tmp_path, capsys):
    video = ["video", "--source", str(exported["photo"]), "--driver", str(exported["driver"]), "--weight-free",
             "-o", str(tmp_path / "o.mp4")]
    image = ["image", "--source", str(exported["small"]), "--source-iuv", str(exported["small_iuv"]), "--target-iuv",
             str(exported["small_iuv"]), "--weight-free", "-o", str(tmp_path / "o.png")]
    missing = tmp_path / "nobody.jpg"
    for argv in (video, image):
        assert main(argv + ["--garment", str(missing)]) == 1
        assert f"{missing}: garment photo not found" in one_error_line(capsys)
    assert main(video + ["--garment", str(EXAMPLE_PHOTO), "--garment-iuv", str(missing)]) == 1
    assert f"{missing}: garment IUV not found" in one_error_line(capsys)
    assert not list(tmp_path.iterdir())
