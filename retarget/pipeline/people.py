"""Which driver person to replace (``--person``), the people of a frame, and following one over time.

``--person`` values:

- ``largest`` (default): the largest box in each frame without history, then the same person
  (box overlap with the previous frame; the largest box again when the overlap is lost);
- ``left`` / ``right`` / ``center``: in the first frame where people are found, the person whose
  box centre is leftmost / rightmost / nearest the frame centre; then that person is followed;
- ``N`` (1, 2, ...): the N-th person counted **from the left, starting at 1**, in the first frame
  where people are found; then followed. An ``N`` larger than the number of people found there is an
  error that lists them.

For the non-default choices, a person lost by the overlap test is found again as the box whose
centre is nearest the last known one (within one box width); otherwise the frame counts as a frame
without the person (``--on-missing``).

People of a frame (:func:`find_people`): DensePose results keep only the full-frame IUV composite and
the person boxes, so each person pixel is given to a box. Pixels inside exactly one box belong to
it; a connected blob of person pixels whose unambiguous pixels all belong to one box belongs to it
entirely, and so does a connected region of one body part reaching only that box's pixels; other
pixels inside several boxes go to the most confident box (the IUV composite draws it on top), then
to the box whose centre is nearest (relative to the box size). A result without real boxes (an IUV
PNG sidecar or an ``.npz`` without ``boxes``: one box around all person pixels) is split into people
by connected components of the person mask
(gaps of about 2 % of its height closed; blobs under 10 % of the largest one attached to the nearest
person); two people who touch in such a sidecar stay one person, an ``.npz`` sidecar with ``boxes``
avoids that.

Boxes are ``(4,)`` float xyxy in pixels (exclusive end), as in :mod:`retarget.pipeline.framing`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from retarget.errors import InputError, UsageError
from retarget.pipeline.framing import box_iou, mask_box, pick_person

PERSON_RULES = ("largest", "center", "left", "right")
#: ``--person N``: an optional sign, then ASCII digits (int() accepts more: "1_0", " 1", other scripts' digits).
_NUMBER = re.compile(r"[+-]?[0-9]{1,9}")
#: Blobs of person pixels smaller than this fraction of the largest one join the nearest person.
MIN_BLOB_FRACTION = 0.10


@dataclass(frozen=True)
class PersonChoice:
    """A parsed ``--person`` value: a rule, or ``index`` (1-based, counted from the left)."""

    rule: str = "largest"
    index: int | None = None

    @classmethod
    def parse(cls, text: str | int) -> "PersonChoice":
        """``largest|center|left|right|N`` → a choice (``centre`` is accepted for ``center``).

        Raises:
            UsageError: one line, for anything else (``0``, negative numbers, other words).
        """
        value = str(text).strip().lower()
        if value == "centre":
            value = "center"
        if value in PERSON_RULES:
            return cls(value)
        if _NUMBER.fullmatch(value):  # ASCII digits only: "²".isdigit() is True, int("²") fails
            number = int(value)
            if number >= 1:
                return cls("index", number)
            raise UsageError(f"--person {text}: people are numbered from 1 (the leftmost person)")
        raise UsageError(f"--person {text!r}: expected largest, center, left, right or a number N "
                         "(the N-th person from the left, from 1)")

    @property
    def default(self) -> bool:
        return self.rule == "largest"

    def __str__(self) -> str:
        return str(self.index) if self.rule == "index" else self.rule


@dataclass
class People:
    """The people of one frame.

    Attributes:
        boxes: ``(N, 4)`` float64 xyxy, in the result's order.
        labels: ``(H, W) int16``: index of the person each pixel belongs to, -1 for none.
    """

    boxes: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    def mask(self, k: int) -> np.ndarray:
        """``(H, W)`` bool pixels of person ``k``."""
        return self.labels == k

    def others(self, k: int | None) -> np.ndarray:
        """``(H, W)`` bool pixels of every person but ``k`` (all people when ``k`` is None)."""
        if k is None:
            return self.labels >= 0
        return (self.labels >= 0) & (self.labels != k)

    def left_to_right(self) -> list[int]:
        """Person indices ordered by box centre x (ties: top first)."""
        centres = (self.boxes[:, 0] + self.boxes[:, 2]) / 2
        return sorted(range(len(self.boxes)), key=lambda k: (centres[k], self.boxes[k, 1]))

    def match(self, box: np.ndarray | None) -> int | None:
        """Index of the person whose box is ``box`` (nearest box; ``None`` for no box or no people)."""
        if box is None or len(self.boxes) == 0 or np.isnan(box).any():
            return None
        return int(np.argmin(np.abs(self.boxes - np.asarray(box, np.float64)).sum(axis=1)))


def box_pixels(box: np.ndarray, shape: tuple[int, int], margin: float = 0.02) -> tuple[int, int, int, int]:
    """Integer ``(x0, y0, x1, y1)`` of ``box`` grown by ``margin`` of its size, clipped to ``shape``."""
    h, w = shape
    pad_x, pad_y = margin * (box[2] - box[0]), margin * (box[3] - box[1])
    x0, y0 = max(0, int(np.floor(box[0] - pad_x))), max(0, int(np.floor(box[1] - pad_y)))
    x1, y1 = min(w, int(np.ceil(box[2] + pad_x))), min(h, int(np.ceil(box[3] + pad_y)))
    return x0, y0, x1, y1


def _in_box(fg: np.ndarray, box: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """The ``fg`` pixels inside ``box`` grown by ``margin`` (:func:`box_pixels`)."""
    x0, y0, x1, y1 = box_pixels(box, fg.shape, margin)
    region = np.zeros_like(fg)
    region[y0:y1, x0:x1] = fg[y0:y1, x0:x1]
    return region


def person_mask(iuv: np.ndarray, box: np.ndarray | None, margin: float = 0.02) -> np.ndarray:
    """``(H, W)`` bool pixels of the person in ``box`` (all person pixels when ``box`` is None)."""
    fg = iuv[..., 0] > 0
    return fg if box is None else _in_box(fg, box, margin)


def find_people(iuv: np.ndarray, boxes: np.ndarray, split_blobs: bool = False,
                scores: np.ndarray | None = None) -> People:
    """Split the person pixels of a full-frame IUV among the person boxes (see the module docstring).

    Args:
        iuv: ``(H, W, 3) uint8`` IUV composite (I = 0 background).
        boxes: ``(N, 4)`` xyxy person boxes of the result.
        split_blobs: the result has no real boxes (an IUV PNG sidecar: one box around everyone):
            split its person pixels into people by connected blobs.
        scores: ``(N,)`` detection scores: where boxes overlap, the IUV composite shows the more
            confident person, so pixels left ambiguous go to the highest score (ties: nearest centre).

    Returns:
        :class:`People`; boxes whose area holds no person pixel are dropped. With a single box the
        person is exactly the person pixels inside it (2 % margin), as the pipeline always took it.
    """
    fg = iuv[..., 0] > 0
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.full(fg.shape, -1, np.int16)
    if not fg.any():
        return People(np.zeros((0, 4)), labels)
    inside = [_in_box(fg, box) for box in boxes]
    scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64).reshape(-1)
    if len(scores) != len(boxes):
        scores = np.ones(len(boxes))
    keep = [k for k, region in enumerate(inside) if region.any()]
    boxes, inside, scores = boxes[keep], [inside[k] for k in keep], scores[keep]
    if len(boxes) <= 1:
        if split_blobs or len(boxes) == 0:
            groups = _blob_people(fg)
            if len(groups) > 1 or len(boxes) == 0:
                return groups
        labels[inside[0]] = 0
        return People(boxes, labels)
    return People(boxes, _assign(iuv[..., 0], boxes, np.stack(inside), scores))


def _assign(parts: np.ndarray, boxes: np.ndarray, inside: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-pixel person index for several boxes: unique box, whole blob, whole same-part region,
    else the highest score, then the nearest box centre (``parts``: the ``(H, W)`` part index I)."""
    fg = parts > 0
    n = len(boxes)
    count = inside.sum(axis=0)
    owner = np.argmax(inside, axis=0).astype(np.int16)
    labels = np.where(count == 1, owner, -1).astype(np.int16)
    blobs, blob_of = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
    unique = count == 1
    votes = np.bincount(blob_of[unique].astype(np.int64) * n + owner[unique], minlength=blobs * n).reshape(blobs, n)
    single = (votes > 0).sum(axis=1) == 1  # blobs all of whose unambiguous pixels are one person's
    blob_owner = np.argmax(votes, axis=1)
    whole = single[blob_of] & fg
    labels[whole] = blob_owner[blob_of[whole]]
    shared = fg & ~whole & (count > 1)
    if shared.any():  # a region of one body part reaching only one person's own pixels is theirs
        _assign_by_part(parts, labels, shared, n)
        shared &= labels < 0
    if shared.any():
        ys, xs = np.nonzero(shared)
        centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
        halves = np.maximum(np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1) / 2, 1.0)
        dist = np.maximum(np.abs(xs[:, None] + 0.5 - centres[None, :, 0]) / halves[None, :, 0],
                          np.abs(ys[:, None] + 0.5 - centres[None, :, 1]) / halves[None, :, 1])
        dist[~inside[:, ys, xs].T] = np.inf
        rank = np.where(np.isfinite(dist), -scores[None, :], np.inf)  # the most confident box, then the nearest
        dist[rank > rank.min(axis=1, keepdims=True)] = np.inf
        labels[ys, xs] = np.argmin(dist, axis=1)
    return labels


