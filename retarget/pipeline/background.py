"""Background plates: the driver's scene without the driver, or the source photo's background."""

from __future__ import annotations

import cv2
import numpy as np

#: Memory budget for the frames kept to estimate a scene plate.
PLATE_MEMORY_BYTES = 256 * 2**20


class ScenePlateEstimator:
    """Temporal median of driver frames with the person masked out, fed frame by frame.

    Keeps at most ``max_frames`` evenly spread samples (the sampling stride doubles whenever the
    buffer is full), so memory is bounded whatever the video length. Pixels that are covered by the
    person in every kept sample are filled by image inpainting (OpenCV Telea).
    """

    def __init__(self, height: int, width: int, max_frames: int | None = None):
        per_frame = height * width * 4
        self.max_frames = max_frames or int(np.clip(PLATE_MEMORY_BYTES // per_frame, 3, 48))
        self.stride = 1
        self._seen = 0
        self._frames: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []

    def add(self, rgb: np.ndarray, person_mask: np.ndarray) -> None:
        """Offer one ``(H, W, 3) uint8`` frame and its ``(H, W)`` bool person mask."""
        index, self._seen = self._seen, self._seen + 1
        if index % self.stride:
            return
        grown = cv2.dilate(person_mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        self._frames.append(rgb.copy())
        self._masks.append(grown)
        if len(self._frames) > self.max_frames:
            self._frames, self._masks = self._frames[::2], self._masks[::2]
            self.stride *= 2

    def plate(self) -> np.ndarray:
        """``(H, W, 3) float32`` RGB in [0, 1]."""
        if not self._frames:
            raise ValueError("no frames were added")
        frames = np.stack(self._frames)
        masks = np.stack(self._masks)
        k, h, w, _ = frames.shape
        plate = np.zeros((h, w, 3), np.float32)
        never = np.zeros((h, w), bool)
        rows = max(1, int(16 * 2**20 // max(1, k * w * 3 * 4)))  # ~16 MB float blocks bound the transient
        for r0 in range(0, h, rows):
            block = frames[:, r0:r0 + rows].astype(np.float32)
            hidden = masks[:, r0:r0 + rows]
            block[hidden] = np.nan
            never[r0:r0 + rows] = hidden.all(axis=0)
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    plate[r0:r0 + rows] = np.nan_to_num(np.nanmedian(block, axis=0))
        plate_u8 = np.clip(np.round(plate), 0, 255).astype(np.uint8)
        if never.any():
            plate_u8 = inpaint(plate_u8, never)
        return plate_u8.astype(np.float32) / 255.0


def inpaint(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill ``hole`` (``(H, W)`` bool) of a ``uint8`` RGB image by OpenCV's Telea inpainting."""
    if hole.all():
        return rgb.copy()
    radius = max(3, int(0.01 * max(rgb.shape[:2])))
    return cv2.inpaint(rgb, hole.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)


def source_background(photo_rgb: np.ndarray, person_mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """The source photo without its person, resized to cover ``height x width`` (centre crop).

    Args:
        photo_rgb: ``(h, w, 3) uint8``.
        person_mask: ``(h, w)`` bool.

    Returns:
        ``(height, width, 3) float32`` in [0, 1].
    """
    grown = cv2.dilate(person_mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    clean = inpaint(photo_rgb, grown)
    h, w = clean.shape[:2]
    scale = max(height / h, width / w)
    rh, rw = max(height, int(np.ceil(h * scale))), max(width, int(np.ceil(w * scale)))
    resized = cv2.resize(clean, (rw, rh), interpolation=cv2.INTER_LINEAR)
    y0, x0 = (rh - height) // 2, (rw - width) // 2
    return resized[y0:y0 + height, x0:x0 + width].astype(np.float32) / 255.0


def parse_colour(text: str) -> np.ndarray | None:
    """``#RRGGBB`` → ``(3,) float32`` RGB in [0, 1]; ``None`` if ``text`` is not a colour."""
    if len(text) == 7 and text.startswith("#"):
        try:
            return np.array([int(text[i:i + 2], 16) for i in (1, 3, 5)], np.float32) / 255.0
        except ValueError:
            return None
    return None


class LiveScenePlate:
    """The driver's scene without the driver for live streams: the last-seen background per pixel.

    :class:`ScenePlateEstimator` needs the whole clip (a median over it); a stream only has the past.
    Every frame updates the pixels the person does not cover (grown mask) with an exponential
    average (``rate``: weight of the newest frame), so the plate follows light changes and a person
    who walks away reveals the scene behind. Pixels never seen yet are filled by image inpainting,
    refreshed every ``refresh`` frames while such pixels remain. Memory: two float frames.
    """

    def __init__(self, height: int, width: int, rate: float = 0.3, refresh: int = 10):
        self.shape = (height, width)
        self.rate = float(rate)
        self.refresh = max(1, int(refresh))
        self._sum = np.zeros((height, width, 3), np.float32)  # 0..255
        self._seen = np.zeros((height, width), bool)
        self._grow = np.ones((max(9, height // 40),) * 2, np.uint8)
        self._filled: np.ndarray | None = None
        self._age = 0

    def add(self, rgb: np.ndarray, person_mask: np.ndarray) -> None:
        """Offer one ``(H, W, 3) uint8`` frame and its ``(H, W)`` bool person mask."""
        visible = ~(cv2.dilate(person_mask.astype(np.uint8), self._grow) > 0)
        frame = rgb.astype(np.float32)
        new = visible & ~self._seen
        self._sum[new] = frame[new]
        cv2.accumulateWeighted(frame, self._sum, self.rate, mask=(visible & self._seen).astype(np.uint8))
        self._seen |= visible
        self._age += 1

    def plate(self) -> np.ndarray:
        """``(H, W, 3) float32`` RGB in [0, 1] (black before any background was seen)."""
        if self._seen.all() or not self._seen.any():
            self._filled = None
            return self._sum / 255.0
        if self._filled is None or self._age >= self.refresh:
            plate_u8 = np.clip(np.round(self._sum), 0, 255).astype(np.uint8)
            self._filled = inpaint(plate_u8, ~self._seen).astype(np.float32)
            self._age = 0
        return np.where(self._seen[..., None], self._sum, self._filled) / 255.0
