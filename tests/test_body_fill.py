"""Body-aware weight-free completion: symmetry maps derived from the atlas, the fill, its plumbing."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from retarget import ops
from retarget.uvmap.data import load_atlas
from retarget.uvmap.layout import RELATIONS, texture_layout
from retarget.uvmap.symmetry import (
    FRONT_BACK,
    LEFT_RIGHT,
    LIMBS,
    TRANSFORMS,
    apply_transform,
    derive_correspondences,
    inverse_transform,
    limb_axes,
)


@pytest.fixture(scope="module")
def correspondences():
    return derive_correspondences(load_atlas())


@pytest.fixture(scope="module")
def layout():
    return texture_layout(128, 128)


def test_square_symmetries_invert():
    grid = np.random.default_rng(0).random((50, 2))
    for t in TRANSFORMS:
        np.testing.assert_allclose(apply_transform(inverse_transform(t), apply_transform(t, grid)), grid)


def test_correspondences_pair_the_right_parts_and_are_involutions(correspondences):
    for name, relation in (("left_right", LEFT_RIGHT), ("front_back", FRONT_BACK)):
        found = correspondences[name]
        assert set(found) == set(relation)
        for p, c in found.items():
            assert c.other == relation[p]
            back = found[c.other]
            assert back.other == p and back.transform == inverse_transform(c.transform)
            # a clear winner among the 8 symmetries, not a coin toss
            assert c.score < 0.5 * c.runner_up, (name, p, c)
    torso = correspondences["left_right"][1]
    assert torso.transform != (0, 0, 0)  # a part mirrored onto itself needs a real reflection ...
    grid = np.random.default_rng(1).random((20, 2))  # ... that is its own inverse
    np.testing.assert_allclose(apply_transform(torso.transform, apply_transform(torso.transform, grid)), grid)
    # the limb charts are drawn mirror-consistently: left and right limbs share chart coordinates
    assert all(correspondences["left_right"][p].transform == (0, 0, 0) for p in range(7, 23))


def test_limb_axes_run_around_every_limb_consistently():
    axes = limb_axes(load_atlas())
    assert set(axes) == set(LIMBS) and set(axes.values()) <= {0, 1}
    for p in LIMBS:  # mirrored and front/back halves of a limb are charted alike
        assert axes[p] == axes[LEFT_RIGHT[p]] == axes[FRONT_BACK[p]]


def _round_trip(layout):
    """For limb texels whose mirror lands on the mirror part: texel distance after mapping twice."""
    h, w = layout.shape
    part = layout.part.reshape(-1)
    k = RELATIONS.index("left_right")
    limbs = np.nonzero((part >= 7) & (part <= 22))[0]
    first = layout.taps[k, limbs, np.argmax(layout.weights[k, limbs], axis=1)]
    lands = part[first] == layout.other[k, limbs]
    limbs, first = limbs[lands], first[lands]
    again = layout.taps[k, first, np.argmax(layout.weights[k, first], axis=1)]
    return lands.mean(), np.hypot(*(np.array(np.divmod(limbs, w)) - np.array(np.divmod(again, w))))


def test_layout_mirror_is_an_involution_on_texels(layout):
    from retarget.uvmap.cache import get_lookup
    from retarget.uvmap.layout import build_layout

    lands, distance = _round_trip(build_layout(128, 128, get_lookup("training"), load_atlas(), light_keeping=False))
    assert lands > 0.8 and np.median(distance) <= 1 and np.mean(distance <= 3) > 0.85
    # reflecting around the limb axis as well: charts are not symmetric under it, so points that fall off
    # a chart snap to its edge and some round trips end a few texels away (upper legs worst)
    lands, distance = _round_trip(layout)
    assert lands > 0.75 and np.median(distance) <= 1.5 and np.mean(distance <= 3) > 0.75


def test_layout_covers_every_part(layout):
    present = set(np.unique(layout.part)) - {0}
    assert present == set(range(1, 25))
    assert 0.5 < (layout.part > 0).mean() < 0.95


def _mirror_truth(layout, values):
    """Values at every texel's left/right counterpart (nearest tap), the ground truth of a symmetric body."""
    k = RELATIONS.index("left_right")
    n = layout.part.size
    idx = layout.taps[k, np.arange(n), np.argmax(layout.weights[k], axis=1)]
    return values.reshape(2, -1)[:, idx].reshape(values.shape)


def test_held_out_limb_is_rebuilt_from_its_mirror(layout):
    h, w = layout.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    values = np.stack([0.6 * np.sin(xx / 5.0) * np.cos(yy / 7.0), 0.6 * np.cos(xx / 6.0 + yy / 9.0)])
    values = values.astype(np.float32)  # a smooth pattern: stray-splat filtering must keep all of it
    left = np.isin(layout.part, [15, 17, 19, 21])  # left arm texels lost in the "photo"
    covered = (layout.part > 0) & ~left
    truth = _mirror_truth(layout, values)
    texture = torch.from_numpy(np.where(covered, values, 0))[None]
    coverage = torch.from_numpy(covered.astype(np.float32))[None, None]
    out = ops.body_fill(texture, coverage, layout)[0].numpy()
    err = np.abs(out - truth).max(axis=0)[left]
    assert np.median(err) < 0.03 and np.mean(err < 0.1) > 0.75
    nearest = ops.nearest_fill(texture, coverage)[0].numpy()
    assert np.mean(np.abs(nearest - truth).max(axis=0)[left] < 0.1) < 0.5  # the baseline cannot do this