def _assign_by_part(parts: np.ndarray, labels: np.ndarray, shared: np.ndarray, n: int) -> None:
    """Give ``shared`` pixels (in several boxes) to a person when the 4-connected region of their body
    part (through shared pixels and pixels already given) reaches that person's pixels only; in place."""
    ys, xs = np.nonzero(shared)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    known = labels >= 0
    rows, cols = np.nonzero(known | shared)  # the window: every pixel those regions can pass through
    y0, y1, x0, x1 = min(y0, rows.min()), max(y1, rows.max() + 1), min(x0, cols.min()), max(x1, cols.max() + 1)
    p_win, l_win, s_win = parts[y0:y1, x0:x1], labels[y0:y1, x0:x1], shared[y0:y1, x0:x1]
    for part in np.unique(p_win[s_win]):
        region = (p_win == part) & (s_win | (l_win >= 0))
        count, comp = cv2.connectedComponents(region.astype(np.uint8), connectivity=4)
        seeds = region & (l_win >= 0)
        votes = np.bincount(comp[seeds].astype(np.int64) * n + l_win[seeds], minlength=count * n).reshape(count, n)
        single = (votes > 0).sum(axis=1) == 1
        take = s_win & (p_win == part) & single[comp]
        l_win[take] = np.argmax(votes, axis=1)[comp[take]]


