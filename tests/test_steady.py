"""Steady output (``--steady``, retarget/pipeline/steady.py): carried along the driver's motion, never a trail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retarget.errors import UsageError
from retarget.pipeline.steady import OutputSteadier, check_steady, reliable_motion, steady_blend

S = 96
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _texture(seed: int = 0, sigma: float = 3.0) -> np.ndarray:
    """A smooth random RGB pattern (uint8), wide enough to slide a ``S × S`` window over."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((S, 3 * S, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
    return ((blurred - blurred.mean()) / blurred.std() * 50 + 128).clip(0, 255).astype(np.uint8)


def _window(image: np.ndarray, x: int) -> np.ndarray:
    return np.ascontiguousarray(image[:, x:x + S])


def test_off_and_static_blend_exactly():
    rng = np.random.default_rng(1)
    render, previous = rng.random((S, S, 3), dtype=np.float32), rng.random((S, S, 3), dtype=np.float32)
    mask = np.ones((S, S), bool)
    zero = np.zeros((S, S, 2), np.float32)
    assert steady_blend(render, mask, previous, mask, zero, mask, 0.0) is render
    out = steady_blend(render, mask, previous, mask, zero, mask, 0.75)
    np.testing.assert_allclose(out, 0.25 * render + 0.75 * previous, atol=1e-6)
    # not reliable, or not the person in either frame: the render passes through
    off = np.zeros((S, S), bool)
    np.testing.assert_array_equal(steady_blend(render, mask, previous, mask, zero, off, 0.75), render)
    np.testing.assert_array_equal(steady_blend(render, mask, previous, off, zero, mask, 0.75), render)


def test_moving_render_is_steadier_and_does_not_lag():
    """A person sliding 2 px per frame whose render shimmers (noise per frame): the steadied crops follow the
    motion (error against the clean render no worse than the raw render's) and flicker less along it."""
    scene = _texture(0)
    rng = np.random.default_rng(2)
    steadier = OutputSteadier(0.8)
    mask = np.ones((S, S), bool)
    raw_err, out_err, raw_flicker, out_flicker = [], [], [], []
    last_raw = last_out = None
    for t in range(12):
        x = 2 * t
        clean = _window(scene, x).astype(np.float32) / 255.0
        render = np.clip(clean + rng.normal(0, 0.06, clean.shape).astype(np.float32), 0, 1)
        out = steadier(_window(scene, x), render, mask)
        core = (slice(8, -8), slice(8, -16))  # away from the edge the motion uncovers
        if t >= 4:
            raw_err.append(np.abs(render - clean)[core].mean())
            out_err.append(np.abs(out - clean)[core].mean())
        if last_raw is not None:  # the motion is 2 px to the left in the window
            raw_flicker.append(np.abs(render[:, :-2] - last_raw[:, 2:])[core].mean())
            out_flicker.append(np.abs(out[:, :-2] - last_out[:, 2:])[core].mean())
        last_raw, last_out = render, out
    assert np.mean(out_err) < 0.7 * np.mean(raw_err)
    assert np.mean(out_flicker) < 0.6 * np.mean(raw_flicker)


def test_a_cut_passes_the_render_through():
    steadier = OutputSteadier(0.8)
    mask = np.ones((S, S), bool)
    first = _window(_texture(0), 0)
    steadier(first, first.astype(np.float32) / 255.0, mask)
    other = _window(_texture(5), 40)  # another scene: no reliable motion anywhere
    render = other.astype(np.float32) / 255.0
    out = steadier(other, render, mask)
    assert np.abs(out - render).mean() < 0.01


def test_reliable_motion_rejects_wrong_flow():
    import cv2

    scene = _texture(0, sigma=1.0)  # fine detail: a 6 px error shows in the driver's pixels
    a, b = _window(scene, 0), _window(scene, 3)  # b = a moved 3 px to the left
    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    back = np.zeros((S, S, 2), np.float32)
    back[..., 0] = 3.0  # pixel x of b was at x + 3 in a
    forward = -back
    good = reliable_motion(back, forward, gb, ga)
    assert good[:, :-3].mean() > 0.95
    wrong = reliable_motion(-back, back, gb, ga)  # consistent both ways but the driver's pixels disagree
    assert wrong[:, 3:-3].mean() < 0.5


def test_strength_bounds():
    assert check_steady(0) == 0.0 and check_steady(0.95) == 0.95
    for bad in (-0.1, 0.96, 2):
        with pytest.raises(UsageError, match="--steady"):
            check_steady(bad)


def test_video_steady_changes_frames_and_zero_is_off(tmp_path):
    """``retarget video``: --steady 0 is the renderer's own frames; the default steadies them (a different,
    smoother video of the same length)."""
    from retarget.io.video import iter_frames
    from retarget.pipeline.job import VideoJob, run_video_job
    from retarget.pipeline.video import VideoOptions

    outputs = {}
    for steady in (0.0, 0.8):
        out = tmp_path / f"s{steady}.mkv"
        job = VideoJob(source=EXAMPLES / "source.jpg", driver=EXAMPLES / "driver.mp4", output=out,
                       driver_iuv=EXAMPLES / "driver.iuv", source_iuv=EXAMPLES / "source_IUV.png", size=64,
                       options=VideoOptions(quiet=True, steady=steady, codec="ffv1", temporal_radius=0,
                                            background="#808080"))
        run_video_job(job, None)
        outputs[steady] = [f.rgb.astype(np.int16) for f in iter_frames(out)]
    raw, steady = outputs[0.0], outputs[0.8]
    assert len(raw) == len(steady) == 60
    assert np.array_equal(raw[0], steady[0])  # the first frame has nothing to carry
    assert any(not np.array_equal(a, b) for a, b in zip(raw, steady))

    def flicker(frames):
        return float(np.mean([np.abs(b - a).mean() for a, b in zip(frames, frames[1:])]))

    assert flicker(steady) < flicker(raw)
