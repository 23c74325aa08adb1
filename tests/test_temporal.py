"""The temporal IUV filter (densepose_adapter.temporal): clean clips, inventions, cuts, streaming."""

from __future__ import annotations

import numpy as np
import pytest

from densepose_adapter.temporal import (
    TemporalIUVFilter,
    TemporalSettings,
    filter_sequence,
    guide_from_rgb,
)

H, W = 192, 256
# (part, y0, y1, x0, x1) of a toy person whose top-left corner is at (0, 0)
PARTS = [(23, 0, 28, 20, 48), (2, 28, 88, 12, 56), (15, 28, 80, 0, 12), (16, 28, 80, 56, 68),
         (7, 88, 140, 12, 32), (8, 88, 140, 36, 56)]
CLOTH = np.random.default_rng(0).uniform(40, 220, (25, 32, 32)).astype(np.float32)  # texture per part / chart cell


def _background(seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (H // 4, W // 4)).astype(np.float32)
    return np.clip(cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def toy_frame(x: int, y: int = 20, background: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(iuv, guide)`` of the toy person with its top-left corner at ``(x, y)`` over a textured scene."""
    iuv = np.zeros((H, W, 3), np.uint8)
    for part, y0, y1, x0, x1 in PARTS:
        v, u = np.mgrid[0:y1 - y0, 0:x1 - x0]
        ys, xs = slice(y + y0, y + y1), slice(x + x0, x + x1)
        iuv[ys, xs, 0] = part
        iuv[ys, xs, 1] = np.round(20 + 200 * u / max(x1 - x0 - 1, 1))
        iuv[ys, xs, 2] = np.round(20 + 200 * v / max(y1 - y0 - 1, 1))
    guide = _background(background)
    fg = iuv[..., 0] > 0
    texture = CLOTH[iuv[..., 0], iuv[..., 1] // 8, iuv[..., 2] // 8].astype(np.uint8)
    guide[fg] = texture[fg]
    return iuv, guide


def add_noise(iuv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Border label flips (p = 0.3 within 2 px of a label change) and U, V noise (sigma 6)."""
    import cv2

    labels = iuv[..., 0]
    band = cv2.dilate(labels, np.ones((5, 5), np.uint8)) != cv2.erode(labels, np.ones((5, 5), np.uint8))
    out = iuv.copy()
    ys, xs = np.nonzero(band & (rng.random(labels.shape) < 0.3))
    for _ in range(8):
        yy = np.clip(ys + rng.integers(-2, 3, len(ys)), 0, H - 1)
        xx = np.clip(xs + rng.integers(-2, 3, len(xs)), 0, W - 1)
        ok = labels[yy, xx] != labels[ys, xs]
        out[ys[ok], xs[ok]] = iuv[yy[ok], xx[ok]]
        ys, xs = ys[~ok], xs[~ok]
    fg = out[..., 0] > 0
    uv = out[..., 1:].astype(np.float32) + rng.normal(0, 6, out[..., 1:].shape)
    out[..., 1:] = np.where(fg[..., None], np.clip(np.rint(uv), 0, 255), 0).astype(np.uint8)
    return out


def _clip(xs, background=0):
    frames = [toy_frame(x, background=background) for x in xs]
    return [f[0] for f in frames], [f[1] for f in frames]


def test_clean_still_clip_is_unchanged():
    iuvs, guides = _clip([40] * 7)
    for out, iuv in zip(filter_sequence(iuvs, guides), iuvs):
        assert np.array_equal(out[..., 0], iuv[..., 0])
        assert np.abs(out.astype(int) - iuv).max() <= 1


def test_clean_moving_clip_keeps_labels_and_uv_within_one_level():
    """A person moving 4 px per frame: labels and chart coordinates survive the motion compensation."""
    iuvs, guides = _clip(range(20, 80, 4))
    changed, uv_error = [], []
    for out, iuv in zip(filter_sequence(iuvs, guides), iuvs):
        inside = iuv[..., 0] > 0
        changed.append(np.mean(out[..., 0][inside] != iuv[..., 0][inside]))
        same = (out[..., 0] == iuv[..., 0]) & inside
        uv_error.append(np.mean(np.abs(out[..., 1:].astype(int) - iuv[..., 1:])[same]))
    assert np.mean(changed) < 0.01 and max(changed) < 0.05  # one-sided windows at the clip's ends
    assert np.mean(uv_error) <= 1.0


def test_noise_is_reduced_on_a_moving_person():
    rng = np.random.default_rng(1)
    clean, guides = _clip(range(20, 80, 4))
    noisy = [add_noise(x, rng) for x in clean]
    out = filter_sequence(noisy, guides)

    def errors(seq):
        wrong = uv = 0.0
        for est, ref in zip(seq, clean):
            person = (est[..., 0] > 0) | (ref[..., 0] > 0)
            wrong += np.mean(est[..., 0][person] != ref[..., 0][person])
            ok = (est[..., 0] == ref[..., 0]) & (ref[..., 0] > 0)
            uv += np.mean(np.abs(est[..., 1:].astype(int) - ref[..., 1:])[ok])
        return wrong / len(seq), uv / len(seq)

    (noisy_labels, noisy_uv), (labels, uv) = errors(noisy), errors(out)
    assert labels < 0.6 * noisy_labels
    assert uv < 0.7 * noisy_uv


def test_single_frame_limb_dropout_is_filled():
    clean, guides = _clip(range(20, 62, 6))
    damaged = [x.copy() for x in clean]
    arm = np.isin(damaged[3][..., 0], (15,))
    damaged[3][arm] = 0
    out = filter_sequence(damaged, guides)
    # the arm (12 px wide, moving 6 px per frame) comes back, bar a pixel or two along its edges
    assert np.mean(out[3][..., 0][arm] == 15) > 0.75
    assert np.count_nonzero((out[3][..., 0] == 15) & ~arm) < 0.1 * np.count_nonzero(arm)


def test_never_invents_a_person():
    iuvs, guides = _clip([40] * 9)
    empty = [np.zeros_like(x) for x in iuvs]
    assert all(not out.any() for out in filter_sequence(empty, guides))
    # a person in frames 0-1 only: later frames far from them stay empty, and no pixel that is
    # background in every frame of its window gets a label
    mixed = iuvs[:2] + empty[2:]
    out = filter_sequence(mixed, guides, TemporalSettings(radius=2))
    assert all(not o.any() for o in out[4:])
    union = (iuvs[0][..., 0] > 0)
    for o in out:
        assert not (o[..., 0] > 0)[~union].any()


def test_scene_cut_resets_the_window():
    rng = np.random.default_rng(2)
    a_iuv, a_guide = _clip(range(20, 45, 5), background=0)
    b_iuv, b_guide = _clip(range(80, 60, -4), background=7)
    a_iuv = [add_noise(x, rng) for x in a_iuv]
    b_iuv = [add_noise(x, rng) for x in b_iuv]
    joined = filter_sequence(a_iuv + b_iuv, a_guide + b_guide)
    apart = filter_sequence(a_iuv, a_guide) + filter_sequence(b_iuv, b_guide)
    for x, y in zip(joined, apart):
        assert np.array_equal(x, y)


def test_scene_cut_is_found_from_the_iuv_alone():
    """Same background, person jumps across the frame: the label agreement under the flow drops."""
    a_iuv, a_guide = _clip([10, 12, 14, 16])
    b_iuv, b_guide = _clip([90, 88, 86, 84])
    joined = filter_sequence(a_iuv + b_iuv, a_guide + b_guide)
    apart = filter_sequence(a_iuv, a_guide) + filter_sequence(b_iuv, b_guide)
    for x, y in zip(joined, apart):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_streaming_equals_offline_with_flat_memory(radius):
    rng = np.random.default_rng(3)
    clean, guides = _clip(list(range(20, 60, 5)) + [90, 86, 82, 78])  # a cut in the middle
    noisy = [add_noise(x, rng) for x in clean]
    settings = TemporalSettings(radius=radius)
    offline = filter_sequence(noisy, guides, settings)
    stream = TemporalIUVFilter(settings)
    got = []
    for iuv, guide in zip(noisy, guides):
        got += stream.push(iuv, guide)
        assert stream.held <= 2 * radius + 2
        assert len(got) >= stream._pushed - radius  # bounded look-ahead
    got += stream.finish()
    assert [i for i, _ in got] == list(range(len(noisy)))
    for (_, x), y in zip(got, offline):
        assert np.array_equal(x, y)


def test_radius_zero_is_identity_and_guides_may_come_from_the_iuv():
    rng = np.random.default_rng(4)
    clean, guides = _clip(range(20, 50, 5))
    noisy = [add_noise(x, rng) for x in clean]
    assert all(np.array_equal(a, b) for a, b in zip(filter_sequence(noisy, guides, TemporalSettings(radius=0)), noisy))
    without = filter_sequence(noisy, None)
    assert all(o.shape == n.shape for o, n in zip(without, noisy))


def test_guide_from_rgb_is_grey():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 200
    assert guide_from_rgb(rgb).shape == (4, 5)


def test_causal_hold_passes_a_frame_through_and_starts_the_next_window_there():
    """``hold`` returns the frame as it is; the next frame's window reaches back to it but not across it."""
    iuvs, guides = _clip([30, 34, 38, 42, 46])
    rng = np.random.default_rng(5)
    noisy = [add_noise(x, rng) for x in iuvs]
    settings = TemporalSettings(radius=2)
    held = TemporalIUVFilter(settings, causal=True)
    held.push(noisy[0], guides[0])
    held.push(noisy[1], guides[1])
    assert held.hold(noisy[2], guides[2]) is noisy[2]
    ((_, after),) = held.push(noisy[3], guides[3])
    fresh = TemporalIUVFilter(settings, causal=True)  # a window of frames 2 and 3 only
    fresh.push(noisy[2], guides[2])
    ((_, want),) = fresh.push(noisy[3], guides[3])
    np.testing.assert_array_equal(after, want)
    assert not np.array_equal(after, noisy[3])  # frame 3 was filtered (with frame 2)
    full = TemporalIUVFilter(settings, causal=True)  # without the hold, frame 1 is in the window too
    for x, g in zip(noisy[:3], guides[:3]):
        full.push(x, g)
    ((_, spanning),) = full.push(noisy[3], guides[3])
    assert not np.array_equal(spanning, after)
    assert held.held <= settings.radius + 2
    with pytest.raises(ValueError):
        TemporalIUVFilter(settings).hold(noisy[0], guides[0])
