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

Deterministic: DIS has no randomness, and its calls run on one OpenCV thread (the thread count is
restored after each call), so the output does not depend on the machine's core count.

Conventions: IUV ``(H, W, 3) uint8`` ``[I, U·255, V·255]``; grey guides ``(H, W) uint8``; flows
``(H, W, 2) float32`` (dx, dy) with pixel ``x`` of the first image at ``x + flow(x)`` in the second;
boxes ``(N, 4) float32`` xyxy.
"""

from __future__ import annotations

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
                f"{FLOW_PRESET}{FLOW_FINEST_SCALE}")


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


def carry_iuv(iuv: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``iuv`` (the keyframe) sampled at ``x + flow(x)`` for every pixel ``x`` of the new frame.

    I is nearest; U, V are bilinear where the four source pixels have the nearest pixel's label,
    else that pixel's own U, V (never mixed across parts). Outside the keyframe: background.
    """
    import cv2

    h, w = flow.shape[:2]
    gx, gy = pixel_grid(h, w)
    mx, my = gx + flow[..., 0], gy + flow[..., 1]
    near = cv2.remap(iuv, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    labels = iuv[..., 0]
    # the four bilinear sources agree when min == max over the 2x2 window anchored at floor(x)
    lo = cv2.erode(labels, np.ones((2, 2), np.uint8), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(labels, np.ones((2, 2), np.uint8), anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
    span = (hi == lo).astype(np.uint8)
    same = cv2.remap(span, np.floor(mx), np.floor(my), cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0).astype(bool)
    lo_at = cv2.remap(lo, np.floor(mx), np.floor(my), cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=0)
    smooth = same & (lo_at == near[..., 0]) & (near[..., 0] > 0)
    if smooth.any():
        lin = cv2.remap(iuv[..., 1:].astype(np.float32), mx, my, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        near[..., 1:][smooth] = np.clip(np.round(lin[smooth]), 0, 255).astype(np.uint8)
    near[near[..., 0] == 0] = 0
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


def fix_silhouette(carried: np.ndarray, key_iuv: np.ndarray, fwd: np.ndarray) -> None:
    """Give the carried person (in place) the keyframe's silhouette moved by the person's own motion.

    DIS smooths the flow across a motion boundary, so sampling alone leaves the carried person lagging
    behind by about half its motion at the silhouette (a trail on one side, a missing strip on the
    other). Here the forward flow ``fwd`` (``k → t``) of the keyframe's person pixels is replaced
    near the silhouette by the flow of the nearest interior pixel (3 px inside), each person pixel is
    moved to its nearest target pixel, and the result closed by one pixel: that is the silhouette at
    ``t``. Carried person pixels outside it become background; pixels inside it that sampling left as
    background take the IUV of the keyframe pixel moved there.
    """
    import cv2

    h, w = fwd.shape[:2]
    person = (key_iuv[..., 0] > 0).astype(np.uint8)
    if not person.any():
        return
    interior = cv2.erode(person, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    if not interior.any():
        interior = person
    # nearest interior pixel of every pixel (labels number the zero pixels of the input in raster order)
    _, nearest = cv2.distanceTransformWithLabels(1 - interior, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    iy, ix = np.nonzero(interior)
    ys, xs = np.nonzero(person)
    k = nearest[ys, xs] - 1
    flow = fwd[iy[k], ix[k]]
    tx = np.clip(np.rint(xs + flow[:, 0]), 0, w - 1).astype(np.intp)
    ty = np.clip(np.rint(ys + flow[:, 1]), 0, h - 1).astype(np.intp)
    splat = np.zeros_like(carried)
    splat[ty, tx] = key_iuv[ys, xs]
    reached = np.zeros((h, w), np.uint8)
    reached[ty, tx] = 1
    kernel = np.ones((3, 3), np.uint8)
    silhouette = cv2.erode(cv2.dilate(reached, kernel), kernel).astype(bool)
    carried[~silhouette] = 0
    holes = silhouette & (carried[..., 0] == 0)
    if holes.any():  # a hole of the splat itself (closed above) takes its nearest splatted pixel
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
        self.reset()

    def reset(self) -> None:
        self._key: DensePoseResult | None = None
        self._key_grey: np.ndarray | None = None
        self._since = 0  # frames since the keyframe
        self._height = 0.0
        self._area = 0
        self._count = 0  # frames seen
        self._key_index = -1
        self.reason = "first"  # why the next keyframe (after carry returned None)

    def keyframe(self, grey: np.ndarray, result: DensePoseResult, last: bool = False) -> Carried:
        """Make this frame (grey guide + DensePose result) the keyframe the next frames are carried from;
        ``last``: the frame already carried last (the end of a clip made a keyframe)."""
        if last:
            self._count -= 1
        self._key, self._key_grey, self._since = result, np.ascontiguousarray(grey), 0
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
        wants = ""
        key_grey = self._key_grey
        if grey.shape != key_grey.shape or histogram_intersection(grey, key_grey) < s.cut_histogram:
            self.reason = "cut"
            return None
        back = dense_flow(grey, key_grey, s.flow_side, self._dis)  # t → k
        compensated = _warp_grey(key_grey, back)
        residual = np.abs(compensated.astype(np.int16) - grey.astype(np.int16))
        if float(residual.mean()) > s.cut_residual:
            self.reason = "cut"
            return None
        carried = carry_iuv(self._key.iuv, back)
        unreliable = motion = 0.0
        err = None
        if carried[..., 0].any():
            fwd = dense_flow(key_grey, grey, s.flow_side, self._dis)  # k → t
            err = fb_error(back, fwd)
            if s.silhouette:
                fix_silhouette(carried, self._key.iuv, fwd)
        fg = carried[..., 0] > 0
        area = int(np.count_nonzero(fg))
        if self._area and abs(area - self._area) > s.max_area_change * self._area:
            self.reason = "area"
            if not lenient:
                return None
            wants = wants or "area"
        if area:
            length = np.hypot(back[..., 0][fg], back[..., 1][fg])
            unreliable = float(np.mean(err[fg] > s.fb_px + 0.1 * length))
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
        outside = ~_grow(fg | (self._key.iuv[..., 0] > 0), max(2, int(0.03 * max(grey.shape))))
        if np.count_nonzero(outside & (residual > 40)) > s.max_new_content * grey.size:
            self.reason = "new-content"
            if not lenient:
                return None
            wants = wants or "new-content"
        self._since += 1
        self._count += 1
        boxes = _carry_boxes(self._key, carried, back)
        scores = np.asarray(self._key.scores, np.float32).reshape(-1)
        result = DensePoseResult(image_hw=tuple(carried.shape[:2]), boxes=boxes, scores=scores, iuv=carried)
        err = err.astype(np.float16) if err is not None else None  # kept while the frame waits for the next keyframe
        return Carried(result, False, "", unreliable, motion, self._since, err, self._count - 1, wants)

    def carry_back(self, grey: np.ndarray, carried: Carried) -> Carried:
        """``carried`` (a frame carried forward, ``carried.distance`` frames after the previous keyframe)
        fused with the current keyframe carried *back* to it (``back_distance`` frames later).

        Per pixel, the side with the smaller forward-backward error plus 0.5 px per frame of distance
        gives I, U, V together; boxes come from the nearer keyframe (the earlier one on a tie).
        """
        s = self.settings
        back = dense_flow(grey, self._key_grey, s.flow_side, self._dis)
        later = carry_iuv(self._key.iuv, back)
        fwd = dense_flow(self._key_grey, grey, s.flow_side, self._dis)
        err = fb_error(back, fwd)
        if s.silhouette:
            fix_silhouette(later, self._key.iuv, fwd)
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

    def _since_key_for(self, carried: Carried) -> int:
        return self._key_index - carried.index

    @property
    def frames(self) -> int:
        """Frames seen so far (keyframes and carried)."""
        return self._count


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
