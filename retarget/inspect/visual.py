"""Viewable images of pipeline stages: coordinate/UV maps, DensePose IUV, masks, labels, contact sheets.

Colour codes (explained by :func:`legend_image`):

- **Coordinates and UV** (2 channels in ``[-1, 1]``: x/y of a source-photo pixel, or u/v of SMPL-UV):
  red grows with the first value (x or u, left → right), green with the second (y or v, top →
  bottom), blue = 1 − (red + green) / 2. So the top-left corner is blue, top-right red, bottom-left
  green, bottom-right yellow. Texels/pixels without a value (holes, background) show a grey
  checkerboard.
- **DensePose IUV**: one fixed colour per body part I (1..24), with darker contour lines every 0.1
  of the part-local U and V; background black.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from retarget.uvmap.layout import PART_NAMES



def part_palette() -> np.ndarray:
    """``(25, 3) uint8`` RGB colour of each part index; 0 (background) is black."""
    colours = [(0, 0, 0)]
    for i in range(24):
        hue = (i * 0.381966) % 1.0  # golden-ratio steps: neighbouring indices get distinct hues
        value = 0.95 if i % 2 == 0 else 0.75
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, value)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(colours, dtype=np.uint8)


PALETTE = part_palette()


def checkerboard(height: int, width: int, cell: int = 8) -> np.ndarray:
    """``(H, W, 3) uint8`` grey checkerboard (the "no value" pattern)."""
    y, x = np.mgrid[0:height, 0:width]
    on = ((y // cell) + (x // cell)) % 2 == 0
    out = np.where(on, 170, 120).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)


def coords_to_rgb(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Colour-code a 2-channel map in ``[-1, 1]`` (see module docstring).

    Args:
        values: ``(2, H, W)`` (channel-first) or ``(H, W, 2)``; NaN = no value.
        valid: optional ``(H, W)`` bool of pixels that have a value.

    Returns:
        ``(H, W, 3) uint8`` RGB.
    """
    v = np.asarray(values, dtype=np.float32)
    if v.ndim == 3 and v.shape[0] == 2 and v.shape[-1] != 2:
        v = np.moveaxis(v, 0, -1)
    if v.ndim != 3 or v.shape[-1] != 2:
        raise ValueError(f"expected a 2-channel map, got {v.shape}")
    ok = ~np.isnan(v).any(axis=-1)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    ok &= (np.abs(np.nan_to_num(v, nan=0.0)) <= 1.5).all(axis=-1)  # -10 marks background in prepared maps
    a = np.clip((np.nan_to_num(v, nan=0.0) + 1.0) / 2.0, 0.0, 1.0)
    rgb = np.stack([a[..., 0], a[..., 1], 1.0 - (a[..., 0] + a[..., 1]) / 2.0], axis=-1)
    out = np.round(rgb * 255).astype(np.uint8)
    return np.where(ok[..., None], out, checkerboard(*ok.shape))


def iuv_to_rgb(iuv: np.ndarray, contours: bool = True) -> np.ndarray:
    """Colour-code a DensePose IUV image ``(H, W, 3) uint8 [I, U, V]`` (see module docstring)."""
    iuv = np.asarray(iuv)
    parts = np.clip(iuv[..., 0].astype(np.int64), 0, 24)
    out = PALETTE[parts].astype(np.float32)
    if contours:
        u = iuv[..., 1].astype(np.int32) * 10 // 256
        v = iuv[..., 2].astype(np.int32) * 10 // 256
        edge = np.zeros(parts.shape, bool)
        for band in (u, v):
            edge[:, 1:] |= band[:, 1:] != band[:, :-1]
            edge[1:, :] |= band[1:, :] != band[:-1, :]
        edge &= parts > 0
        out[edge] *= 0.55
    return np.round(out).astype(np.uint8)


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` mask (bool or [0, 1]) → white on black."""
    m = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    return np.repeat(np.round(m * 255).astype(np.uint8)[..., None], 3, axis=2)


def float_to_rgb(image: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` or ``(H, W, 3)`` float in [0, 1] → uint8 RGB."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = np.moveaxis(a, 0, -1)
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)


