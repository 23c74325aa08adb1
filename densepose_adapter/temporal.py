"""Temporal filtering of per-frame DensePose IUV: motion-compensated label vote + UV smoothing.

Per-frame DensePose flickers: part labels flip near part borders, U/V jitter, a limb vanishes for a
frame. :class:`TemporalIUVFilter` stabilises a clip without lagging behind real motion:

1. **Motion.** Dense optical flow (OpenCV DIS) between consecutive *guide* images, both ways, — the video frames
   when they are known (:func:`guide_from_rgb`), else an image drawn from the IUV itself
   (:func:`guide_from_iuv`). The flow from frame ``t`` to a neighbour ``s`` of its window is the
   chain of the consecutive flows in between.
2. **Label vote.** Every frame ``s`` of the window ``[t - radius, t + radius]`` is warped onto frame
   ``t`` (nearest neighbour). Where the frames disagree, each label that a frame has at the pixel
   (background included) scores 4 per such frame plus 1 per occurrence among those frames' 4-neighbours
   of the pixel; the frame's own label breaks ties. A pixel can only get a label that some frame of its
   window has there (after motion compensation): no person is invented where no frame has one, a limb
   missing from a single frame comes back from its neighbours, and frames that all agree are kept.
3. **UV.** On pixels whose voted label a neighbour shares there, U and V are a weighted mean of the
   motion-compensated samples (bilinear where the four source pixels have that label, nearest
   otherwise), weighted by ``exp(-d² / 2τ²)`` with ``d`` the distance in (U, V)·255 to the frame's own
   value: a zero-phase window average where the motion is followed, falling back to the frame's own
   value where it is not (one-euro-like: no lag).
4. **Cuts.** Between consecutive frames a scene change is declared when their guides' grey-level
   histograms differ (intersection below ``cut_histogram``) or when both have a person and fewer than
   ``cut_agreement`` of the person pixels keep their label under the flow. Windows never cross a cut.

The output for frame ``t`` depends only on frames ``t - radius … t + radius`` (and which of their
consecutive pairs are cuts), so :func:`filter_sequence` (offline, whole clip) and
:class:`TemporalIUVFilter` (streaming: ``radius`` frames of look-ahead, at most ``2·radius + 2``
frames in memory) give identical results.

Conventions: IUV images are ``(H, W, 3) uint8`` ``[I, U·255, V·255]`` (I = 0 background, 1..24 parts);
guide images ``(H, W) uint8`` grey; flows ``(H, W, 2) float32`` (dx, dy) such that pixel ``x`` of the
first image is at ``x + flow(x)`` in the second.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

INVALID = 255  # label of a warped pixel that fell outside its frame (takes no part in the vote)


@dataclass(frozen=True)
class TemporalSettings:
    """Filter settings.

    Attributes:
        radius: frames on each side of the window (the streaming look-ahead); 0 disables the filter.
        uv_tau: UV similarity scale in U·255 units: samples further than a few ``uv_tau`` from the frame's
            own value hardly count.
        cut_histogram: consecutive guides whose normalised 32-bin histogram intersection is below this
            are a scene cut.
        cut_agreement: consecutive frames (both with a person) of which fewer than this fraction of the
            person pixels keep their label under the flow are a scene cut.
    """

    radius: int = 2
    uv_tau: float = 12.0
    cut_histogram: float = 0.6
    cut_agreement: float = 0.25

    def key(self) -> str:
        """A string that changes whenever the output could change (for caches)."""
        return (f"temporal-v1:r{self.radius}:tau{self.uv_tau:g}:h{self.cut_histogram:g}:"
                f"a{self.cut_agreement:g}")


def guide_from_rgb(image: np.ndarray) -> np.ndarray:
    """Grey guide ``(H, W) uint8`` of an ``(H, W, 3) uint8`` frame (RGB; BGR gives a close variant)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def guide_from_iuv(iuv: np.ndarray) -> np.ndarray:
    """Grey guide ``(H, W) uint8`` drawn from an IUV image when no video frame is known.

    Part index and the (blurred) chart coordinates give the flow some texture inside the person.
    """
    import cv2

    i = iuv[..., 0].astype(np.float32)
    tex = cv2.GaussianBlur(iuv[..., 1:].astype(np.float32), (0, 0), 2.0)
    grey = np.where(i > 0, 40 + 6 * i + 0.15 * (tex[..., 0] + tex[..., 1]), 0)
    return np.clip(grey, 0, 255).astype(np.uint8)