def test_unseen_parts_get_coordinates_the_photo_has_never_background(layout):
    h, w = layout.shape
    yy, xx = np.meshgrid(np.linspace(-0.5, 0.5, h), np.linspace(-0.5, 0.5, w), indexing="ij")
    values = np.stack([xx, yy]).astype(np.float32)
    covered = np.isin(layout.part, [1, 2, 15, 16, 17, 18])  # torso and upper arms only
    texture = torch.from_numpy(np.where(covered, values, 0))[None]
    out = ops.body_fill(texture, torch.from_numpy(covered.astype(np.float32))[None, None], layout)[0].numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, covered], values[:, covered], atol=1e-6)
    seen_values = values[:, covered]
    lo, hi = seen_values.min(axis=1), seen_values.max(axis=1)
    filled = out[:, layout.part > 0]
    assert np.all((filled >= lo[:, None] - 1e-5) & (filled <= hi[:, None] + 1e-5))  # only coordinates it saw


def test_body_fill_is_finite_deterministic_and_keeps_an_empty_texture():
    torch.manual_seed(0)
    h, w = 48, 64  # non-square texture
    layout = texture_layout(h, w)
    texture = torch.rand(2, 2, h, w) * 2 - 1
    texture[0, :, :5] = float("nan")
    coverage = (torch.rand(2, 1, h, w) > 0.7).float()
    coverage[1] = 0
    a = ops.body_fill(texture, coverage, layout)
    b = ops.body_fill(texture, coverage, layout)
    assert torch.equal(a, b)
    assert torch.isfinite(a[0]).all()
    assert torch.equal(a[1], texture[1])  # nothing covered: returned unchanged
    with pytest.raises(ValueError):
        ops.body_fill(texture, coverage, texture_layout(64, 64))


def test_fill_option_reaches_the_pipeline():
    from retarget.pipeline import prepare_source

    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 64, 64, generator=gen)
    uv = torch.rand(1, 2, 64, 64, generator=gen) * 1.6 - 0.8
    body = prepare_source(image, uv, None, fill="body")
    nearest = prepare_source(image, uv, None, fill="nearest")
    assert not torch.equal(body.completed_xy, nearest.completed_xy)
    torch.testing.assert_close(nearest.completed_xy, ops.nearest_fill(nearest.source_xy_textures, nearest.coverage))
    with pytest.raises(ValueError, match="unknown fill"):
        prepare_source(image, uv, None, fill="median")


def test_relations_in_the_order_the_fill_tries_them():
    from retarget.uvmap.layout import ALONG_INSETS, SYMMETRY_RELATIONS

    assert SYMMETRY_RELATIONS == ("left_right", "front_back", "front_back+left_right")
    assert RELATIONS[:3] == SYMMETRY_RELATIONS and len(RELATIONS) == 3 + len(ALONG_INSETS)
    assert list(ALONG_INSETS) == sorted(ALONG_INSETS)  # nearest row to the seam first


def test_limb_neighbours_pair_upper_and_lower_segments_of_the_same_limb():
    from retarget.uvmap.symmetry import limb_neighbours

    found = limb_neighbours(load_atlas())
    expected = {7: 11, 9: 13, 8: 12, 10: 14, 15: 19, 17: 21, 16: 20, 18: 22}
    expected.update({v: k for k, v in expected.items()})
    assert {p: n.other for p, n in found.items()} == expected
    for p, n in found.items():
        back = found[n.other]
        assert abs(n.slope * back.slope - 1) < 0.05  # the around-the-limb maps invert each other
        a = np.linspace(0.2, 0.8, 7)  # and compose to the identity where both stay inside the charts
        there = n.slope * a + n.offset
        inside = (there >= 0) & (there <= 1)
        np.testing.assert_allclose((back.slope * there + back.offset)[inside], a[inside], atol=0.06)
        assert min(n.seam, 1 - n.seam) < 0.1 and min(n.own_seam, 1 - n.own_seam) < 0.1  # seams at chart ends


def _arm_case(layout, right_arm_colour):
    """Coordinates: left arm parts point at x = -0.5, right arm parts at x = +0.5, the rest at x = 0; the
    image the coordinates read is white at x < 0 and ``right_arm_colour`` at x > 0. The left upper arm
    (15, 17) is held out."""
    h, w = layout.shape
    x = np.zeros((h, w), np.float32)
    x[np.isin(layout.part, [15, 17, 19, 21])] = -0.5
    x[np.isin(layout.part, [16, 18, 20, 22])] = 0.5
    values = np.stack([x, np.zeros_like(x)])
    covered = (layout.part > 0) & ~np.isin(layout.part, [15, 17])
    image = torch.ones(1, 3, 32, 32)
    image[..., 16:] = right_arm_colour
    texture = torch.from_numpy(np.where(covered, values, 0))[None]
    return texture, torch.from_numpy(covered.astype(np.float32))[None, None], image