def _grow(mask: np.ndarray, radius: int, box: np.ndarray | None = None) -> np.ndarray:
    """``mask`` dilated by a disc of ``radius`` pixels, computed only around ``box`` (its bounding box)."""
    h, w = mask.shape
    box = box if box is not None else mask_box(mask)
    if box is None:
        return np.zeros_like(mask, dtype=bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(0, x0 - radius), max(0, y0 - radius), min(w, x1 + radius), min(h, y1 + radius)
    out = np.zeros_like(mask, dtype=bool)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    out[y0:y1, x0:x1] = cv2.dilate(mask[y0:y1, x0:x1].astype(np.uint8), disc) > 0
    return out


def _blob_people(fg: np.ndarray) -> People:
    """People as connected blobs of ``fg`` (small gaps closed, small blobs joined to the nearest).

    Works inside the person pixels' bounding box (plus the gap), so its cost follows the people's size.
    """
    box = mask_box(fg)
    labels = np.full(fg.shape, -1, np.int16)
    labels[fg] = 0
    single = People(box[None], labels)
    gap = max(1, int(round(0.02 * (box[3] - box[1]))))
    h, w = fg.shape
    x0, y0 = max(0, int(box[0]) - gap), max(0, int(box[1]) - gap)
    x1, y1 = min(w, int(box[2]) + gap), min(h, int(box[3]) + gap)
    local = fg[y0:y1, x0:x1]
    count, _, stats, _ = cv2.connectedComponentsWithStats(local.astype(np.uint8), connectivity=8)
    areas = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1]
    if len(areas) < 2 or areas[1] < MIN_BLOB_FRACTION * areas[0]:  # one body and specks at most: fast path
        return single
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1,) * 2)
    grown = cv2.dilate(local.astype(np.uint8), disc)
    count, blob_of, stats, centroids = cv2.connectedComponentsWithStats(grown, connectivity=8)
    areas = np.bincount(blob_of[local], minlength=count)
    blobs = [b for b in range(1, count) if areas[b] > 0]
    big = [b for b in blobs if areas[b] >= MIN_BLOB_FRACTION * areas[blobs].max()]
    if len(big) <= 1:
        return single
    target = {b: b for b in big}
    for b in blobs:
        if b in target:
            continue
        cx, cy = centroids[b]
        target[b] = min(big, key=lambda g: (np.clip(cx, stats[g, 0], stats[g, 0] + stats[g, 2]) - cx) ** 2
                        + (np.clip(cy, stats[g, 1], stats[g, 1] + stats[g, 3]) - cy) ** 2)
    order = sorted(big, key=lambda g: stats[g, 0] + stats[g, 2] / 2)  # left to right
    index = {g: i for i, g in enumerate(order)}
    lut = np.full(count, -1, np.int16)
    for b, g in target.items():
        lut[b] = index[g]
    labels[y0:y1, x0:x1] = np.where(local, lut[blob_of], -1)
    boxes = np.stack([mask_box(labels == i) for i in range(len(order))])
    return People(boxes, labels)