class _Motion:
    """Consecutive-frame flows and cut flags (one DIS instance; not thread-safe)."""

    def __init__(self, settings: TemporalSettings):
        import cv2

        self.settings = settings
        # ultrafast preset refined down to half resolution: small fast limbs are followed (the
        # presets stop at a quarter, which misses them), at about a third of the fast preset's cost
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._dis.setFinestScale(1)

    def pair(self, g0: np.ndarray, g1: np.ndarray, iuv0: np.ndarray, iuv1: np.ndarray, forward: bool = True):
        """``(forward 0→1, backward 1→0, cut)`` for two consecutive frames (flows ``None`` at a cut;
        the forward flow also ``None`` when not ``forward``)."""
        if _histogram_intersection(g0, g1) < self.settings.cut_histogram:
            return None, None, True
        fwd, bwd = (self._flow(g0, g1) if forward else None), self._flow(g1, g0)
        l0, l1 = iuv0[..., 0], iuv1[..., 0]
        if l0.any() and l1.any():
            warped = _warp_nearest(l0, bwd)  # frame 0's labels at frame 1's pixels
            person = (l1 > 0) | ((warped > 0) & (warped != INVALID))
            if np.count_nonzero(warped[person] == l1[person]) < self.settings.cut_agreement * np.count_nonzero(person):
                return None, None, True
        return fwd, bwd, False

    def _flow(self, g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
        """DIS flow ``g0 → g1``."""
        return self._dis.calc(g0, g1, None)


def _histogram_intersection(g0: np.ndarray, g1: np.ndarray) -> float:
    h0 = np.bincount((g0[::4, ::4] >> 3).ravel(), minlength=32).astype(np.float64)
    h1 = np.bincount((g1[::4, ::4] >> 3).ravel(), minlength=32).astype(np.float64)
    return float(np.minimum(h0 / h0.sum(), h1 / h1.sum()).sum())


def _grid(shape: tuple[int, int], origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(x, y)`` (float32) of a ``shape`` window whose top-left pixel is ``origin`` (y, x)."""
    gx, gy = pixel_grid(int(shape[0]), int(shape[1]))
    if origin == (0, 0):
        return gx, gy
    return gx + np.float32(origin[1]), gy + np.float32(origin[0])


@functools.lru_cache(maxsize=8)
def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``(x, y)`` pixel-coordinate maps of an ``h × w`` image (float32, ``x`` = column, ``y`` = row),
    cached per size."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = False
    gy.flags.writeable = False
    return gx, gy


def _warp_nearest(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``x + flow(x)`` (nearest), :data:`INVALID` outside."""
    import cv2

    gx, gy = _grid(flow.shape[:2])
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_NEAREST,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=INVALID)


def compose(first: np.ndarray, second: np.ndarray, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Flow ``a → c`` from ``first`` (``a → b``) and ``second`` (``b → c``, whole frame).

    ``first`` may cover a window of frame ``a`` whose top-left pixel is ``origin`` ``(y, x)``.
    """
    import cv2

    gx, gy = _grid(first.shape[:2], origin)
    moved = cv2.remap(second, gx + first[..., 0], gy + first[..., 1],
                      cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return first + moved


class _Frame:
    """One frame's IUV with what every window it is part of needs (computed once)."""

    __slots__ = ("iuv", "uv", "span", "rows", "cols")

    def __init__(self, iuv: np.ndarray):
        import cv2

        self.iuv = np.ascontiguousarray(iuv, dtype=np.uint8)
        labels = self.iuv[..., 0]
        self.uv = self.iuv[..., 1:].astype(np.float32)
        # min / max label over each 2x2 footprint (x..x+1, y..y+1): bilinear sampling is safe where equal
        lo = cv2.erode(labels, _K2, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
        hi = cv2.dilate(labels, _K2, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)
        self.span = np.dstack([lo, hi])
        fg = labels > 0
        self.rows, self.cols = fg.any(axis=1), fg.any(axis=0)


_K2 = np.ones((2, 2), np.uint8)


def _person_box(frames: Sequence[_Frame], margin: int) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` around the person pixels of all ``frames`` plus ``margin``, or ``None``."""
    rows = np.logical_or.reduce([f.rows for f in frames])
    cols = np.logical_or.reduce([f.cols for f in frames])
    if not rows.any():
        return None
    ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
    h, w = rows.shape[0], cols.shape[0]
    return (max(0, ys[0] - margin), min(h, ys[-1] + 1 + margin), max(0, xs[0] - margin),
            min(w, xs[-1] + 1 + margin))


def filter_frame(centre: _Frame, neighbours: dict[int, _Frame], t: int, fwd: dict, bwd: dict,
                 settings: TemporalSettings) -> np.ndarray:
    """Filtered IUV of frame ``t``.

    Args:
        centre: frame ``t``.
        neighbours: the other frames of its window (same scene), by index.
        fwd, bwd: consecutive flows, ``fwd[s]``: ``s → s + 1``, ``bwd[s]``: ``s → s - 1``.
        settings: filter settings (``uv_tau``).

    Returns:
        ``(H, W, 3) uint8`` IUV; background pixels are ``(0, 0, 0)``.
    """
    import cv2

    if not neighbours:
        return centre.iuv.copy()
    out = np.zeros_like(centre.iuv)
    roi = _person_box([centre, *neighbours.values()], margin=8)
    if roi is None:
        return out
    y0, y1, x0, x1 = roi
    win = (slice(y0, y1), slice(x0, x1))
    gx, gy = _grid((y1 - y0, x1 - x0), (y0, x0))
    k = len(neighbours) + 1
    hw = (y1 - y0, x1 - x0)
    labels = np.empty((k, *hw), np.uint8)
    su = np.empty((k, *hw), np.float32)  # U and V samples, one plane per frame
    sv = np.empty((k, *hw), np.float32)
    labels[0] = centre.iuv[win][..., 0]
    su[0] = centre.uv[win][..., 0]
    sv[0] = centre.uv[win][..., 1]
    flows = _window_flows(t, sorted(neighbours), fwd, bwd, roi)
    for j, s in enumerate(sorted(flows), start=1):
        frame, flow = neighbours[s], flows[s]
        mx, my = gx + flow[..., 0], gy + flow[..., 1]
        near = cv2.remap(frame.iuv, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(INVALID, 0, 0))
        lin_uv = cv2.remap(frame.uv, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0.0, 0.0))
        # nearest at (x - 0.5, y - 0.5) is the bilinear footprint's top-left pixel
        span = cv2.remap(frame.span, mx - 0.5, my - 0.5, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(0, INVALID))
        bilinear = span[..., 0] == span[..., 1]  # the footprint is one part: bilinear U, V are safe
        labels[j] = near[..., 0]
        for c, plane in ((0, su[j]), (1, sv[j])):
            np.copyto(plane, near[..., 1 + c])
            np.copyto(plane, lin_uv[..., c], where=bilinear)

    # label vote where the frames disagree. Each frame's sample counts 4, each of its 4-neighbours 1
    # (flips are salt and pepper, so neighbours help), the centre frame breaks ties. Only labels that a
    # frame has at the pixel itself can win; frames that all agree can never be outvoted.
    best = labels[0].copy()
    split = np.any(labels != labels[0], axis=0)
    if split.any():
        padded = np.pad(labels, ((0, 0), (1, 1), (1, 1)), constant_values=INVALID)
        cand = labels[:, split]  # (k, m)
        around = np.concatenate([padded[:, 1 + dy:padded.shape[1] - 1 + dy, 1 + dx:padded.shape[2] - 1 + dx][:, split]
                                 for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))])  # (4k, m)
        top = cand[0].copy()
        top_score = np.zeros(top.shape, np.int32)
        for j in range(k):
            c = cand[j]
            score = (8 * np.count_nonzero(cand == c, axis=0) + 2 * np.count_nonzero(around == c, axis=0)
                     + (c == cand[0]))
            better = (score > top_score) & (c != INVALID)
            top[better] = c[better]
            top_score[better] = score[better]
        best[split] = top
    fg = best > 0
    region = out[win]
    region[..., 0] = best * fg

    # U, V: similarity-weighted mean of the samples that carry the voted label
    has = (labels == best).astype(np.float32)
    count = np.maximum(has.sum(axis=0), 1)
    own = labels[0] == best
    ref_u = np.where(own, su[0], np.einsum("khw,khw->hw", has, su) / count)
    ref_v = np.where(own, sv[0], np.einsum("khw,khw->hw", has, sv) / count)
    du, dv = su - ref_u, sv - ref_v
    weight = np.exp((du * du + dv * dv) * np.float32(-1.0 / (2.0 * settings.uv_tau ** 2))) * has
    total = np.maximum(weight.sum(axis=0), np.float32(1e-6))
    for c, plane in ((1, su), (2, sv)):
        smooth = np.einsum("khw,khw->hw", weight, plane) / total
        region[..., c] = np.where(fg, np.clip(np.rint(smooth), 0, 255), 0).astype(np.uint8)
    return out


def _window_flows(t: int, others: Sequence[int], fwd: dict, bwd: dict,
                  roi: tuple[int, int, int, int]) -> dict[int, np.ndarray]:
    """Flows (on the ``roi`` window of frame ``t``) from ``t`` to each frame in ``others``.

    Chains consecutive flows outward from ``t``: ``t → t+1 → t+2 …`` and ``t → t-1 → …``.
    """
    y0, y1, x0, x1 = roi
    flows: dict[int, np.ndarray] = {}
    for step, table in ((1, fwd), (-1, bwd)):
        total = None
        s = t + step
        while s in others:
            link = table[s - step]
            total = link[y0:y1, x0:x1] if total is None else compose(total, link, (y0, x0))
            flows[s] = total
            s += step
    return flows


def _window(t: int, first: int, last: int, radius: int, cut_before) -> range:
    """Frames of ``t``'s window within ``[first, last]``, not crossing a cut (``cut_before(s)``: cut s-1 | s)."""
    lo = t
    while lo > max(first, t - radius) and not cut_before(lo):
        lo -= 1
    hi = t
    while hi < min(last, t + radius) and not cut_before(hi + 1):
        hi += 1
    return range(lo, hi + 1)


def filter_sequence(iuvs: Sequence[np.ndarray], guides: Sequence[np.ndarray] | None = None,
                    settings: TemporalSettings = TemporalSettings()) -> list[np.ndarray]:
    """Offline filter of a whole clip (reference for :class:`TemporalIUVFilter`; memory grows with it).

    Args:
        iuvs: per-frame IUV ``(H, W, 3) uint8``.
        guides: per-frame grey guides (:func:`guide_from_rgb` of the video frames), or ``None`` to draw
            them from the IUV.
        settings: filter settings.
    """
    n = len(iuvs)
    if settings.radius <= 0 or n == 0:
        return [np.array(x, copy=True) for x in iuvs]
    guides = list(guides) if guides is not None else [guide_from_iuv(x) for x in iuvs]
    frames = [_Frame(x) for x in iuvs]
    motion = _Motion(settings)
    fwd: dict[int, np.ndarray] = {}
    bwd: dict[int, np.ndarray] = {}
    cut = [False] * (n + 1)  # cut[t]: a scene change between t - 1 and t
    for t in range(1, n):
        f, b, cut[t] = motion.pair(guides[t - 1], guides[t], frames[t - 1].iuv, frames[t].iuv)
        if not cut[t]:
            fwd[t - 1], bwd[t] = f, b
    out = []
    for t in range(n):
        window = _window(t, 0, n - 1, settings.radius, lambda s: cut[s])
        out.append(filter_frame(frames[t], {s: frames[s] for s in window if s != t}, t, fwd, bwd, settings))
    return out


class TemporalIUVFilter:
    """Streaming form of :func:`filter_sequence`: ``radius`` frames of look-ahead, flat memory.

    Feed frames in order with :meth:`push`; it returns the frames that became final (each
    ``(index, iuv)``, in order, ``radius`` frames behind, or sooner after a cut). :meth:`finish`
    returns the rest and resets the filter. At most ``2·radius + 2`` frames are held.

    ``causal=True`` (live streams): no look-ahead. Each :meth:`push` returns its own frame at once,
    filtered over the window ``[t - radius, t]`` (past frames only, not crossing a cut); at most
    ``radius + 2`` frames are held and only the backward flows are computed. The output then differs
    from :func:`filter_sequence`'s (a one-sided window votes a little behind fast changes).
    """

    def __init__(self, settings: TemporalSettings = TemporalSettings(), causal: bool = False):
        self.settings = settings
        self.causal = bool(causal)
        self._motion = _Motion(settings) if settings.radius > 0 else None
        self._frames: dict[int, _Frame] = {}
        self._guides: dict[int, np.ndarray] = {}
        self._fwd: dict[int, np.ndarray] = {}
        self._bwd: dict[int, np.ndarray] = {}
        self._cut: dict[int, bool] = {}
        self._pushed = 0  # frames received
        self._emitted = 0  # frames returned

    def reset(self) -> None:
        """Forget everything (a new clip)."""
        self.__init__(self.settings, self.causal)

    @property
    def held(self) -> int:
        """Frames currently kept in memory."""
        return len(self._frames)

    def push(self, iuv: np.ndarray, guide: np.ndarray | None = None) -> list[tuple[int, np.ndarray]]:
        """Add the next frame (``guide``: :func:`guide_from_rgb` of it, or ``None`` for an IUV guide)."""
        t = self._pushed
        self._pushed += 1
        if self.settings.radius <= 0:
            self._emitted += 1
            return [(t, np.array(iuv, dtype=np.uint8, copy=True))]
        self._frames[t] = _Frame(iuv)
        self._guides[t] = guide if guide is not None else guide_from_iuv(self._frames[t].iuv)
        for s, frame in self._frames.items():  # held frames (hold) that this frame's window may use
            if not isinstance(frame, _Frame):
                self._frames[s] = _Frame(frame)
        if t > 0:
            f, b, cut = self._motion.pair(self._guides[t - 1], self._guides[t], self._frames[t - 1].iuv,
                                          self._frames[t].iuv, forward=not self.causal)
            self._cut[t] = cut
            if not cut:
                self._fwd[t - 1], self._bwd[t] = f, b
        ready = []
        # frame e is final once frame e + radius is known, or a cut after e
        while self._emitted < self._pushed:
            e = self._emitted
            waiting = not self.causal and t < e + self.settings.radius
            if waiting and not any(self._cut.get(s, False) for s in range(e + 1, t + 1)):
                break
            ready.append((e, self._emit(e, last=t)))
        return ready

    def hold(self, iuv: np.ndarray, guide: np.ndarray | None = None) -> np.ndarray:
        """Causal filters only: take the next frame as it is (returned unfiltered, not copied) and keep it
        as the frame before the next one's window.

        For frames that have no per-frame DensePose noise to remove (a live stream's frames carried by
        flow from one DensePose keyframe): no flow, no vote. The motion between it and the frame before
        is not measured, so no later window reaches back across it (as across a cut).
        """
        if not self.causal:
            raise ValueError("hold() is for causal filters (a look-ahead filter emits frames later)")
        t = self._pushed
        self._pushed += 1
        self._emitted = t + 1
        if self.settings.radius <= 0:
            return iuv
        self._frames[t] = iuv  # made a _Frame only when the next frame's window uses it (push)
        self._guides[t] = guide if guide is not None else guide_from_iuv(iuv)
        self._cut[t] = t > 0
        keep = t + 1 - self.settings.radius
        for store in (self._frames, self._guides, self._fwd, self._bwd, self._cut):
            for key in [k for k in store if k < keep - 1]:
                del store[key]
        return iuv

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The frames still held back (end of the clip); the filter is then reset."""
        last = self._pushed - 1
        ready = [(e, self._emit(e, last=last)) for e in range(self._emitted, self._pushed)]
        self.reset()
        return ready

    def _emit(self, t: int, last: int) -> np.ndarray:
        window = _window(t, 0, last, self.settings.radius, lambda s: self._cut.get(s, False))
        result = filter_frame(self._frames[t], {s: self._frames[s] for s in window if s != t}, t,
                              self._fwd, self._bwd, self.settings)
        self._emitted = t + 1
        keep = t + 1 - self.settings.radius  # earlier frames are in no later window
        for store in (self._frames, self._guides, self._fwd, self._bwd, self._cut):
            for key in [k for k in store if k < keep - 1]:
                del store[key]
        return result


def filter_stream(frames: Iterable[tuple[np.ndarray, np.ndarray | None]],
                  settings: TemporalSettings = TemporalSettings()) -> Iterator[tuple[int, np.ndarray]]:
    """Generator form: ``(iuv, guide or None)`` in, ``(index, filtered iuv)`` out, in order."""
    filt = TemporalIUVFilter(settings)
    for iuv, guide in frames:
        yield from filt.push(iuv, guide)
    yield from filt.finish()