def test_a_mirror_that_does_not_continue_the_limb_gives_way_to_the_body_around_it(layout):
    held = np.isin(layout.part, [15, 17])
    texture, coverage, image = _arm_case(layout, 0.0)  # the mirror arm is black, the left lower arm white
    out = ops.body_fill(texture, coverage, layout, colours=image)[0].numpy()
    filled, seam = out[0][held], layout.seam_distance[held]
    assert not np.any(filled == 0.5)  # nothing of the mirror arm
    assert np.all(filled[seam < 0.3] == -0.5)  # the elbow's end from the left lower arm
    assert np.mean(filled[seam > 0.6] == 0.0) > 0.85  # the shoulder's end from the torso it hangs from
    mirror = ops.body_fill(texture, coverage, layout)[0].numpy()  # no colours: no seam test, the mirror
    assert np.mean(mirror[0][held] == 0.5) > 0.95
    texture, coverage, image = _arm_case(layout, 1.0)  # both arms white: the mirror continues the limb
    kept = ops.body_fill(texture, coverage, layout, colours=image)[0].numpy()
    assert np.mean(kept[0][held] == 0.5) > 0.95


def test_part_nearest_fill_stays_inside_labels_and_copies_known_values():
    labels = torch.zeros(8, 8, dtype=torch.long)
    labels[:, :4], labels[:, 4:] = 1, 2
    labels[0, 0] = 0
    values = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    known = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    known[..., 7, 3] = known[..., 2, 5] = known[..., 6, 6] = True
    out, valid = ops.part_nearest_fill(values, known, labels, 2)
    assert valid[0, 0, labels > 0].all() and not valid[0, 0, 0, 0]
    assert out[0, 0, 0, 0] == 0 and torch.all(out[0, 0, 1:, :4] == values[0, 0, 7, 3])
    assert set(out[0, 0, :, 4:].unique().tolist()) == {values[0, 0, 2, 5].item(), values[0, 0, 6, 6].item()}


