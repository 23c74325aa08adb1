"""Steady output: the rendered person carried along the driver's own motion (``--steady``).

Real DensePose disagrees with itself by a few pixels from frame to frame, even after the temporal IUV filter
(docs/temporal.md), and the render reads the photo exactly where the IUV says: a patterned dress or a sleeve
edge then shimmers although the driver's clothes move smoothly. The rendered video is measured against the
footage it follows by its flow-compensated warp error (``bench/real.py``): how much a frame differs from the
previous one moved along the real frames' optical flow.

Here every rendered crop is blended with the previous *output* crop moved along the flow of the driver's
crops (DIS, previous ← current), per pixel::

    out_t = (1 − w) · render_t + w · warp(out_{t−1}),   w = strength · reliable

``reliable`` holds where the pixel is the person's in both frames, the flow is consistent both ways
(forward-backward error ≤ 1 px + 10 % of the motion) and the *driver's* own pixels agree along it
(|driver_t − warp(driver_{t−1})|, averaged over 5×5 pixels, ≤ 24 grey levels: a sub-pixel flow error
on a fine pattern moves single pixels a lot, a wrong flow moves the whole patch). Where the flow is
wrong (occlusion, a limb it lost, a cut) the render passes through unchanged, so there is no trail.
Render differences themselves are not a reason to stop blending: those are the flicker being removed.
A run of reliable pixels is an exponential average along the motion (``strength`` 0.8 ≈ the last five
frames); a view change (a turn showing the back) fades in over those frames instead of jumping.

Conventions: crops are ``(S, S, 3)`` float RGB in [0, 1] (the renderer's), masks ``(S, S)`` bool, driver crops
``(S, S)`` uint8 grey; flows ``(S, S, 2)`` float32 in pixels, xy order, "where this pixel was/goes".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from densepose_adapter.temporal import pixel_grid

#: default ``--steady`` strength (weight of the carried previous output where reliable)
DEFAULT_STEADY = 0.8
MAX_STEADY = 0.95
#: driver pixels that differ by more than this (grey levels, 0..255) after motion compensation: flow is wrong
PHOTO_TOLERANCE = 24.0


def check_steady(value: float) -> float:
    from retarget.errors import UsageError

    if not 0.0 <= float(value) <= MAX_STEADY:
        raise UsageError(f"--steady must be 0..{MAX_STEADY} (0 = off), got {value}")
    return float(value)


def reliable_motion(back: np.ndarray, forward: np.ndarray, grey: np.ndarray, previous_grey: np.ndarray,
                    photo_tolerance: float = PHOTO_TOLERANCE) -> np.ndarray:
    """``(S, S)`` bool: pixels of the current frame whose motion to the previous frame is trustworthy.

    Args:
        back: flow current → previous (pixel ``x`` of the current frame was at ``x + back(x)``).
        forward: flow previous → current.
        grey, previous_grey: the driver crops (uint8 grey) of the current and previous frame.
    """
    import cv2

    h, w = back.shape[:2]
    gx, gy = pixel_grid(h, w)
    mx, my = gx + back[..., 0], gy + back[..., 1]
    there = cv2.remap(forward, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fb = np.hypot(back[..., 0] + there[..., 0], back[..., 1] + there[..., 1])
    motion = np.hypot(back[..., 0], back[..., 1])
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    current = grey.astype(np.float32)
    moved = cv2.remap(previous_grey.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # judged on 5×5 patches: a sub-pixel flow error on a fine pattern moves single pixels a lot, not a patch
    photo = cv2.blur(np.abs(current - moved), (5, 5)) <= photo_tolerance
    return inside & (fb <= 1.0 + 0.1 * motion) & photo


def steady_blend(render: np.ndarray, mask: np.ndarray, previous: np.ndarray, previous_mask: np.ndarray,
                 back: np.ndarray, reliable: np.ndarray, strength: float) -> np.ndarray:
    """The steadied crop: ``render`` blended with ``previous`` (the last output crop) moved along ``back``.

    Args:
        render, previous: ``(S, S, 3)`` float RGB.
        mask, previous_mask: the person's pixels in each.
        back: flow current → previous; reliable: :func:`reliable_motion`.
        strength: weight of the carried previous output, 0..1 (0 returns ``render`` unchanged).
    """
    import cv2

    if strength <= 0.0:
        return render
    h, w = mask.shape
    gx, gy = pixel_grid(h, w)
    mx, my = gx + back[..., 0], gy + back[..., 1]
    carried = cv2.remap(np.ascontiguousarray(previous, dtype=np.float32), mx, my, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    was_person = cv2.remap(previous_mask.astype(np.uint8), mx, my, cv2.INTER_NEAREST, borderValue=0) > 0
    weight = (strength * (reliable & mask & was_person)).astype(np.float32)[..., None]
    return (render * (1.0 - weight) + carried * weight).astype(render.dtype, copy=False)


@dataclass
class _Last:
    grey: np.ndarray
    rgb: np.ndarray
    mask: np.ndarray


class OutputSteadier:
    """Streams :func:`steady_blend` over consecutive crops of one video (see the module docstring).

    Call it once per output frame in order with the driver crop and the rendered person; a frame without a
    person, or a crop of another size, restarts it. Uses one OpenCV DIS (``ultrafast``) instance.
    """

    def __init__(self, strength: float = DEFAULT_STEADY):
        self.strength = float(strength)
        self._last: _Last | None = None
        self._dis = None

    def reset(self) -> None:
        self._last = None

    def __call__(self, driver_crop_rgb: np.ndarray, render: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2

        if self.strength <= 0.0:
            return render
        grey = cv2.cvtColor(np.ascontiguousarray(driver_crop_rgb), cv2.COLOR_RGB2GRAY)
        last = self._last
        out = render
        if last is not None and last.grey.shape == grey.shape:
            if self._dis is None:
                self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
            back = self._dis.calc(grey, last.grey, None)
            forward = self._dis.calc(last.grey, grey, None)
            out = steady_blend(render, mask, last.rgb, last.mask, back,
                               reliable_motion(back, forward, grey, last.grey), self.strength)
        self._last = _Last(grey, out, mask)
        return out
