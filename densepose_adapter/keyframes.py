"""DensePose keyframes: run DensePose on some frames, carry their IUV to the frames between by optical flow.

:class:`KeyframePropagator` is fed the frames of a clip in order. For each frame it either asks for a
*keyframe* (the caller runs DensePose and hands the result back) or returns the IUV of the last
keyframe carried to this frame:

1. **Flow, backward.** Dense optical flow (OpenCV DIS, :data:`FLOW_PRESET`) from the new frame ``t``
   to the keyframe ``k`` (one flow per frame, straight to the keyframe: no chain of consecutive
   flows, so no drift and sub-pixel motion is never lost to rounding). Frames whose long side exceeds
   :attr:`KeyframeSettings.flow_side` get the flow of a downscaled copy, scaled back.
2. **Sampling.** The keyframe IUV is sampled at ``x + flow(x)`` by ``cv2.remap``: I nearest; U and V
   bilinear where the four source pixels share that nearest label, else the nearest pixel's value, so
   (I, U, V) always come from the same part. Pixels whose source falls outside the keyframe are
   background.
3. **Silhouette.** DIS smooths the flow across the person's outline, which alone would leave the
   carried person trailing by about half its motion; the keyframe's silhouette is moved with the
   person's interior flow instead (:func:`fix_silhouette`).
4. **Boxes.** Each keyframe box moves by the median flow of the person pixels carried from it.
5. **Checks** (any one makes the frame a keyframe instead): a scene cut (grey histograms of the frame
   and the keyframe intersect below ``cut_histogram``, or the flow-compensated mean absolute grey
   difference exceeds ``cut_residual``: 3–6 grey levels within the real clips, 23–125 across cuts);
   unreliable flow on the person (fraction of carried person pixels whose forward-backward error —
   flow ``t → k`` then ``k → t`` should come back — exceeds ``fb_px + 0.1·|flow|`` is above
   ``max_unreliable``: occlusion, disocclusion, a limb the flow lost); person area changed (carried vs
   keyframe person pixels differ by more than ``max_area_change`` relative); a new person or new
   object (fraction of the frame outside the carried people, grown by 3 %, whose flow-compensated grey
   difference exceeds 40 levels is above ``max_new_content``).
6. **Interval.** A fixed ``every = K`` makes every K-th frame (since the last keyframe) a keyframe.
   ``every = None`` (``auto``) sets the interval from the measured motion: a new keyframe once the
   person's median displacement from the keyframe exceeds ``auto_motion`` × the keyframe person's
   height, at the latest after ``auto_max`` frames (and on any check above).
7. **Both ways** (:func:`propagate`, offline): a frame between two keyframes is also carried back
   from the later one; per pixel the side with the smaller forward-backward error plus 0.5 px per
   frame of distance wins (I, U, V together). Not across a cut. The clip's last frame is a keyframe.
8. **Window** (``crop``: live streams, forward only). Steps 1–4 and the per-pixel checks run on the person's
   window only — the keyframe person's box and the last carried person's box together, grown by 6 % of
   their larger side (at least 16 px), at least :data:`MIN_WINDOW` px a side — with each flow starting
   from the previous frame's flow to the same keyframe (:func:`guided_flow`: the motion from a keyframe
   grows frame by frame, and DIS on a window alone loses a large one) and computed at ``1/n`` of the
   window's size when its long side exceeds ``flow_side`` (the silhouette then takes the flow ``3·n`` px
   inside). The cut-residual and new-content checks run on a coarse flow of the whole frame (long side
   ``check_side``, also guided), so a moving camera is still followed.

Deterministic: DIS has no randomness, and its calls run on one OpenCV thread (the thread count is
restored after each call), so the output does not depend on the machine's core count. What carrying
needs from a keyframe (2x2 label footprints, U/V as float, the silhouette's interior sources) is computed
once per keyframe (:class:`KeyIUV`); the output is the same as computing it per frame.

Conventions: IUV ``(H, W, 3) uint8`` ``[I, U·255, V·255]``; grey guides ``(H, W) uint8``; flows
``(H, W, 2) float32`` (dx, dy) with pixel ``x`` of the first image at ``x + flow(x)`` in the second;
boxes ``(N, 4) float32`` xyxy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from densepose_adapter.temporal import pixel_grid
from densepose_adapter.types import DensePoseResult

#: DIS preset (measured on CPU, docs/temporal.md): ultrafast, refined down to half resolution.
FLOW_PRESET = "ultrafast"
FLOW_FINEST_SCALE = 1


@dataclass(frozen=True)
class KeyframeSettings:
    """When to run DensePose and how IUV is carried between keyframes (see the module docstring).

    Attributes:
        every: keyframe interval K (1 = every frame is a keyframe); ``None`` = ``auto``.
        auto_max: longest interval ``auto`` allows.
        auto_motion: ``auto`` takes a keyframe once the person moved this fraction of its box height.
        fb_px: forward-backward error (pixels, plus 10 % of the flow length) above which a pixel's
            flow is unreliable.
        max_unreliable: fraction of carried person pixels with unreliable flow that forces a keyframe.
        max_area_change: relative change of the person area that forces a keyframe.
        max_new_content: fraction of the frame outside the people that changed (after motion
            compensation) that forces a keyframe (a new person, something in front).
        cut_histogram: grey-histogram intersection below which the frame is a cut.
        cut_residual: flow-compensated mean absolute grey difference (0..255) above which it is a cut.
        flow_side: long side the flow is computed at (larger frames are downscaled for it).
        silhouette: move the keyframe's silhouette with the person's interior flow (:func:`fix_silhouette`).
        crop: carry on the person's window only (live streams, forward only): the flows both ways, the
            sampling, the silhouette and the per-pixel checks run on the keyframe person's box and the
            last carried person's box together, grown by ``crop_margin`` of their larger side (at least
            16 px); ``flow_side`` is then the long side of that window's flow. The cut-residual and
            new-content checks run on a coarse flow of the whole frame (long side ``check_side``), so a
            moving camera is still followed. Off (offline keyframes): everything on the whole frame.
        crop_margin: see ``crop``.
        check_side: see ``crop``.
    """

    every: int | None = 1
    auto_max: int = 5
    auto_motion: float = 0.04
    fb_px: float = 1.0
    max_unreliable: float = 0.6
    max_area_change: float = 0.25
    max_new_content: float = 0.08
    cut_histogram: float = 0.6
    cut_residual: float = 15.0
    flow_side: int = 512
    silhouette: bool = True
    crop: bool = False
    crop_margin: float = 0.06
    check_side: int = 128

    def __post_init__(self):
        if self.every is not None and int(self.every) < 1:
            raise ValueError(f"keyframe interval must be at least 1, got {self.every}")

    @property
    def auto(self) -> bool:
        return self.every is None

    @property
    def enabled(self) -> bool:
        """False for ``every = 1`` (DensePose on every frame: nothing to carry)."""
        return self.every != 1

    def key(self) -> str:
        """A string that changes whenever the output could change (for caches)."""
        every = "auto" if self.auto else str(int(self.every))
        return (f"keyframes-v1:k{every}:am{self.auto_max}:{self.auto_motion:g}:fb{self.fb_px:g}:"
                f"u{self.max_unreliable:g}:a{self.max_area_change:g}:n{self.max_new_content:g}:"
                f"h{self.cut_histogram:g}:r{self.cut_residual:g}:s{self.flow_side}:{'sil:' if self.silhouette else ''}"
                f"{FLOW_PRESET}{FLOW_FINEST_SCALE}"
                + (f":crop{self.crop_margin:g}:m{MIN_WINDOW}:c{self.check_side}" if self.crop else ""))


def parse_every(text: str | int | None) -> int | None:
    """``K`` (an integer ≥ 1) or ``auto`` → interval (``None`` for auto).

    Raises:
        ValueError: one line, for anything else.
    """
    value = str(text).strip().lower()
    if value == "auto":
        return None
    if value.lstrip("+-").isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError(f"expected a whole number of frames (1 = every frame) or auto, got {text!r}")


# -- flow --------------------------------------------------------------------------------------------

def _dis():
    import cv2

    preset = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
              "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[FLOW_PRESET]
    dis = cv2.DISOpticalFlow_create(preset)
    dis.setFinestScale(FLOW_FINEST_SCALE)
    return dis


def dense_flow(g0: np.ndarray, g1: np.ndarray, flow_side: int = 512, dis=None) -> np.ndarray:
    """DIS flow ``g0 → g1`` (grey ``(H, W) uint8``) at full resolution, on one OpenCV thread.

    Frames whose long side exceeds ``flow_side`` are downscaled for the flow (area), the flow scaled back.
    """
    import cv2

    dis = dis or _dis()
    h, w = g0.shape[:2]
    scale = min(1.0, float(flow_side) / max(h, w))
    threads = cv2.getNumThreads()
    if threads != 1:  # setting it costs ~1 ms even when unchanged (a live stream keeps it at 1)
        cv2.setNumThreads(1)
    try:
        if scale < 1.0:
            size = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
            small = dis.calc(cv2.resize(g0, size, interpolation=cv2.INTER_AREA),
                             cv2.resize(g1, size, interpolation=cv2.INTER_AREA), None)
            flow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
            flow[..., 0] *= w / size[0]
            flow[..., 1] *= h / size[1]
            return flow
        return dis.calc(np.ascontiguousarray(g0), np.ascontiguousarray(g1), None)
    finally:
        if threads != 1:
            cv2.setNumThreads(threads)


def reduction(shape: tuple[int, int], side: int) -> int:
    """The smallest whole factor ``n`` that brings the long side of ``shape`` to at most ``side`` (≥ 1)."""
    return max(1, -(-max(shape[:2]) // max(1, int(side))))


def shrink(image: np.ndarray, n: int) -> np.ndarray:
    """``image`` reduced ``n`` times (area average; OpenCV's fast path for whole factors), size rounded down."""
    import cv2

    if n <= 1:
        return np.ascontiguousarray(image)
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, w // n), max(1, h // n)), interpolation=cv2.INTER_AREA)


def guided_flow(g0: np.ndarray, g1: np.ndarray, n: int, dis, init: np.ndarray) -> np.ndarray:
    """DIS flow ``g0 → g1`` computed at ``1/n`` of their size (:func:`shrink`) from the first guess ``init``
    (``(H, W, 2) float32``, zeros for none; DIS refines it from its coarsest scale), returned at full size,
    on one OpenCV thread.

    A live stream gives the previous frame's flow to the same keyframe, so a motion that grew over many
    frames is still followed. ``dis`` must always be given a guess (OpenCV 5.1's DIS crashes on a call
    without one after a call with one at another size).
    """
    import cv2

    h, w = g0.shape[:2]
    threads = cv2.getNumThreads()
    if threads != 1:
        cv2.setNumThreads(1)
    with_init = hasattr(dis, "setUseInitialFlow")  # OpenCV 4 needs telling; 5 uses a given flow as is
    if with_init:
        dis.setUseInitialFlow(True)
    try:
        a, b = shrink(g0, n), shrink(g1, n)
        guess = np.array(init, np.float32, order="C") if n == 1 else shrink(init, n) / np.float32(n)
        flow = dis.calc(a, b, guess)
        if n == 1:
            return flow
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        flow *= np.float32([w / a.shape[1], h / a.shape[0]])
        return flow
    finally:
        if with_init:
            dis.setUseInitialFlow(False)
        if threads != 1:
            cv2.setNumThreads(threads)


class KeyIUV:
    """What carrying one keyframe IUV needs, computed once per keyframe (:func:`carry_iuv`,
    :func:`fix_silhouette`); :meth:`window` gives the same for a crop that holds the whole person."""

    def __init__(self, iuv: np.ndarray, _parts=None):
        import cv2

        self.iuv = iuv
        if _parts is not None:
            self.lo_span, self.uv, self._sources, self.box = _parts
            return
        labels = iuv[..., 0]
        lo = cv2.erode(labels, _K2, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
        hi = cv2.dilate(labels, _K2, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
        #: (H, W, 2) uint8: the smallest label of each pixel's 2x2 footprint (x..x+1, y..y+1), and 1 where its
        #: four labels are equal (bilinear U, V are safe there)
        self.lo_span = np.dstack([lo, (hi == lo).astype(np.uint8)])
        self.uv = iuv[..., 1:].astype(np.float32)
        self._sources: dict[int, tuple | None] = {}
        rows, cols = np.flatnonzero((labels > 0).any(axis=1)), np.flatnonzero((labels > 0).any(axis=0))
        #: ``(y0, y1, x0, x1)`` of the person pixels (end exclusive), ``None`` without a person
        self.box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) if len(rows) else None

    def sources(self, inset: int = 3):
        """:func:`silhouette_sources` of the keyframe person (cached per ``inset``)."""
        if inset not in self._sources:
            self._sources[inset] = silhouette_sources(self.iuv[..., 0] > 0, inset)
        return self._sources[inset]

    def window(self, y0: int, y1: int, x0: int, x1: int, inset: int = 3) -> "KeyIUV":
        """The same for the window ``[y0, y1) × [x0, x1)``, which must hold every person pixel (its
        silhouette sources for ``inset`` only)."""
        win = (slice(y0, y1), slice(x0, x1))
        sources = self.sources(inset)
        if sources is not None:
            ys, xs, iy, ix = sources
            sources = (ys - y0, xs - x0, iy - y0, ix - x0)
        box = None if self.box is None else (self.box[0] - y0, self.box[1] - y0, self.box[2] - x0, self.box[3] - x0)
        return KeyIUV(self.iuv[win], (self.lo_span[win], self.uv[win], {inset: sources}, box))


_K2 = np.ones((2, 2), np.uint8)


def carry_iuv(iuv: np.ndarray, flow: np.ndarray, key: KeyIUV | None = None) -> np.ndarray:
    """``iuv`` (the keyframe) sampled at ``x + flow(x)`` for every pixel ``x`` of the new frame.

    I is nearest; U, V are bilinear where the four source pixels have the nearest pixel's label,
    else that pixel's own U, V (never mixed across parts). Outside the keyframe: background.
    ``key``: ``KeyIUV(iuv)`` when already computed (the same output, faster).
    """
    import cv2

    key = key if key is not None else KeyIUV(iuv)
    h, w = flow.shape[:2]
    gx, gy = pixel_grid(h, w)
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    near = cv2.remap(iuv, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # (min label, all four equal) of the 2x2 footprint at floor(x): one remap of both planes
    span = cv2.remap(key.lo_span, np.floor(mx), np.floor(my), cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)
    labels = near[..., 0]
    smooth = (span[..., 1] != 0) & (span[..., 0] == labels) & (labels > 0)
    if smooth.any():
        lin = cv2.remap(key.uv, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        np.copyto(near[..., 1:], np.clip(np.round(lin), 0, 255).astype(np.uint8), where=smooth[..., None])
    near *= (labels > 0)[..., None]
    return near


def _warp_grey(grey: np.ndarray, flow: np.ndarray) -> np.ndarray:
    import cv2

    gx, gy = pixel_grid(*flow.shape[:2])
    return cv2.remap(grey, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def histogram_intersection(g0: np.ndarray, g1: np.ndarray) -> float:
    """Normalised 32-bin grey histogram intersection (1 = same histogram)."""
    h0 = np.bincount((g0[::4, ::4] >> 3).ravel(), minlength=32).astype(np.float64)
    h1 = np.bincount((g1[::4, ::4] >> 3).ravel(), minlength=32).astype(np.float64)
    return float(np.minimum(h0 / h0.sum(), h1 / h1.sum()).sum())


def fb_error(back: np.ndarray, fwd: np.ndarray) -> np.ndarray:
    """Forward-backward error ``|back(x) + fwd(x + back(x))|`` (pixels) of flows ``t → k`` and ``k → t``."""
    import cv2

    gx, gy = pixel_grid(*back.shape[:2])
    there = cv2.remap(fwd, gx + back[..., 0], gy + back[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    total = back + there
    return np.hypot(total[..., 0], total[..., 1])


def silhouette_sources(person: np.ndarray, inset: int = 3):
    """``(ys, xs, iy, ix)``: the person pixels and, for each, its nearest interior pixel (``inset`` px inside);
    ``None`` without a person (:func:`fix_silhouette`)."""
    import cv2

    person = person.astype(np.uint8)
    if not person.any():
        return None
    interior = cv2.erode(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * inset + 1, 2 * inset + 1)))
    if not interior.any():
        interior = person
    # nearest interior pixel of every pixel (labels number the zero pixels of the input in raster order)
    _, nearest = cv2.distanceTransformWithLabels(1 - interior, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    iy, ix = np.nonzero(interior)
    ys, xs = np.nonzero(person)
    k = nearest[ys, xs] - 1
    return ys, xs, iy[k], ix[k]


def fix_silhouette(carried: np.ndarray, key_iuv: np.ndarray, fwd: np.ndarray, key: KeyIUV | None = None,
                   inset: int = 3) -> None:
    """Give the carried person (in place) the keyframe's silhouette moved by the person's own motion.

    DIS smooths the flow across a motion boundary, so sampling alone leaves the carried person lagging
    behind by about half its motion at the silhouette (a trail on one side, a missing strip on the
    other). Here the forward flow ``fwd`` (``k → t``) of the keyframe's person pixels is replaced
    near the silhouette by the flow of the nearest interior pixel (``inset`` px inside: 3, more for a flow
    computed at a lower resolution, which smooths across a wider band), each person pixel is
    moved to its nearest target pixel, and the result closed by one pixel: that is the silhouette at
    ``t``. Carried person pixels outside it become background; pixels inside it that sampling left as
    background take the IUV of the keyframe pixel moved there. ``key``: ``KeyIUV(key_iuv)`` when
    already computed (the same output, faster).
    """
    import cv2

    h, w = fwd.shape[:2]
    sources = key.sources(inset) if key is not None else silhouette_sources(key_iuv[..., 0] > 0, inset)
    if sources is None:
        return
    ys, xs, sy, sx = sources
    flow = fwd[sy, sx]
    tx = np.clip(np.rint(xs + flow[:, 0]), 0, w - 1).astype(np.intp)
    ty = np.clip(np.rint(ys + flow[:, 1]), 0, h - 1).astype(np.intp)
    reached = np.zeros((h, w), np.uint8)
    reached[ty, tx] = 1
    kernel = np.ones((3, 3), np.uint8)
    silhouette = cv2.erode(cv2.dilate(reached, kernel), kernel)
    carried *= silhouette[..., None]
    holes = (silhouette != 0) & (carried[..., 0] == 0)
    if holes.any():  # a hole of the splat itself (closed above) takes its nearest splatted pixel
        splat = np.zeros_like(carried)
        splat[ty, tx] = key_iuv[ys, xs]
        filled = splat[..., 0] > 0
        _, near = cv2.distanceTransformWithLabels((~filled).astype(np.uint8), cv2.DIST_L2, 5,
                                                  labelType=cv2.DIST_LABEL_PIXEL)
        fy, fx = np.nonzero(filled)
        hy, hx = np.nonzero(holes)
        j = near[hy, hx] - 1
        carried[hy, hx] = splat[fy[j], fx[j]]


def _carry_boxes(key: DensePoseResult, carried: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Each keyframe box shifted by the median displacement of the person pixels carried from it."""
    boxes = np.asarray(key.boxes, np.float32).reshape(-1, 4)
    if not len(boxes):
        return boxes
    h, w = flow.shape[:2]
    gx, gy = pixel_grid(h, w)
    sx, sy = gx + flow[..., 0], gy + flow[..., 1]  # where each new pixel comes from in the keyframe
    fg = carried[..., 0] > 0
    out = boxes.copy()
    for n, (x0, y0, x1, y1) in enumerate(boxes):
        inside = fg & (sx >= x0) & (sx < x1) & (sy >= y0) & (sy < y1)
        if inside.any():
            out[n] += np.array([-np.median(flow[..., 0][inside]), -np.median(flow[..., 1][inside])] * 2,
                               np.float32)
    return out


# -- the propagator ------------------------------------------------------------------------------------

@dataclass
class Carried:
    """One frame's outcome: its result and, for a carried frame, the measurements behind it."""

    result: DensePoseResult
    keyframe: bool
    reason: str = ""  # why a keyframe (first, interval, cut, unreliable, area, new-content, motion)
    unreliable: float = 0.0
    motion: float = 0.0  # person's median displacement from the keyframe, in pixels
    distance: int = 0  # frames after its keyframe
    error: np.ndarray | None = None  # (H, W) forward-backward error of its flow (carried frames)
    index: int = 0  # position in the stream (0-based)
    wants: str = ""  # lenient carry only: the check that asked for a new keyframe (the frame was carried anyway)


class KeyframePropagator:
    """Stateful, frame by frame (see the module docstring). Usage::

        prop = KeyframePropagator(settings)
        for grey in frames:
            out = prop.carry(grey)           # None: this frame must be a keyframe
            if out is None:
                out = prop.keyframe(grey, densepose_result)
    """

    def __init__(self, settings: KeyframeSettings = KeyframeSettings()):
        self.settings = settings
        self._dis = _dis()
        self._dis_coarse = _dis() if settings.crop else None
        self.reset()

    def reset(self) -> None:
        self._key: DensePoseResult | None = None
        self._key_prep: KeyIUV | None = None
        self._key_grey: np.ndarray | None = None
        self._key_small: np.ndarray | None = None  # crop: the keyframe's grey at check_side
        self._last_box: tuple[int, int, int, int] | None = None  # crop: the last carried person's box
        self._prev_coarse: np.ndarray | None = None  # crop: the last coarse flow t → k
        self._prev_flows = None  # crop: (window, flow t → k, flow k → t) of the last carried frame
        self._since = 0  # frames since the keyframe
        self._height = 0.0
        self._area = 0
        self._count = 0  # frames seen
        self._key_index = -1
        self.reason = "first"  # why the next keyframe (after carry returned None)

    def keyframe(self, grey: np.ndarray, result: DensePoseResult, last: bool = False,
                 prepared: KeyIUV | None = None) -> Carried:
        """Make this frame (grey guide + DensePose result) the keyframe the next frames are carried from;
        ``last``: the frame already carried last (the end of a clip made a keyframe); ``prepared``:
        ``KeyIUV(result.iuv)`` when already made (a live stream makes it in its DensePose thread)."""
        if last:
            self._count -= 1
        self._key, self._key_grey, self._since = result, np.ascontiguousarray(grey), 0
        self._key_prep = prepared  # else made at the first carry (a keyframe nothing is carried from costs nothing)
        self._key_small, self._last_box, self._prev_coarse, self._prev_flows = None, None, None, None
        fg = result.iuv[..., 0] > 0
        self._area = int(np.count_nonzero(fg))
        ys = np.nonzero(fg.any(axis=1))[0]
        self._height = float(ys[-1] - ys[0] + 1) if len(ys) else 0.0
        self._key_index = self._count
        self._count += 1
        return Carried(result, True, self.reason, index=self._key_index)

    def carry(self, grey: np.ndarray, lenient: bool = False) -> Carried | None:
        """The keyframe carried to this frame, or ``None`` when it must be a keyframe (``self.reason`` says why).

        ``lenient`` (live streams, where DensePose runs asynchronously and the next keyframe comes later):
        no interval check (the caller paces keyframes), and a failed reliability check (area, unreliable,
        motion, new-content) still returns the carried frame, with the check's name in ``Carried.wants``;
        only a missing keyframe (``first``) or a cut returns ``None``.
        """
        s = self.settings
        if self._key is None:
            self.reason = "first"
            return None
        if not lenient and s.every is not None and self._since + 1 >= s.every:
            self.reason = "interval"
            return None
        if not lenient and s.auto and self._since + 1 >= s.auto_max:
            self.reason = "interval"
            return None
        if grey.shape != self._key_grey.shape or histogram_intersection(grey, self._key_grey) < s.cut_histogram:
            self.reason = "cut"
            return None
        m = self._measure_window(grey) if s.crop else self._measure(grey)
        if m is None:
            self.reason = "cut"
            return None
        wants = ""
        unreliable = motion = 0.0
        area = int(np.count_nonzero(m.fg))
        if self._area and abs(area - self._area) > s.max_area_change * self._area:
            self.reason = "area"
            if not lenient:
                return None
            wants = wants or "area"
        if area:
            length = np.hypot(m.back[..., 0][m.fg], m.back[..., 1][m.fg])
            unreliable = float(np.mean(m.err[m.fg] > s.fb_px + 0.1 * length))
            motion = float(np.median(length))
            if unreliable > s.max_unreliable:
                self.reason = "unreliable"
                if not lenient:
                    return None
                wants = wants or "unreliable"
            if s.auto and self._height and motion > s.auto_motion * self._height:
                self.reason = "motion"
                if not lenient:
                    return None
                wants = wants or "motion"
        if m.new_content() > s.max_new_content:
            self.reason = "new-content"
            if not lenient:
                return None
            wants = wants or "new-content"
        self._since += 1
        self._count += 1
        result = DensePoseResult(image_hw=tuple(m.carried.shape[:2]), boxes=m.boxes(),
                                 scores=np.asarray(self._key.scores, np.float32).reshape(-1), iuv=m.carried)
        if s.crop:
            self._last_box = m.person_box
        # kept while the frame waits for the next keyframe (carry_back; a live stream has none)
        err = None if lenient and s.crop else m.full_error()
        return Carried(result, False, "", unreliable, motion, self._since, err, self._count - 1, wants)

    def _measure(self, grey: np.ndarray) -> "_Measured | None":
        """Flows, carried IUV and checks' inputs on the whole frame (``None``: a cut by the residual)."""
        s, key_grey = self.settings, self._key_grey
        back = dense_flow(grey, key_grey, s.flow_side, self._dis)  # t → k
        compensated = _warp_grey(key_grey, back)
        residual = np.abs(compensated.astype(np.int16) - grey.astype(np.int16))
        if float(residual.mean()) > s.cut_residual:
            return None
        carried = carry_iuv(self._key.iuv, back, self._prep())
        err = None
        if carried[..., 0].any():
            fwd = dense_flow(key_grey, grey, s.flow_side, self._dis)  # k → t
            err = fb_error(back, fwd)
            if s.silhouette:
                fix_silhouette(carried, self._key.iuv, fwd, self._prep())
        fg = carried[..., 0] > 0

        def new_content() -> float:
            outside = ~_grow(fg | (self._key.iuv[..., 0] > 0), max(2, int(0.03 * max(grey.shape))))
            return np.count_nonzero(outside & (residual > 40)) / grey.size

        return _Measured(carried, fg, back, err, new_content, lambda: _carry_boxes(self._key, carried, back),
                         lambda: err.astype(np.float16) if err is not None else None)

    def _measure_window(self, grey: np.ndarray) -> "_Measured | None":
        """:meth:`_measure` for ``crop``: the cut and new-content checks on a coarse flow of the whole frame
        (long side ``check_side``), the IUV carried on the person's window only (:meth:`_window`)."""
        import cv2

        s, key_grey = self.settings, self._key_grey
        h, w = grey.shape
        n_coarse = reduction(grey.shape, s.check_side)
        small = shrink(grey, n_coarse)
        if self._key_small is None:
            self._key_small = shrink(key_grey, n_coarse)
        guess = self._prev_coarse if self._prev_coarse is not None else np.zeros((*small.shape, 2), np.float32)
        coarse = guided_flow(small, self._key_small, 1, self._dis_coarse, guess)  # t → k
        self._prev_coarse = coarse
        residual = np.abs(_warp_grey(self._key_small, coarse).astype(np.int16) - small.astype(np.int16))
        if float(residual.mean()) > s.cut_residual:
            return None
        carried = np.zeros_like(self._key.iuv)
        window = self._window(h, w)
        if window is None:  # nobody in the keyframe: nothing to carry
            y0 = y1 = x0 = x1 = 0
            back = np.zeros((0, 0, 2), np.float32)
            err = np.zeros((0, 0), np.float32)
            part = carried[:0, :0]
        else:
            y0, y1, x0, x1 = window
            win = (slice(y0, y1), slice(x0, x1))
            g_t, g_k = np.ascontiguousarray(grey[win]), np.ascontiguousarray(key_grey[win])
            n = reduction(g_t.shape, s.flow_side)
            inset = 3 * n  # the silhouette's flow from 3 flow pixels inside, as at full resolution
            key = self._prep().window(y0, y1, x0, x1, inset)
            # each flow starts from the previous frame's flow to the same keyframe: the motion from a
            # keyframe grows frame by frame, and DIS on a window alone loses a large one
            prev_window, prev_back, prev_fwd = self._prev_flows or (None, None, None)
            back = guided_flow(g_t, g_k, n, self._dis, _reframe(prev_back, prev_window, window))  # t → k
            part = carry_iuv(key.iuv, back, key)
            err = np.zeros(back.shape[:2], np.float32)
            fwd = None
            if part[..., 0].any():
                fwd = guided_flow(g_k, g_t, n, self._dis, _reframe(prev_fwd, prev_window, window))  # k → t
                err = fb_error(back, fwd)
                if s.silhouette:
                    fix_silhouette(part, key.iuv, fwd, key, inset)
            carried[win] = part
            self._prev_flows = (window, back, fwd)
        fg = part[..., 0] > 0

        def new_content() -> float:
            people = (carried[..., 0] > 0) | (self._key.iuv[..., 0] > 0)
            people = cv2.resize(people.astype(np.uint8), small.shape[::-1], interpolation=cv2.INTER_AREA) > 0
            outside = ~_grow(people, max(2, int(0.03 * max(small.shape))))
            return np.count_nonzero(outside & (residual > 40)) / small.size

        def boxes() -> np.ndarray:
            key_boxes = np.asarray(self._key.boxes, np.float32).reshape(-1, 4)
            shift = np.array([x0, y0, x0, y0], np.float32)
            moved = _carry_boxes(dataclasses.replace(self._key, boxes=key_boxes - shift), part, back)
            return moved + shift if len(moved) else moved

        def full_error() -> np.ndarray:
            full = np.full((h, w), np.finfo(np.float16).max, np.float16)  # outside the window: not carried
            full[y0:y1, x0:x1] = err
            return full

        person_box = None
        if fg.any():
            rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
            person_box = (y0 + int(rows[0]), y0 + int(rows[-1]) + 1, x0 + int(cols[0]), x0 + int(cols[-1]) + 1)
        return _Measured(carried, fg, back, err, new_content, boxes, full_error, person_box)

    def _window(self, h: int, w: int) -> tuple[int, int, int, int] | None:
        """``(y0, y1, x0, x1)``: the keyframe person's box and the last carried person's box together,
        grown by ``crop_margin`` of their larger side (at least 16 px) and rounded out to 8 px; ``None``
        without a keyframe person."""
        key_box = self._prep().box
        if key_box is None:
            return None
        boxes = [key_box] + ([self._last_box] if self._last_box is not None else [])
        y0, y1 = min(b[0] for b in boxes), max(b[1] for b in boxes)
        x0, x1 = min(b[2] for b in boxes), max(b[3] for b in boxes)
        margin = max(16, int(self.settings.crop_margin * max(y1 - y0, x1 - x0)))
        y0, y1 = _span(y0 - margin, y1 + margin, h)
        x0, x1 = _span(x0 - margin, x1 + margin, w)
        return y0, y1, x0, x1

    def carry_back(self, grey: np.ndarray, carried: Carried) -> Carried:
        """``carried`` (a frame carried forward, ``carried.distance`` frames after the previous keyframe)
        fused with the current keyframe carried *back* to it (``back_distance`` frames later).

        Per pixel, the side with the smaller forward-backward error plus 0.5 px per frame of distance
        gives I, U, V together; boxes come from the nearer keyframe (the earlier one on a tie).
        """
        s = self.settings
        back = dense_flow(grey, self._key_grey, s.flow_side, self._dis)
        later = carry_iuv(self._key.iuv, back, self._prep())
        fwd = dense_flow(self._key_grey, grey, s.flow_side, self._dis)
        err = fb_error(back, fwd)
        if s.silhouette:
            fix_silhouette(later, self._key.iuv, fwd, self._prep())
        ahead = self._since_key_for(carried)
        early_err = carried.error if carried.error is not None else np.zeros_like(err)
        take_later = (err + 0.5 * ahead) < (early_err.astype(np.float32) + 0.5 * carried.distance)
        iuv = np.where(take_later[..., None], later, carried.result.iuv)
        if ahead < carried.distance:
            boxes = _carry_boxes(self._key, later, back)
            scores = np.asarray(self._key.scores, np.float32).reshape(-1)
        else:
            boxes, scores = carried.result.boxes, carried.result.scores
        result = DensePoseResult(image_hw=tuple(iuv.shape[:2]), boxes=boxes, scores=scores, iuv=iuv)
        return Carried(result, False, "", carried.unreliable, carried.motion, carried.distance, None, carried.index)

    def _prep(self) -> KeyIUV:
        if self._key_prep is None:
            self._key_prep = KeyIUV(self._key.iuv)
        return self._key_prep

    def _since_key_for(self, carried: Carried) -> int:
        return self._key_index - carried.index

    @property
    def frames(self) -> int:
        """Frames seen so far (keyframes and carried)."""
        return self._count


@dataclass
class _Measured:
    """What :meth:`KeyframePropagator.carry` checks: the carried IUV (whole frame) and, on the window the flow
    ran on, the person mask, the flow ``t → k`` and its forward-backward error; the rest on demand."""

    carried: np.ndarray
    fg: np.ndarray
    back: np.ndarray
    err: np.ndarray | None
    new_content: Callable[[], float]  # fraction of the frame outside the people that changed
    boxes: Callable[[], np.ndarray]
    full_error: Callable[[], np.ndarray | None]  # (H, W) float16 error for carry_back
    person_box: tuple[int, int, int, int] | None = None  # crop: (y0, y1, x0, x1) of the carried person


#: Smallest side of a crop window (``KeyframeSettings.crop``; the frame's side when smaller): DIS builds
#: fewer pyramid levels on a narrow image (OpenCV picks them from the width) and loses a motion of a few
#: pixels on a small person.
MIN_WINDOW = 160


def _span(a: int, b: int, size: int) -> tuple[int, int]:
    """``[a, b)`` rounded out to multiples of 8, widened about its centre to at least :data:`MIN_WINDOW`, kept
    inside ``[0, size)``."""
    want = min(size, MIN_WINDOW)
    if b - a < want:
        a = (a + b - want) // 2
        b = a + want
    a, b = a // 8 * 8, -(-b // 8) * 8
    if a < 0:
        a, b = 0, b - a
    if b > size:
        a, b = max(0, a - (b - size)), size
    return a, b


def _reframe(flow: np.ndarray | None, old: tuple | None, new: tuple) -> np.ndarray:
    """``flow`` on window ``old`` ``(y0, y1, x0, x1)`` moved onto window ``new``, zero where ``old`` did not
    reach (all zero without a flow)."""
    if flow is not None and old == new:
        return flow
    out = np.zeros((new[1] - new[0], new[3] - new[2], 2), np.float32)
    if flow is None or old is None:
        return out
    y0, y1, x0, x1 = max(old[0], new[0]), min(old[1], new[1]), max(old[2], new[2]), min(old[3], new[3])
    if y0 < y1 and x0 < x1:
        out[y0 - new[0]:y1 - new[0], x0 - new[2]:x1 - new[2]] = flow[y0 - old[0]:y1 - old[0], x0 - old[2]:x1 - old[2]]
    return out


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


#: keyframe reasons after which frames before the keyframe are not fused with it (a different scene)
NO_FUSE = ("cut", "new-content")


def propagate(frames: Iterable[tuple[object, np.ndarray]], densepose: Callable[[object], DensePoseResult],
              settings: KeyframeSettings = KeyframeSettings(),
              both_ways: bool = True) -> Iterator[tuple[object, Carried]]:
    """``(item, Carried)`` for every ``(item, grey)`` of ``frames``, in order; ``densepose(item)`` is called on
    keyframes only.

    ``both_ways``: frames between two keyframes are fused with the later keyframe carried back to them
    (:meth:`KeyframePropagator.carry_back`), unless that keyframe was forced by a cut or new content;
    frames after the last keyframe are carried forward only. Look-ahead: a frame waits for the next
    keyframe, at most ``every`` (or ``auto_max``) − 1 frames. With ``both_ways`` the clip's last frame is a
    keyframe too (when frames wait for one).
    """
    prop = KeyframePropagator(settings)
    waiting: list = []  # (item, grey, Carried) carried forward, waiting for the next keyframe
    for item, grey in frames:
        carried = prop.carry(grey)
        if carried is not None:
            if both_ways:
                waiting.append((item, grey, carried))
            else:
                yield item, carried
            continue
        key = prop.keyframe(grey, densepose(item))
        fuse = prop.reason not in NO_FUSE
        for w_item, w_grey, w_carried in waiting:
            yield w_item, (prop.carry_back(w_grey, w_carried) if fuse else _without_error(w_carried))
        waiting = []
        yield item, key
    if waiting and both_ways:  # the clip's last frame becomes a keyframe: its predecessors are fused with it
        item, grey, _ = waiting.pop()
        prop.reason = "last"
        key = prop.keyframe(grey, densepose(item), last=True)
        for w_item, w_grey, w_carried in waiting:
            yield w_item, prop.carry_back(w_grey, w_carried)
        waiting = []
        yield item, key
    for w_item, _, w_carried in waiting:
        yield w_item, _without_error(w_carried)


def _without_error(carried: Carried) -> Carried:
    carried.error = None
    return carried