def _quality_bench(name: str = "quality"):
    """bench/<name>.py as a module."""
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location(f"{name}_bench", REPO / "bench" / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    return bench


def test_quality_protocol_body_is_not_behind_nearest_on_the_example_photo(tmp_path):
    """bench/quality.py's held-out-limb protocol, on the repository's example photo (its IUV → UV)."""
    from conftest import REPO
    from retarget.io.iuv import read_iuv_png
    from retarget.uvmap import iuv_to_uv

    bench = _quality_bench()
    iuv = read_iuv_png(REPO / "examples" / "source_IUV.png")
    np.save(tmp_path / "source.npy", iuv_to_uv(iuv))
    cases = list(bench.photo_cases("example", REPO / "examples" / "source.jpg", iuv[..., 0], tmp_path / "source.npy",
                                   min_pixels=400))
    assert len(cases) >= 4
    scores = bench.run(tmp_path, ["nearest", "body"], 400, cases=cases)
    psnr = {fill: np.mean([row[3] for row in rows]) for fill, rows in scores.items()}
    ssim = {fill: np.mean([row[4] for row in rows]) for fill, rows in scores.items()}
    assert psnr["body"] >= psnr["nearest"] + 0.5 and ssim["body"] >= ssim["nearest"] + 0.05, (psnr, ssim)


def test_quality_detail_ratio_tells_blur_and_clutter_from_the_truth():
    """The bench's detail measure: 1 for the truth, below 1 for a blur of it (which PSNR and SSIM can prefer
    to a misaligned copy), above 1 for added noise; pixels near the region's edge do not count."""
    from scipy import ndimage

    bench = _quality_bench()
    rng = np.random.default_rng(0)
    photo = np.full((40, 40, 3), 0.4)
    photo[:, ::4] = 0.6  # faint vertical stripes, 1 px wide every 4 px
    held = np.zeros((40, 40), bool)
    held[8:32, 8:32] = True
    assert bench.detail_ratio(photo, photo, held) == pytest.approx(1.0)
    blurred = ndimage.gaussian_filter(photo, (2, 2, 0))
    assert bench.detail_ratio(blurred, photo, held) < 0.3
    noisy = photo + rng.normal(0, 0.1, photo.shape)
    assert bench.detail_ratio(noisy, photo, held) > 1.2
    flat = np.full_like(photo, 0.4)
    assert bench.detail_ratio(flat, photo, held) == pytest.approx(0.0)
    edge = photo.copy()
    edge[~held] = rng.uniform(0, 1, (int((~held).sum()), 3))  # the outside changes: only the inside counts
    assert bench.detail_ratio(edge, photo, held) == pytest.approx(1.0)
    thin = np.zeros_like(held)
    thin[10:13, 5:35] = True  # 3 px wide: nothing 2 px inside it
    assert np.isnan(bench.detail_ratio(photo, photo, thin))


def test_quality_ssim_pastes_the_output_onto_the_photo_outside_the_person():
    """The bench's SSIM compares the held-out limb in the scene it sits in: outside the target's person the
    photo's own pixels replace the constant colour ``retarget image`` writes there, so an output right on the
    person scores 1 whatever that colour; without ``person`` (the earlier ``ssim_flat``) the colour counts in
    the windows near the silhouette. PSNR is over the held-out pixels only either way."""
    bench = _quality_bench()
    rng = np.random.default_rng(1)
    photo = rng.uniform(0.2, 0.8, (48, 48, 3))
    rows, cols = np.mgrid[0:48, 0:48]
    person = (rows >= 4) & (rows < 44) & (np.abs(cols - 8 - rows // 2) < 7)  # a slanted limb
    held = person & (rows >= 8) & (rows < 40)  # its box holds background beside it
    output = np.where(person[..., None], photo, np.array([0.4, 0.38, 0.28]))
    psnr, ssim = bench.region_scores(output, photo, held, person)
    psnr_flat, ssim_flat = bench.region_scores(output, photo, held)
    assert ssim == pytest.approx(1.0) and ssim_flat < 0.95
    assert psnr == psnr_flat
    wrong = output.copy()
    wrong[held] = 0.5  # a flat fill: the pasted SSIM falls, and is still compared in the scene
    assert bench.region_scores(wrong, photo, held, person)[1] < 0.5


def test_quality_photos_reads_photo_folders_and_clip_folders(tmp_path):
    """bench/quality.py --photos: a folder of photos with <stem>_IUV.png beside them, and a clip folder (rgb/ +
    iuv/, as bench/real.py reads it) of which --per-clip frames with a person are taken, become the split
    'extra', checked by the same protocol; a folder with neither is a one-line error."""
    import shutil

    import cv2
    from conftest import REPO

    from retarget.io.iuv import read_iuv_png

    bench = _quality_bench()
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(REPO / "examples" / "source.jpg", photos / "a.jpg")
    shutil.copy(REPO / "examples" / "source_IUV.png", photos / "a_IUV.png")
    shutil.copy(REPO / "examples" / "source.jpg", photos / "no_iuv.jpg")  # no IUV beside it: not a photo here
    shutil.copy(REPO / "examples" / "source.jpg", photos / "nobody.jpg")  # DensePose found nobody: left out
    clip = tmp_path / "clip"
    (clip / "rgb").mkdir(parents=True)
    (clip / "iuv").mkdir()
    empty = np.zeros_like(read_iuv_png(REPO / "examples" / "source_IUV.png"))
    for k in range(4):
        shutil.copy(REPO / "examples" / "source.jpg", clip / "rgb" / f"{k:04d}.jpg")
        if k == 0:  # DensePose found nobody in the first frame
            cv2.imwrite(str(clip / "iuv" / f"{k:04d}_IUV.png"), empty)
        else:
            shutil.copy(REPO / "examples" / "source_IUV.png", clip / "iuv" / f"{k:04d}_IUV.png")
    cv2.imwrite(str(photos / "nobody_IUV.png"), empty)
    found = bench.extra_photos([photos, clip], per_clip=2, min_pixels=400)
    assert [name for name, _, _ in found] == ["photos-a", "clip-0001", "clip-0003"]
    cases = list(bench.split_cases("extra", tmp_path, tmp_path, tmp_path, 400, photos=found[:1]))
    assert len(cases) >= 4 and {c[0] for c in cases} == {"photos-a"}
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SystemExit, match="no photo with an IUV PNG"):
        bench.extra_photos([tmp_path / "nothing"], per_clip=2, min_pixels=400)
    with pytest.raises(SystemExit, match="not a folder"):
        bench.extra_photos([tmp_path / "missing"], per_clip=2, min_pixels=400)


def test_copyable_texels_leave_out_part_borders(layout):
    from retarget.pipeline.pair import copyable_texels

    h, w = layout.shape  # a 16x16 "photo": left half shows part 15, right half part 16, one texel per pixel
    halves = []
    for part in (15, 16):
        ys, xs = np.nonzero(layout.part == part)
        assert len(ys) >= 128
        halves.append(np.stack([(2 * xs[:128] + 1) / w - 1, (2 * ys[:128] + 1) / h - 1]).reshape(2, 16, 8))
    uv = np.concatenate(halves, axis=2).astype(np.float32)
    ok = copyable_texels(torch.from_numpy(uv)[None], torch.ones(1, 1, 16, 16), layout)[0, 0].numpy()

    def texel(u, v):
        return int(round(((v + 1) * h - 1) / 2)), int(round(((u + 1) * w - 1) / 2))

    assert ok[texel(*uv[:, 8, 3])]  # inside the left half
    assert not ok[texel(*uv[:, 8, 7])]  # next to the other part


@pytest.mark.parametrize("shape", [(3, 40), (40, 3), (36, 48)])
def test_part_nearest_fill_reaches_every_texel_of_non_square_textures(shape):
    labels = torch.ones(shape, dtype=torch.long)
    values = torch.zeros(1, 1, *shape)
    known = torch.zeros(1, 1, *shape, dtype=torch.bool)
    values[..., 0, 0], known[..., 0, 0] = 7.0, True  # one seed in a corner
    out, valid = ops.part_nearest_fill(values, known, labels, 1)
    assert valid.all()
    torch.testing.assert_close(out, torch.full_like(out, 7.0))


def test_prepare_source_body_fill_on_random_inputs_is_finite():
    from retarget.pipeline import prepare_source, render_targets

    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(36, 36), (40, 64), (96, 48), (64, 36)]):
        image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(i))
        uv = torch.from_numpy(rng.uniform(-1, 1, (1, 2, h, w)).astype(np.float32))
        uv[:, :, torch.from_numpy(rng.random((h, w)) < 0.2 * (i + 1))] = float("nan")
        uv[0, 0, 0, 0] = float("inf")
        state = prepare_source(image, uv, None, fill="body")
        assert torch.isfinite(state.completed_xy).all() and torch.isfinite(state.pred_textures).all()
        assert torch.isfinite(render_targets(state, uv.expand(2, -1, -1, -1)).output).all()