def driver_tracking(track: bool, person: str) -> bool:
    """Whether the DensePose model may run in tracked-region mode on the driver: only for ``largest``
    (the mode crops around one person, so the others, and a chosen one, could be cut off)."""
    return bool(track) and str(person).strip().lower() == "largest"


def splits_by_blobs(densepose) -> bool:
    """Whether a DensePose stage's results lack person boxes (precomputed IUV without ``boxes``), so
    that people are told apart by connected blobs (:func:`find_people` ``split_blobs``)."""
    return bool(getattr(densepose, "precomputed", False)
                and not getattr(getattr(densepose, "backend", None), "has_boxes", False))


def numbers_from_left(people: People) -> list[str]:
    """Per person (result order) its number counted from the left, from 1, as text (box labels)."""
    labels = [""] * len(people)
    for number, k in enumerate(people.left_to_right(), start=1):
        labels[k] = str(number)
    return labels


def describe_people(people: People) -> str:
    """``1 at x 10-50 (40 px tall), 2 at ...``: the people numbered from the left, for messages."""
    parts = []
    for number, k in enumerate(people.left_to_right(), start=1):
        x0, y0, x1, y1 = people.boxes[k]
        parts.append(f"{number} at x {int(round(x0))}-{int(round(x1))} ({int(round(y1 - y0))} px tall)")
    return ", ".join(parts)