def blend(base: np.ndarray, overlay: np.ndarray, mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``overlay`` over ``base`` where ``mask``, with opacity ``alpha``."""
    m = (np.asarray(mask, dtype=np.float32) * alpha)[..., None]
    return np.round(base.astype(np.float32) * (1 - m) + overlay.astype(np.float32) * m).astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, chosen: int | None = None,
               labels: list[str] | None = None) -> np.ndarray:
    """Person boxes (xyxy) drawn on a copy; the followed one in yellow (thicker), others in white.

    ``labels`` (one per box, e.g. the person numbers of ``--person N``) are written at each box's
    top-left corner, on a dark patch so they read on any background.
    """
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    for k, box in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        colour = (255, 220, 0) if k == chosen else (255, 255, 255)
        x0, y0, x1, y1 = (int(round(c)) for c in box)
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, 2 if k == chosen else 1)
        if labels is not None and k < len(labels):
            scale = float(np.clip(min(h, w) / 400, 0.35, 1.2))
            (tw, th), base = cv2.getTextSize(labels[k], cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            above = y0 - base - 3 >= th + 1  # above the box when there is room, else inside its top
            ty = y0 - base - 3 if above else y0 + th + 3
            tx, ty = int(np.clip(x0, 0, max(0, w - tw - 2))), int(np.clip(ty, th + 1, h - base - 1))
            cv2.rectangle(out, (tx - 1, ty - th - 2), (tx + tw + 1, ty + base), (0, 0, 0), -1)
            _text(out, labels[k], (tx, ty), scale, colour)
    return out


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, colour=(255, 255, 255),
          thickness: int = 1) -> None:
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)


def fit(image: np.ndarray, height: int, nearest: bool = False) -> np.ndarray:
    """Resize to ``height`` keeping the aspect ratio."""
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, int(round(w * height / h)))
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if height < h else cv2.INTER_LINEAR)
    return cv2.resize(image, (width, height), interpolation=interp)


def placeholder(height: int, width: int, text: str) -> np.ndarray:
    """A grey tile saying ``text`` (a stage that has no image for this frame)."""
    out = np.full((height, width, 3), 60, np.uint8)
    _text(out, text, (8, height // 2), 0.45, (220, 220, 220))
    return out


#: Caption font scale of :func:`labelled` and the height of one caption line.
CAPTION_SCALE, CAPTION_LINE = 0.45, 16


def wrap_caption(label: str, width: int, scale: float = CAPTION_SCALE) -> list[str]:
    """``label`` broken at spaces into lines of at most ``width`` pixels when drawn at ``scale`` (a single
    word longer than that stays whole on its own line)."""
    lines: list[str] = []
    for word in label.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]


def labelled(image: np.ndarray, label: str, height: int = 192, bar: int = 22, nearest: bool = False) -> np.ndarray:
    """``image`` scaled to ``height`` under a caption bar; a caption wider than the image is wrapped over
    more lines (the bar grows by :data:`CAPTION_LINE` a line) instead of widening the tile."""
    tile = fit(image, height, nearest)
    width = max(tile.shape[1], 120)
    lines = wrap_caption(label, width - 10)
    width = max(width, max(cv2.getTextSize(x, cv2.FONT_HERSHEY_SIMPLEX, CAPTION_SCALE, 1)[0][0] for x in lines) + 10)
    bar += CAPTION_LINE * (len(lines) - 1)
    out = np.full((height + bar, width, 3), 32, np.uint8)
    out[bar:, :tile.shape[1]] = tile
    for k, line in enumerate(lines):
        _text(out, line, (5, 15 + CAPTION_LINE * k), CAPTION_SCALE)
    return out


def contact_sheet(tiles: list[tuple[str, np.ndarray]], title: str = "", height: int = 192, columns: int = 3,
                  nearest: bool = False) -> np.ndarray:
    """Labelled tiles in a grid under an optional title line: ``(H, W, 3) uint8``."""
    cells = [labelled(img, label, height, nearest=nearest) for label, img in tiles]
    cw = max(c.shape[1] for c in cells)
    ch = max(c.shape[0] for c in cells)
    rows = (len(cells) + columns - 1) // columns
    gap, head = 6, (28 if title else 0)
    cols = min(columns, len(cells))
    title_width = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)[0][0] + 2 * gap if title else 0
    sheet = np.full((head + rows * (ch + gap) + gap, max(cols * (cw + gap) + gap, title_width), 3), 18, np.uint8)
    if title:
        _text(sheet, title, (gap, 20), 0.55)
    for k, cell in enumerate(cells):
        r, c = divmod(k, columns)
        y, x = head + gap + r * (ch + gap), gap + c * (cw + gap)
        sheet[y:y + cell.shape[0], x:x + cell.shape[1]] = cell
    return sheet


def legend_image(photo_crop: np.ndarray | None = None, size: int = 256) -> np.ndarray:
    """The colour-code legend: the coordinate/UV colour square with its axes, the photo with each
    pixel's own coordinate colour (to read coordinate textures), the "no value" pattern, and the
    DensePose part colours with their names."""
    pad = 40
    grid = np.linspace(-1, 1, size, dtype=np.float32)
    xy = np.stack(np.meshgrid(grid, grid, indexing="xy"), axis=-1)
    square = coords_to_rgb(xy)
    panels: list[np.ndarray] = []

    def panel(img: np.ndarray, title: str, lines: list[str]) -> np.ndarray:
        h, w = img.shape[:2]
        out = np.full((h + pad + 16 * len(lines) + 12, w + 2 * pad, 3), 250, np.uint8)
        out[pad:pad + h, pad:pad + w] = img
        _text(out, title, (pad, 24), 0.5, (20, 20, 20))
        for k, line in enumerate(lines):
            _text(out, line, (pad, pad + h + 18 + 16 * k), 0.4, (40, 40, 40))
        return out

    axes = square.copy()
    cv2.arrowedLine(axes, (8, 8), (size - 12, 8), (255, 255, 255), 1, tipLength=0.04)
    cv2.arrowedLine(axes, (8, 8), (8, size - 12), (255, 255, 255), 1, tipLength=0.04)
    _text(axes, "x / u", (size - 60, 24), 0.4)
    _text(axes, "y / v", (14, size - 16), 0.4)
    panels.append(panel(axes, "coordinates & UV colour code", [
        "red = x (or u): -1 left .. +1 right", "green = y (or v): -1 top .. +1 bottom",
        "blue = 1 - (red + green) / 2"]))
    if photo_crop is not None:
        crop = cv2.resize(photo_crop, (size, size), interpolation=cv2.INTER_AREA)
        shown = blend(crop, square, np.ones(crop.shape[:2]), 0.45)
        panels.append(panel(shown, "the photo in that code", [
            "a coordinate texture shows, per texel,", "the colour of the photo pixel it copies"]))
    panels.append(panel(checkerboard(size // 2, size), "no value", [
        "hole in a texture, or background", "(coverage mask: white = seen in the photo)"]))
    rows = []
    for i in range(1, 25):
        row = np.full((18, 260, 3), 250, np.uint8)
        row[2:16, 2:30] = PALETTE[i]
        _text(row, f"{i:2d} {PART_NAMES[i]}", (36, 13), 0.38, (20, 20, 20))
        rows.append(row)
    parts = np.concatenate(rows, axis=0)
    panels.append(panel(parts, "DensePose body parts (I)", ["contour lines: every 0.1 of U and V"]))
    height = max(p.shape[0] for p in panels)
    padded = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)), constant_values=250) for p in panels]
    return np.concatenate(padded, axis=1)