def _limb_case(layout, lower_arms, right_upper_arm):
    """Coordinates: each arm segment points at its own column band of an image whose bands have the given
    grey levels (left upper arm x = -0.75 white, left lower arm x = -0.25, right upper arm x = 0.25,
    right lower arm x = 0.75: ``lower_arms`` for both lower arms, ``right_upper_arm`` for the right upper
    arm); the rest of the body points at x = 0 (band of the right upper arm). The left upper arm (15, 17)
    is held out."""
    h, w = layout.shape
    x = np.full((h, w), 0.25, np.float32)
    for parts, where in (([15, 17], -0.75), ([19, 21], -0.25), ([16, 18], 0.25), ([20, 22], 0.75)):
        x[np.isin(layout.part, parts)] = where
    values = np.stack([x, np.zeros_like(x)])
    covered = (layout.part > 0) & ~np.isin(layout.part, [15, 17])
    image = torch.ones(1, 3, 8, 32)
    image[..., 8:16] = lower_arms
    image[..., 16:24] = right_upper_arm
    image[..., 24:] = lower_arms
    texture = torch.from_numpy(np.where(covered, values, 0))[None]
    return texture, torch.from_numpy(covered.astype(np.float32))[None, None], image


def test_a_hem_the_mirror_limb_shows_too_keeps_the_mirror_copy(layout):
    """White upper arms, dark lower arms (a sleeve ending at the elbow) on both sides: the held-out upper
    arm is copied from the mirror (white), not stretched from its own dark lower arm (the old seam test)."""
    held = np.isin(layout.part, [15, 17])
    texture, coverage, image = _limb_case(layout, 0.1, 1.0)
    done = ops.body_completion(texture, coverage, layout, colours=image)
    assert np.mean(done.xy[0, 0].numpy()[held] == 0.25) > 0.95
    gain = done.gain[0].numpy()[:, held]
    assert np.allclose(np.median(gain, axis=1), 1.0, atol=0.02)  # no difference of light between the sides


def test_the_light_of_the_seen_side_is_carried_onto_the_mirror_copy(layout):
    """The right arm is in shade (0.4 against 0.8 on the left): the copy keeps the mirror's coordinates
    and gets the gain 0.8 / 0.4 = 2, so its colour matches the seen left lower arm."""
    held = np.isin(layout.part, [15, 17])
    texture, coverage, image = _limb_case(layout, 0.4, 0.4)
    image[..., 8:16] = 0.8  # the left lower arm, lit
    done = ops.body_completion(texture, coverage, layout, colours=image)
    assert np.mean(done.xy[0, 0].numpy()[held] == 0.25) > 0.95
    np.testing.assert_allclose(np.median(done.gain[0].numpy()[:, held], axis=1), 2.0, rtol=0.01)
    colours = ops.body_colour_texture(image, done, torch.as_tensor(layout.part))[0].numpy()
    assert abs(np.median(colours[:, held]) - 0.8) < 0.02
    assert np.all(done.gain[0].numpy()[:, ~held & (layout.part > 0)] == 1.0)  # covered texels unchanged


def test_limb_shading_gains_per_part():
    from retarget.ops.fill import MIN_SEAM_TEXELS, limb_shading_gains

    lab = torch.tensor([1] * MIN_SEAM_TEXELS + [2] * (MIN_SEAM_TEXELS - 1))
    own = torch.full((3, len(lab)), 0.6)
    mirror = torch.full((3, len(lab)), 0.3)
    mirror[0] = 0.6
    band = torch.ones(len(lab), dtype=torch.bool)
    gains = limb_shading_gains(own, mirror, band, lab, 4)
    assert gains.shape == (4, 3) and torch.isfinite(gains).all()
    torch.testing.assert_close(gains[1], torch.tensor([1.0, 2.0, 2.0]), rtol=1e-3, atol=0)
    assert torch.all(gains[[0, 2, 3]] == 1)  # too few band texels (part 2), no texels (0, 3)
    zero = limb_shading_gains(torch.zeros_like(own), torch.zeros_like(own), band, lab, 4)
    assert torch.all(zero == 1)  # black on both sides: no gain, no NaN
    torch.testing.assert_close(limb_shading_gains(own, mirror, band, lab, 4), gains)  # deterministic


def test_part_blur_smooths_within_parts_only():
    from retarget.ops.fill import part_blur

    labels = torch.zeros(12, 12, dtype=torch.long)
    labels[:, :6], labels[:, 6:11] = 1, 2
    colours = torch.zeros(1, 3, 12, 12)
    colours[..., 6:] = 1.0  # part 2 white, part 1 black, the background column stays 1
    colours[..., 0, 0] = 0.9  # one bright texel in part 1
    out = part_blur(colours, labels, 1.5)
    assert out.shape == colours.shape and torch.isfinite(out).all()
    assert torch.all(out[..., 6:11] == 1.0)  # nothing of part 1 bleeds into part 2, nor back
    assert out[..., :, :6].max() < 0.9 and bool((out[..., 1, 1] > 0).all())  # the bright texel spreads within part 1
    assert torch.all(out[..., 11] == colours[..., 11])  # off the body: unchanged
    assert torch.equal(part_blur(colours, labels, 0.0), colours)
    torch.testing.assert_close(part_blur(colours, labels, 1.5), out)


def _surface_distance(layout, from_parts):
    from scipy.sparse.csgraph import dijkstra

    part = layout.part.reshape(-1)
    seeds = np.nonzero(np.isin(part, from_parts))[0]
    return dijkstra(layout.surface, directed=True, indices=seeds, min_only=True)