def first_choice(people: People, choice: PersonChoice, frame_index: int, width: int, height: int) -> int:
    """Index of the chosen person in the first frame where people are found.

    Raises:
        InputError: ``choice`` is a number larger than the number of people, listing them.
    """
    if choice.rule == "largest":
        return pick_person(people.boxes, None)
    order = people.left_to_right()
    if choice.rule == "left":
        return order[0]
    if choice.rule == "right":
        return order[-1]
    if choice.rule == "center":
        centres = (people.boxes[:, :2] + people.boxes[:, 2:]) / 2
        return int(np.argmin(np.hypot(centres[:, 0] - width / 2, centres[:, 1] - height / 2)))
    if choice.index > len(order):
        n = len(order)
        raise InputError(f"--person {choice.index}: frame {frame_index}, the driver's first frame with people, "
                         f"has {n} {'person' if n == 1 else 'people'} (numbered from the left: "
                         f"{describe_people(people)}); choose 1..{n}, largest, center, left or right "
                         "(retarget frames shows them)")
    return order[choice.index - 1]


def follow(boxes: np.ndarray, previous: np.ndarray | None, choice: PersonChoice, min_iou: float = 0.3) -> int | None:
    """The followed person in a later frame: best overlap with ``previous``; when lost, the largest
    box (``largest``) or the box whose centre is nearest the last known one within a box width."""
    if choice.default or previous is None:
        return pick_person(boxes, previous, min_iou)
    if len(boxes) == 0:
        return None
    ious = [box_iou(b, previous) for b in boxes]
    best = int(np.argmax(ious))
    if ious[best] >= min_iou:
        return best
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    last = (previous[:2] + previous[2:]) / 2
    dist = np.hypot(*(centres - last).T)
    near = int(np.argmin(dist))
    return near if dist[near] <= max(previous[2] - previous[0], 1.0) else None


class PersonTracker:
    """Frame-by-frame choice of the person to replace (pass 1 of the video runner).

    :meth:`step` returns the followed person's index in that frame's :class:`People`, or ``None``.
    """

    def __init__(self, choice: PersonChoice, width: int, height: int):
        self.choice = choice
        self.size = (width, height)
        self.previous: np.ndarray | None = None
        self.started = False

    def step(self, people: People, frame_index: int) -> int | None:
        if len(people) == 0:
            return None
        if not self.started:
            chosen = first_choice(people, self.choice, frame_index, *self.size)
            self.started = True
        else:
            chosen = follow(people.boxes, self.previous, self.choice)
        if chosen is not None:
            self.previous = people.boxes[chosen]
        return chosen


def keep_layers(people: People, chosen: int | None, grow: float = 0.025) -> tuple[np.ndarray, np.ndarray] | None:
    """Driver pixels to keep in the output: ``(behind, in_front)`` bool masks of the other people.

    A person whose box reaches lower in the frame than the chosen one's (by 3 % of its height) is
    taken to stand in front of it: their pixels go over the pasted person; the others go under it.
    Masks are grown by ``grow`` × the person's height, at least 2 pixels (DensePose masks sit a little
    inside the body outline, and the temporal filter may drop an edge pixel). The chosen person's own
    pixels are never kept. ``None`` when there is nobody else.
    """
    if len(people) == 0 or (chosen is not None and len(people) == 1):
        return None
    h, w = people.labels.shape
    behind = np.zeros((h, w), bool)
    front = np.zeros((h, w), bool)
    ref = people.boxes[chosen] if chosen is not None else None
    for k in range(len(people)):
        if k == chosen:
            continue
        x0, y0, x1, y1 = people.boxes[k]
        radius = max(2, int(round(grow * (y1 - y0))))
        mask = _grow(people.mask(k), radius)
        in_front = ref is not None and y1 > ref[3] + 0.03 * (ref[3] - ref[1])
        (front if in_front else behind)[mask] = True
    if chosen is not None:  # the chosen person's own pixels are never the driver's
        own = people.mask(chosen)
        behind &= ~own
        front &= ~own
    return behind, front
