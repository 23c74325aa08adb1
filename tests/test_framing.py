"""Person following, crop smoothing, crop/paste and the scene plate on tiny arrays."""

from __future__ import annotations

import numpy as np

from retarget.pipeline.background import ScenePlateEstimator, parse_colour, source_background
from retarget.pipeline.framing import (
    SquareCrop,
    box_to_crop_params,
    crop_image,
    extend_colours,
    feather,
    mask_box,
    paste_crop,
    pick_person,
    smooth_track,
)


def test_pick_person_follows_the_same_person_not_the_biggest():
    small, big = [10, 10, 30, 60], [50, 0, 100, 100]
    boxes = np.array([small, big], float)
    assert pick_person(boxes, None) == 1  # no history: the largest
    assert pick_person(boxes, np.array([12, 11, 31, 62], float)) == 0  # history: the same person
    assert pick_person(boxes[::-1], np.array([12, 11, 31, 62], float)) == 1
    assert pick_person(np.zeros((0, 4)), None) is None


def test_smooth_track_keeps_a_still_person_still_and_gaps_empty():
    still = np.tile([120.0, 80.0, 150.0], (30, 1))
    still[10:13] = np.nan
    out = smooth_track(still, sigma_frames=2.0)
    assert np.isnan(out[10:13]).all()
    valid = ~np.isnan(out).any(axis=1)
    np.testing.assert_allclose(out[valid], still[valid], atol=1e-9)
    assert len({SquareCrop.around(*row) for row in out[valid]}) == 1  # the very same crop every frame
    jitter = np.tile([120.0, 80.0, 150.0], (60, 1)) + np.random.default_rng(0).normal(0, 3, (60, 3))
    assert smooth_track(jitter, 2.0)[5:-5].std(axis=0).max() < 0.5 * jitter.std(axis=0).min()
    assert smooth_track(jitter[:3], 5.0).shape == (3, 3)  # shorter than the kernel


def test_crop_and_paste_round_trip_with_padding():
    image = np.random.default_rng(1).random((40, 60, 3)).astype(np.float32)
    crop = SquareCrop(x0=-5, y0=10, side=20)  # extends past the left edge
    window = crop_image(image, crop, 20)
    assert window.shape == (20, 20, 3)
    np.testing.assert_array_equal(window[:, 5:], image[10:30, 0:15])
    assert (window[:, :5] == 0).all()
    canvas = np.zeros_like(image)
    paste_crop(canvas, crop, window, np.ones((20, 20), np.float32))
    np.testing.assert_array_equal(canvas[10:30, 0:15], image[10:30, 0:15])
    assert (canvas[:10] == 0).all()


def test_box_helpers_and_feather():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:9] = True
    np.testing.assert_array_equal(mask_box(mask), [3, 2, 9, 5])
    assert mask_box(np.zeros((4, 4), bool)) is None
    cx, cy, side = box_to_crop_params(np.array([0, 0, 90, 45.0]))
    assert (cx, cy) == (45, 22.5) and abs(side - 100) < 1e-9
    big = np.zeros((20, 20), bool)
    big[4:16, 4:16] = True
    alpha = feather(big, 1.0)
    assert 0 <= alpha.min() and alpha.max() <= 1 and alpha[10, 10] > 0.99 and 0 < alpha[3, 10] < 0.5
    # the soft edge outside the person carries person colours, not the crop's background (no halo)
    content = np.where(big[..., None], np.float32([0.2, 0.4, 0.6]), np.float32([1, 1, 1]))
    extended = extend_colours(content, big, 2.0)
    np.testing.assert_allclose(extended[alpha > 0], np.broadcast_to([0.2, 0.4, 0.6], extended[alpha > 0].shape),
                               atol=1e-5)
    np.testing.assert_array_equal(extended[big], content[big])


def test_scene_plate_removes_a_moving_person_and_fills_never_seen_pixels():
    h, w = 30, 30
    scene = np.zeros((h, w, 3), np.uint8)
    scene[..., 0] = np.arange(w) * 8
    plate = ScenePlateEstimator(h, w, max_frames=4)
    for t in range(20):
        frame = scene.copy()
        person = np.zeros((h, w), bool)
        person[5:15, t:t + 5] = True
        person[0:3, 0:3] = True  # a corner that is never uncovered
        frame[person] = 255
        plate.add(frame, person)
    assert len(plate._frames) <= 4 and plate.stride > 1  # bounded memory
    result = plate.plate()
    # rows the person never reached, and columns it only walked through, show the scene
    np.testing.assert_allclose(result[20:] * 255, scene[20:].astype(np.float32), atol=1)
    np.testing.assert_allclose(result[10, [12, 25]] * 255, scene[10, [12, 25]].astype(np.float32), atol=1)
    assert (result[0:3, 0:3] < 0.99).all()  # inpainted from the surroundings, not the person's white


def test_backgrounds_helpers():
    np.testing.assert_allclose(parse_colour("#ff8000"), [1, 128 / 255, 0])
    assert parse_colour("scene") is None and parse_colour("#zzzzzz") is None
    photo = np.full((32, 32, 3), 200, np.uint8)
    person = np.zeros((32, 32), bool)
    person[8:24, 12:20] = True
    photo[person] = 0
    bg = source_background(photo, person, 24, 48)
    assert bg.shape == (24, 48, 3) and bg.min() > 0.6  # the person is gone