def test_surface_graph_measures_distances_over_the_body(layout):
    graph = layout.surface
    assert graph.shape == (layout.part.size, layout.part.size) and (graph != graph.T).nnz == 0
    part = layout.part.reshape(-1)
    assert np.all(part[graph.tocoo().row] > 0)  # only body texels are joined
    from_left_upper_arm = _surface_distance(layout, [15, 17])
    median = {p: np.median(from_left_upper_arm[part == p]) for p in range(1, 25)}
    # along the left arm: its lower arm, then its hand; the other arm, the legs and the feet lie further
    assert median[19] < median[4] < median[3]
    assert median[21] < median[20] and median[21] < median[22]
    assert max(median[19], median[21]) < min(median[p] for p in (7, 8, 9, 10, 11, 12, 13, 14, 5, 6))
    assert min(median[p] for p in (11, 12, 13, 14)) > max(median[p] for p in (7, 8, 9, 10))  # shins past thighs
    reached = np.isfinite(from_left_upper_arm[part > 0])
    assert reached.mean() > 0.999  # every island is joined but a handful of texels


def test_surface_nearest_fill_fills_a_limb_from_both_of_its_ends(layout):
    """A hidden thigh between a hip that shows one value and a shin that shows another takes the hip's
    near the hip and the shin's near the knee; only known values are used."""
    part = layout.part
    thigh = np.isin(part, [7, 9])
    values = np.full(part.shape, 0.25, np.float32)  # the rest of the body
    values[np.isin(part, [11, 13])] = 0.75  # the shin below that thigh
    known = (part > 0) & ~thigh
    out, valid = ops.surface_nearest_fill(torch.from_numpy(values)[None, None],
                                          torch.from_numpy(known)[None, None], layout)
    out, valid = out[0, 0].numpy(), valid[0, 0].numpy()
    assert valid[thigh].mean() > 0.99  # (a handful of texels the surface graph does not join stay unfilled)
    reached = thigh & valid
    assert set(np.unique(out[reached]).tolist()) == {0.25, 0.75}
    seam = layout.seam_distance[reached]  # chart distance from the knee
    assert np.all(out[reached][seam < 0.15] == 0.75) and np.mean(out[reached][seam > 0.8] == 0.25) > 0.85
    assert np.array_equal(out[thigh & ~valid], values[thigh & ~valid])
    assert np.array_equal(out[known], values[known])  # known texels untouched


def test_a_part_seen_enough_continues_itself_and_a_glimpse_gives_way_to_the_body_around(layout):
    """The body fill's step 4: a part with at least OWN_PART_FRACTION of its texels known fills the rest
    of itself from them (the garment continues), even where another part is nearer on the surface; a part
    seen less than that is filled over the surface from the body around it."""
    from retarget.ops.fill import OWN_PART_FRACTION

    part = layout.part
    values = np.full(part.shape, 0.25, np.float32)  # every other part shows 0.25
    rows = np.nonzero(part == 1)[0]
    torso = (part == 1) & (rows.min() + (rows.max() - rows.min()) * 0.5 >= np.arange(part.shape[0])[:, None])
    assert OWN_PART_FRACTION < torso.sum() / (part == 1).sum() < 0.9
    values[torso] = 0.75  # the upper half of the back seen, showing 0.75
    seam = np.where(part == 9, layout.seam_distance, -1.0)  # chart distance from the knee
    glimpse = seam >= np.quantile(seam[part == 9], 0.9)
    values[glimpse] = 0.75  # a tenth of a thigh seen (at the hip), showing 0.75
    known = ((part > 0) & ~np.isin(part, [1, 2, 7, 8, 9, 10])) | torso | glimpse  # no other side to copy
    coords = np.stack([values, np.zeros_like(values)])
    texture = torch.from_numpy(np.where(known, coords, 0.0).astype(np.float32))[None]
    out = ops.body_fill(texture, torch.from_numpy(known.astype(np.float32))[None, None], layout)[0, 0].numpy()
    assert np.all(out[(part == 1) & ~torso] == 0.75)  # the back continues itself
    thigh_rest = (part == 9) & ~glimpse
    near_knee = thigh_rest & (layout.seam_distance < 0.2)
    assert np.all(out[near_knee] == 0.25)  # not the glimpse spread over the part: the knee's end from the shin


def test_quality_gain_interval_resamples_photos_not_limbs():
    """The bench's bootstrap interval: it holds the mean gain, shrinks with more photos, is zero where every
    photo agrees, counts a photo's limbs together, and gives the gap between two splits."""
    bench = _quality_bench()
    gains = np.linspace(-0.05, 0.15, 6)  # one gain per photo, 4 limbs each; "many": the same kinds 10 times over

    few = {f"p{i}": np.full((4, 2), g) for i, g in enumerate(gains)}
    many = {f"p{i}": np.full((4, 2), g) for i, g in enumerate(np.tile(gains, 10))}
    for groups in (few, many):
        (lo, _), (hi, _) = bench.gain_interval(groups)
        mean = np.concatenate(list(groups.values())).mean(0)[0]
        assert lo < mean < hi
    width = {k: np.diff(bench.gain_interval(g), axis=0)[0, 0] for k, g in (("few", few), ("many", many))}
    assert width["many"] < 0.6 * width["few"]
    same = {f"p{i}": np.full((3, 2), 0.04) for i in range(5)}
    assert np.allclose(bench.gain_interval(same), 0.04)
    # 2 photos, one with 50 limbs: resampling limbs would call the mean certain; photos do not
    lopsided = {"a": np.full((50, 2), 0.1), "b": np.full((1, 2), -0.1)}
    (lo, _), (hi, _) = bench.gain_interval(lopsided)
    assert lo < 0.0 and hi > 0.09
    gap = bench.gain_interval(same, minus={f"q{i}": np.full((2, 2), 0.01) for i in range(4)})
    assert np.allclose(gap, 0.03)


def test_quality_changes_pair_each_limb_with_itself_across_a_saved_run(tmp_path):
    """--save / --against: a saved run read back is matched limb by limb (photo and group), NaN detail is left
    out, limbs or fills the saved run lacks are skipped, and the paired change is exact where it is constant."""
    import json

    bench = _quality_bench()
    base = [(f"photo{i}", (7, 9) if k else (15, 17), 500, 12.0 + i, 0.2 + 0.01 * k, 9.0, 0.7) for i in range(4)
            for k in range(2)]
    base[0] = base[0][:6] + (float("nan"),)
    path = tmp_path / "scores.json"
    bench.save_scores(path, {"tuning": {"body": base, "nearest": base}})
    assert not list(tmp_path.glob("*.tmp"))
    saved = json.loads(path.read_text())
    better = [r[:3] + (r[3] + 0.5, r[4] + 0.01, r[5], r[6] - 0.05) for r in base]
    extra = [("photo9", (8, 10), 500, 1.0, 0.0, 0.0, 0.0)]  # not in the saved run
    current = extra + better[::-1]  # another order, and a limb first that the saved run lacks
    out = bench.changes({"tuning": {"body": current, "other": better}}, saved)
    assert list(out) == [("tuning", "body")]
    mean, interval, n = out["tuning", "body"]
    assert n == 8
    assert np.allclose(mean, [0.5, 0.01, -0.05]) and np.allclose(interval, [[0.5, 0.01, -0.05]] * 2)


def test_a_magnified_part_is_completed_from_its_own_pixels_not_speckled():
    """11 × 11 photo pixels spread 3× over a square of the head's chart (a face in a full-body photo): the
    splats form a lattice covering an eighth of the square, which the stray-splat test alone would drop and
    the fill would cover with copies from elsewhere. With the gaps between the splats filled from the
    photo's pixel grid (:func:`retarget.pipeline.pair.fill_sampling_gaps`) every texel of the square points
    at the photo place it shows."""
    from scipy import ndimage

    from retarget.pipeline.pair import prepare_source

    n = 128
    layout = texture_layout(n, n)
    rows, cols = np.nonzero(ndimage.binary_erosion(layout.part == 23, iterations=16))
    r0, c0 = rows[len(rows) // 2] - 15, cols[len(cols) // 2] - 15
    assert (layout.part[r0:r0 + 31, c0:c0 + 31] == 23).all()
    uv = torch.full((1, 2, n, n), float("nan"))
    y0 = x0 = 40
    yy, xx = np.mgrid[0:11, 0:11]
    uv[0, 0, y0:y0 + 11, x0:x0 + 11] = torch.from_numpy(2 * (c0 + 3 * xx) / n - 1.0).float()
    uv[0, 1, y0:y0 + 11, x0:x0 + 11] = torch.from_numpy(2 * (r0 + 3 * yy) / n - 1.0).float()
    image = torch.rand(1, 3, n, n, generator=torch.Generator().manual_seed(0))
    rr, cc = np.mgrid[r0 + 3:r0 + 28, c0 + 3:c0 + 28]
    expected_x, expected_y = x0 + (cc - c0) / 3, y0 + (rr - r0) / 3

    def error(xy):
        xy = xy[0].numpy() * (n - 1) / 2 + (n - 1) / 2
        return np.hypot(xy[0][rr, cc] - expected_x, xy[1][rr, cc] - expected_y)

    state = prepare_source(image, uv, None, fill="body")
    assert error(state.completed_xy).max() < 0.01
    assert (state.coverage[0, 0, r0:r0 + 31, c0:c0 + 31] > 0.5).float().mean() < 0.2  # the splat: a lattice
    splat_only = ops.body_completion(state.source_xy_textures, state.coverage, layout)  # what it was before
    assert error(splat_only.xy).mean() > 5.0


def test_real_bench_head_scores_see_speckle_and_need_a_head():
    """bench/real.py's head reading: the truth scores SSIM 1 and detail 1; dark specks over the face raise the
    detail above 1 and lower SSIM and PSNR; a target with too small a head has no score."""
    bench = _quality_bench("real")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:64] / 63.0
    real = np.stack([0.6 + 0.2 * x, 0.5 + 0.1 * y, 0.4 + 0 * x], axis=2).astype(np.float32)
    parts = np.zeros((64, 64), np.int64)
    parts[10:50, 12:52] = 23
    psnr, ssim, detail = bench.head_scores(real, real, parts)
    assert psnr > 100 and ssim == pytest.approx(1.0) and detail == pytest.approx(1.0)
    specks = real.copy()
    specks[(rng.random((64, 64)) < 0.05) & (parts > 0)] = 0.1
    p2, s2, d2 = bench.head_scores(specks, real, parts)
    assert d2 > 3.0 and s2 < 0.9 and p2 < 30
    outside = real.copy()
    outside[parts == 0] = 0.0  # only head pixels count
    assert bench.head_scores(outside, real, parts)[0] > 100
    small = np.zeros_like(parts)
    small[:5, :5] = 24
    assert bench.head_scores(real, real, small) is None


def test_real_bench_identity_every_frame_reads_every_frame_as_the_source(capsys):
    """bench/real.py --identity-every-frame: one identity PSNR per frame, the worst frame named; a frame whose
    IUV cannot tell its pixels apart (every pixel of a part at one U, V: all read one place of the photo) is
    counted below 28 dB."""
    from retarget.io.image import read_image_rgb
    from retarget.io.iuv import read_iuv_png
    from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO

    bench = _quality_bench("real")
    rgb, iuv = read_image_rgb(EXAMPLE_PHOTO), read_iuv_png(EXAMPLE_IUV)
    flat = iuv.copy()
    flat[iuv[..., 0] > 0, 1:] = 128
    clip = bench.Clip(name="example", rgb=[rgb] * 3, iuv=[iuv, flat, iuv], numbers=[4, 7, 9])
    bench.identity_every_frame(clip)
    line = capsys.readouterr().out
    assert "3 frames" in line and "(frame 7)" in line and "below 28 dB: 1" in line, line


def test_real_bench_skips_frames_without_a_person(capsys):
    """bench/real.py on a clip where DensePose missed the person in some frames (real footage does): those frames
    stay in the sequence but are never a source or a target (before: a crash on the empty target box)."""
    from retarget.io.image import read_image_rgb
    from retarget.io.iuv import read_iuv_png
    from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO

    bench = _quality_bench("real")
    rgb, iuv = read_image_rgb(EXAMPLE_PHOTO), read_iuv_png(EXAMPLE_IUV)
    empty = np.zeros_like(iuv)
    speck = empty.copy()
    speck[10:13, 10:13, 0] = 2  # 9 pixels: below MIN_PERSON_PIXELS
    assert bench.has_person(iuv) and not bench.has_person(empty) and not bench.has_person(speck)
    clip = bench.Clip(name="gaps", rgb=[rgb] * 5, iuv=[empty, iuv, speck, iuv, iuv], numbers=[1, 2, 3, 4, 5])
    assert bench.source_indices(5, ["first", "middle", "last"], [1, 3, 4]) == [1, 3, 4]
    rows = bench.run_clip(clip, ["body"], ["first", "last"], None, 0, None)
    assert [r["source"] for r in rows] == [2, 5]
    assert all(np.isfinite(r["delta_e"]) and np.isfinite(r["ssim"]) and r["identity"] > 28 for r in rows), rows
    bench.identity_every_frame(clip)
    assert "3 frames" in capsys.readouterr().out


def test_a_larger_crop_completes_the_same_body():
    """The fill's texel counts and windows are stated at 256² and scaled with the texture (``texture_scale``): the
    example photo prepared at 512² gives, part by part, the colours it gives at 256² (measured: largest mean-colour
    difference 0.115 over the 24 parts; 0.418 without the scaling, on the back of an upper arm whose mirror copies a
    256²-sized seam count let through at 512² only) — and the window sums give what an unfolded window gives."""
    import cv2

    from retarget.io.image import read_image_rgb
    from retarget.io.iuv import read_iuv_png
    from retarget.ops.fill import reliable_coverage
    from retarget.pipeline.source import frame_source, prepare_source_crop
    from tests.conftest import EXAMPLE_IUV, EXAMPLE_PHOTO

    rgb, iuv = read_image_rgb(EXAMPLE_PHOTO), read_iuv_png(EXAMPLE_IUV)
    colours = {}
    for size in (256, 512):
        texture = prepare_source_crop(frame_source(rgb, iuv=iuv, size=size), None, fill="body").pred_textures
        texture = texture[0].permute(1, 2, 0).numpy()
        colours[size] = texture if size == 256 else cv2.resize(texture, (256, 256), interpolation=cv2.INTER_AREA)
    part = texture_layout(256, 256).part
    gaps = [np.linalg.norm(colours[256][part == p].mean(0) - colours[512][part == p].mean(0)) for p in range(1, 25)]
    assert max(gaps) < 0.2, np.round(gaps, 3)

    rng = np.random.default_rng(0)  # reliable_coverage: per-label window sums = the unfolded 9x9 window
    labels = torch.as_tensor(texture_layout(64, 64).part)
    values = torch.from_numpy(rng.random((1, 2, 64, 64), np.float32)) * 0.1
    covered = torch.from_numpy(rng.random((1, 1, 64, 64)) < 0.6)
    k, label = 9, labels[None, None].float()
    same = (torch.nn.functional.unfold(label, k, padding=4).reshape(1, k * k, 64, 64) == label).float()
    cov = torch.nn.functional.unfold(covered.float(), k, padding=4).reshape(1, k * k, 64, 64) * same
    mean = (torch.nn.functional.unfold(values, k, padding=4).reshape(1, 2, k * k, 64, 64) * cov[:, None]).sum(2)
    mean = mean / cov.sum(1, keepdim=True).clamp(min=1)
    expected = covered & (cov.sum(1, keepdim=True) / same.sum(1, keepdim=True) >= 0.45) & (
        (values - mean).abs().amax(1, keepdim=True) <= 0.08)
    got = reliable_coverage(values, covered, labels, radius=4)
    body = (labels > 0)[None, None]
    assert torch.equal(got[body], expected[body]) and 0 < int(got.sum()) < int(covered.sum())
