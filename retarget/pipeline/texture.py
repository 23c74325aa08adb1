"""Texture workflows on a prepared source: export the colour texture, render with an edited one, garment swap.

All three produce or consume the colour texture of a :class:`~retarget.pipeline.pair.SourceState`
(``pred_textures``: ``(1, 3, Ht, Wt)`` in the SMPL-UV layout of :mod:`retarget.uvmap.layout`) and hand the
runner a :class:`SourceState` like :func:`~retarget.pipeline.pair.prepare_source` does, so nothing
downstream changes:

- :func:`export_texture`: the completed colour texture, which texels the photo showed, the completed
  coordinate texture and the part of every texel (``retarget texture``);
- :func:`with_texture`: the state rendering another colour texture of the same size. Weight-free path:
  the warp reads the new texture (the ``body`` renderer, which reads the photo itself where the photo
  saw the body, reads the texture wherever it was edited: :func:`edited_texels`). Learned path: the
  refiner's source branch sees the photo with the *edit* re-projected onto it: every person pixel of the
  photo moves by the difference between the new and the old texture at that pixel's own UV (pixels whose
  texels were not edited stay exactly the photo's), and the source branch is encoded again; the coarse
  image the refiner's target branch gets is read from the new texture;
- :func:`garment_texture`: A's colour texture with the texels of one body region (DensePose parts,
  :data:`GARMENT_REGIONS`) taken from B's, completed from the region texels B's photo shows
  (:func:`fill_garment`: mirror, front/back, next limb segment, nearest of the part; never a fill colour
  or B's head, hands or background), except those showing B's own bare skin (:func:`garment_skin`: B's
  skin colour estimated from B's face and hands, carried through the completion), which stay A's.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from retarget.errors import InputError
from retarget.pipeline.pair import Models, SourceState

#: Body regions of ``--garment-region`` as DensePose parts (1-based, :data:`retarget.uvmap.layout.PART_NAMES`).
#: The head (23, 24), hands (3, 4) and feet (5, 6) are in none of them: they always stay the person's own.
GARMENT_REGIONS: dict[str, tuple[int, ...]] = {
    "upper": (1, 2, 15, 16, 17, 18, 19, 20, 21, 22),  # torso, upper and lower arms
    "lower": (7, 8, 9, 10, 11, 12, 13, 14),  # upper and lower legs
    "full": (1, 2, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22),
}
#: A garment photo must show at least this fraction of the region's texels.
MIN_GARMENT_COVERAGE = 0.05


@dataclass
class TextureExport:
    """What ``retarget texture`` writes.

    Attributes:
        rgb: ``(Ht, Wt, 3) uint8`` completed colour texture.
        seen: ``(Ht, Wt) bool`` texels that received pixels of the photo (the rest was completed).
        part: ``(Ht, Wt) int64`` DensePose part of every texel, 0 off the body.
        xy: ``(Ht, Wt, 2) float32`` completed coordinate texture: the (x, y) in ``[-1, 1]`` of the
            cropped photo each texel's colour is read from.
    """

    rgb: np.ndarray
    seen: np.ndarray
    part: np.ndarray
    xy: np.ndarray

    def mask_image(self) -> np.ndarray:
        """``(Ht, Wt) uint8``: 255 seen in the photo, 128 completed, 0 off the body (never rendered)."""
        out = np.where(self.part > 0, 128, 0).astype(np.uint8)
        out[self.seen] = 255
        return out


def export_texture(state: SourceState) -> TextureExport:
    """The completed colour texture of ``state`` and what goes with it (see :class:`TextureExport`)."""
    from retarget.uvmap.layout import texture_layout

    rgb = state.pred_textures[0].permute(1, 2, 0).float().cpu().numpy()
    rgb = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    th, tw = rgb.shape[:2]
    return TextureExport(rgb=rgb, seen=state.coverage[0, 0].cpu().numpy() > 0.5, part=texture_layout(th, tw).part,
                         xy=state.completed_xy[0].permute(1, 2, 0).float().cpu().numpy())


def texture_legend(export: TextureExport, scale: int = 0) -> np.ndarray:
    """``(S, S, 3) uint8`` the texture (enlarged to at least 768 px) with part borders and part labels."""
    import cv2

    from retarget.uvmap.layout import PART_NAMES

    th, tw = export.part.shape
    scale = scale or max(1, int(np.ceil(768 / max(th, tw))))
    big = cv2.resize(export.rgb, (tw * scale, th * scale), interpolation=cv2.INTER_NEAREST)
    # borders of the majority part in a 5x5 window: the per-texel map has single stray texels at seams
    votes = np.stack([cv2.boxFilter((export.part == p).astype(np.float32), -1, (5, 5)) for p in range(25)])
    smooth = np.argmax(votes, axis=0).astype(np.uint8)
    part = cv2.resize(smooth, (tw * scale, th * scale), interpolation=cv2.INTER_NEAREST)
    # completed texels slightly dimmed, off-body black: what the photo showed stands out
    shade = np.where(cv2.resize(export.part.astype(np.uint8), (tw * scale, th * scale),
                                interpolation=cv2.INTER_NEAREST) == 0, 0.25, 1.0)
    seen = cv2.resize(export.seen.astype(np.uint8), (tw * scale, th * scale), interpolation=cv2.INTER_NEAREST)
    shade = np.where((shade == 1.0) & (seen == 0), 0.8, shade)
    out = (big.astype(np.float32) * shade[..., None]).astype(np.uint8)
    border = np.zeros(part.shape, bool)
    border[:, 1:] |= part[:, 1:] != part[:, :-1]
    border[1:, :] |= part[1:, :] != part[:-1, :]
    border = cv2.dilate(border.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0
    out[border] = (255, 255, 255)
    for p in range(1, len(PART_NAMES)):
        mask = (smooth == p).astype(np.uint8)
        if not mask.any():
            continue
        n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        cx, cy = (centroids[largest] + 0.5) * scale
        name = PART_NAMES[p].replace(" (", "|").replace(")", "").replace("upper ", "up. ").replace("lower ", "low. ")
        lines = [f"{p} {name.split('|')[0]}"] + name.split("|")[1:]
        for k, text in enumerate(lines):
            width = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.36, 1)[0][0]
            org = (int(cx - width / 2), int(cy + 12 * k))
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.36, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def read_texture(path: str | Path, shape: tuple[int, int], size_hint: str = "") -> np.ndarray:
    """Read an edited texture as ``(Ht, Wt, 3) float32`` RGB in ``[0, 1]``.

    Args:
        path: image file (PNG recommended: JPEG changes every texel a little).
        shape: ``(Ht, Wt)`` the texture size the pipeline uses.
        size_hint: appended to the wrong-size message (how to get a texture of the right size).

    Raises:
        InputError: missing, a folder, not an image, damaged, with an alpha channel, or of another size.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    from densepose_adapter.image_header import UnreadableHeader, read_image_header
    from retarget.io.guard import check_input
    from retarget.io.image import _to_rgb8

    path = Path(path)
    check_input(path, role="texture", noun="an image file")
    try:  # the declared size first: nothing is decoded unless it is the size this run uses
        header = read_image_header(path)
    except UnreadableHeader:
        raise InputError(f"{path}: texture is not an image file (unknown format); give the PNG written by "
                         "`retarget texture`, edited and saved as PNG") from None
    if (header.height, header.width) != tuple(shape):
        raise InputError(f"{path}: texture is {header.width}x{header.height} but this run uses {shape[1]}x{shape[0]} "
                         f"textures{size_hint}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's bomb warning: the size was checked above
            with Image.open(path) as img:
                if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
                    raise InputError(f"{path}: the texture has an alpha channel (transparency); save it as an RGB "
                                     "PNG without transparency (every texel needs a colour)")
                img.load()
                rgb = _to_rgb8(img)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: texture is not an image file (unknown format); give the PNG written by "
                         "`retarget texture`, edited and saved as PNG") from None
    except Exception as exc:  # noqa: BLE001 - decoders of untrusted files fail in many ways
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot read the texture ({reason}); the file is damaged or incomplete") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"{path}: unsupported texture layout {rgb.shape}; save it as an RGB PNG")
    if rgb.shape[:2] != tuple(shape):
        raise InputError(f"{path}: texture is {rgb.shape[1]}x{rgb.shape[0]} but this run uses {shape[1]}x{shape[0]} "
                         f"textures{size_hint}")
    return rgb.astype(np.float32) / 255.0


@torch.no_grad()
def with_texture(state: SourceState, texture: torch.Tensor | np.ndarray, models: Models | None = None
                 ) -> SourceState:
    """``state`` rendering ``texture`` instead of its own colour texture (see the module docstring).

    Args:
        state: from :func:`~retarget.pipeline.pair.prepare_source`.
        texture: ``(1, 3, Ht, Wt)`` tensor or ``(Ht, Wt, 3)`` array, RGB in ``[0, 1]``, the size of
            ``state.pred_textures``.
        models: the models ``state`` was prepared with (the refiner re-encodes the source on the learned path).
    """
    from retarget import ops

    if isinstance(texture, np.ndarray):
        texture = torch.from_numpy(np.ascontiguousarray(texture, dtype=np.float32)).permute(2, 0, 1)[None]
    texture = texture.to(device=state.pred_textures.device, dtype=state.pred_textures.dtype)
    if texture.shape != state.pred_textures.shape:
        raise ValueError(f"texture must be {tuple(state.pred_textures.shape)}, got {tuple(texture.shape)}")
    edited = dataclasses.replace(state, pred_textures=texture)
    if state.reads_photo:
        edited.seen = torch.cat([state.seen[:, :2], state.seen[:, 2:] * (1.0 - edited_texels(state, texture))], dim=1)
    if not state.learned:
        return edited
    if models is None or models.refiner is None:
        raise ValueError("the source was prepared with learned models; pass the same models here")
    delta = ops.sample_texture(texture - state.pred_textures, state.uv) * state.mask
    image = (state.image + delta).clamp(0.0, 1.0)
    source_input = torch.cat([image, state.refiner_source_input[:, 3:]], dim=1)
    return dataclasses.replace(edited, image=image, refiner_source_input=source_input,
                               refiner_source_features=models.refiner.encode_source(source_input))


#: A texel of a texture given to :func:`with_texture` is edited where a channel differs from the state's own
#: colour texture by more than this (a texture exported by ``retarget texture`` and read back differs by
#: its 8-bit rounding, at most 0.5/255).
EDIT_TOLERANCE = 2.0 / 255.0


def edited_texels(state: SourceState, texture: torch.Tensor) -> torch.Tensor:
    """``(1, 1, Hs, Ws)`` float, 1 on the texels of ``state.seen``'s grid (``s`` times finer than the
    colour texture) that lie in a texel of ``texture`` that was edited (:data:`EDIT_TOLERANCE`)."""
    changed = (texture - state.pred_textures).abs().amax(dim=1, keepdim=True) > EDIT_TOLERANCE
    (th, tw), (hs, ws) = state.pred_textures.shape[-2:], state.seen.shape[-2:]
    changed = changed.repeat_interleave(hs // th, dim=2).repeat_interleave(ws // tw, dim=3)
    return changed.to(state.seen.dtype)


def region_mask(region: str, shape: tuple[int, int]) -> np.ndarray:
    """``(Ht, Wt) bool`` texels of ``region`` (:data:`GARMENT_REGIONS`)."""
    from retarget.uvmap.layout import texture_layout

    if region not in GARMENT_REGIONS:
        raise ValueError(f"unknown garment region {region!r}; choose one of {', '.join(GARMENT_REGIONS)}")
    return np.isin(texture_layout(*shape).part, GARMENT_REGIONS[region])


def garment_coverage(garment: SourceState, region: str) -> float:
    """Fraction of ``region``'s texels that the garment photo shows."""
    th, tw = garment.coverage.shape[-2:]
    mask = region_mask(region, (th, tw))
    seen = garment.coverage[0, 0].cpu().numpy() > 0.5
    return float(seen[mask].mean()) if mask.any() else 0.0


#: Parts that are almost always bare skin: hands (3, 4) and head (23, 24; hair is trimmed away).
SKIN_PARTS = (3, 4, 23, 24)
#: Fewest seen, trimmed skin-part texels (and fraction of the texture) a skin model needs.
MIN_SKIN_TEXELS = 16
#: A region texel is the garment photo's skin when its chroma is within this many robust spreads of the model.
SKIN_DISTANCE = 3.0
#: Floor of the model's chroma spread (Cr/Cb units of RGB in [0, 1]): JPEG noise and shading.
SKIN_MIN_SPREAD = 0.012
#: Ceiling of the spread: one person's lit skin spreads 0.012–0.017 on the sample photos; a pool with hair or
#: a print mixed in (a photo from the back: the head is mostly hair) spreads wider, and a model that wide
#: takes warm clothes (a pink print) for skin, letting the person's own clothes show through the garment.
SKIN_MAX_SPREAD = 0.02


def _chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Y, Cr, Cb)`` of ``(..., 3)`` RGB in ``[0, 1]`` (BT.601, chroma centred on 0)."""
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return y, 0.713 * (rgb[..., 0] - y), 0.564 * (rgb[..., 2] - y)


def skin_model(rgb: np.ndarray, seen: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """One person's skin colour from the texels of :data:`SKIN_PARTS` their photo shows.

    Args:
        rgb: ``(Ht, Wt, 3)`` colour texture, RGB in ``[0, 1]``.
        seen: ``(Ht, Wt) bool`` texels the photo showed.
        part: ``(Ht, Wt)`` DensePose part of every texel.

    Returns:
        ``(centre, spread, y_min)``: the robust (median / MAD) centre and spread of ``(Cr, Cb)`` and the
        darkest luminance still taken as skin; ``None`` when fewer than :data:`MIN_SKIN_TEXELS` texels
        remain or the centre is not warm (``Cr <= Cb``: a glove, a mask, the back of a hat, a tinted photo).
        Hair is dropped as the texels darker than half the pool's 90th luminance percentile, then outliers
        beyond 2.5 spreads are trimmed twice.
    """
    pool = seen & np.isin(part, SKIN_PARTS)
    if pool.sum() < MIN_SKIN_TEXELS:
        return None
    y, cr, cb = _chroma(rgb[pool].astype(np.float64))
    keep = y >= 0.5 * np.percentile(y, 90)
    for _ in range(3):
        if keep.sum() < MIN_SKIN_TEXELS:
            return None
        c = np.stack([cr[keep], cb[keep]], axis=1)
        centre = np.median(c, axis=0)
        spread = np.clip(1.4826 * np.median(np.abs(c - centre), axis=0), SKIN_MIN_SPREAD, SKIN_MAX_SPREAD)
        keep = keep & (np.hypot((cr - centre[0]) / spread[0], (cb - centre[1]) / spread[1]) <= 2.5)
    if keep.sum() < MIN_SKIN_TEXELS or centre[0] <= centre[1]:
        return None
    return centre, spread, float(0.5 * np.percentile(y[keep], 10))


def skin_texels(rgb: np.ndarray, model: tuple[np.ndarray, np.ndarray, float], within: np.ndarray) -> np.ndarray:
    """``(Ht, Wt) bool`` texels of ``within`` whose colour is the person's skin by ``model`` (:func:`skin_model`):
    chroma within :data:`SKIN_DISTANCE` spreads of its centre, not darker than its ``y_min``, and agreeing
    with at least half of their 3×3 neighbours in ``within`` (isolated texels of a print or a seam are not skin)."""
    import cv2

    centre, spread, y_min = model
    y, cr, cb = _chroma(rgb.astype(np.float64))
    close = within & (y >= y_min) & (np.hypot((cr - centre[0]) / spread[0], (cb - centre[1]) / spread[1])
                                     <= SKIN_DISTANCE)
    box = np.ones((3, 3), np.float32)
    near = cv2.filter2D(close.astype(np.float32), -1, box, borderType=cv2.BORDER_CONSTANT)
    total = cv2.filter2D(within.astype(np.float32), -1, box, borderType=cv2.BORDER_CONSTANT)
    return close & (near >= 0.5 * total)


#: A limb part of the region with fewer completed texels than this after the left/right and front/back
#: copies continues the adjacent segment of the same limb (the rows of it nearest their shared seam).
MIN_GARMENT_PART_SEED = 24


@dataclass
class GarmentFill:
    """The garment photo's texture over one region, completed from what the photo shows of that region.

    Attributes:
        rgb: ``(Ht, Wt, 3) float32`` RGB in ``[0, 1]``; inside the region every texel holds a colour of
            the garment photo's own region texels (outside it: the garment's prepared colour texture).
        visible: ``(Ht, Wt) bool`` region texels the photo shows (reliably): the only sources of the fill.
        skin: ``(Ht, Wt) bool`` region texels that are the garment photo's bare skin, seen or completed
            from seen skin (a mirrored bare arm is bare too); ``None`` without a skin model (:func:`skin_model`).
    """

    rgb: np.ndarray
    visible: np.ndarray
    skin: np.ndarray | None


def _as_image(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].permute(1, 2, 0).float().cpu().numpy()


def complete_region(values: np.ndarray, visible: np.ndarray, region: np.ndarray, layout) -> np.ndarray:
    """Complete ``values`` over ``region`` from its ``visible`` texels only (body-aware, never averaged across parts).

    1. An invisible region texel takes the value at its left/right mirror, its front/back counterpart or
       its mirror's front/back counterpart, the first that is visible — bilinear over the counterpart's
       visible taps (:func:`retarget.ops.fill.gather_counterparts`).
    2. A limb part that still holds fewer than :data:`MIN_GARMENT_PART_SEED` texels continues the adjacent
       segment of the same limb (trouser legs, sleeves): each texel takes the nearest visible row of that
       segment at its place around the limb (the ``along_limb`` relations of :mod:`retarget.uvmap.layout`).
    3. The rest of every part with enough texels takes its nearest texel *of that part*
       (:func:`retarget.ops.fill.part_nearest_fill`).
    4. Anything left (a part with no texel of its own, mirror or limb) takes the nearest region texel
       that holds a value.

    Every value therefore comes from ``visible`` texels of the region (a copy, or a bilinear mix of adjacent
    visible texels of one counterpart place), never from outside the region nor from a constant.

    Args:
        values: ``(Ht, Wt, C) float32`` (e.g. RGB plus a 0/1 flag, which then says whether a texel's value
            came from a flagged texel: > 0.5).
        visible, region: ``(Ht, Wt) bool``; ``visible`` outside ``region`` is ignored.
        layout: :class:`retarget.uvmap.layout.TextureLayout` of the texture.

    Returns:
        ``(Ht, Wt, C) float32``: ``values`` with the region completed (outside ``region``, and every visible
        texel, unchanged). Without any visible texel, ``values`` unchanged.
    """
    from scipy import ndimage

    from retarget.ops.fill import part_nearest_fill
    from retarget.uvmap.layout import RELATIONS, SYMMETRY_RELATIONS
    from retarget.uvmap.symmetry import LIMBS, N_PARTS

    h, w = layout.shape
    region = np.asarray(region, bool).reshape(-1)
    visible = np.asarray(visible, bool).reshape(-1) & region
    out = np.array(values, dtype=np.float32, copy=True).reshape(h * w, -1)
    if not visible.any():
        return out.reshape(values.shape)
    part = layout.part.reshape(-1)
    known = visible.copy()

    def gather(k: int, source: np.ndarray, where: np.ndarray) -> None:
        """Texels ``where`` (not yet known) read relation ``k``'s counterpart over its ``source`` taps."""
        idx = np.nonzero(where & ~known)[0]
        taps, other = layout.taps[k, idx], layout.other[k, idx]
        weight = layout.weights[k, idx] * (source[taps] & (part[taps] == other[:, None]))
        total = weight.sum(1)
        ok = (total >= 0.5) & (other > 0)
        idx, taps, weight, total = idx[ok], taps[ok], weight[ok], total[ok]
        out[idx] = (out[taps] * weight[..., None]).sum(1) / total[:, None]
        known[idx] = True

    for k in range(len(SYMMETRY_RELATIONS)):  # 1. mirror, front/back, both (from the visible texels only)
        gather(k, visible, region)
    counts = np.bincount(part[known], minlength=N_PARTS + 1)
    weak = np.isin(part, [p for p in LIMBS if counts[p] < MIN_GARMENT_PART_SEED]) & region
    if weak.any():  # 2. weak limb parts continue the next segment (nearest row first)
        source = known & ~weak
        for k, name in enumerate(RELATIONS):
            if name.startswith("along_limb@"):
                gather(k, source, weak)
    counts = np.bincount(part[known], minlength=N_PARTS + 1)
    seed = known & (counts[part] >= MIN_GARMENT_PART_SEED)
    filled, valid = part_nearest_fill(torch.from_numpy(out.T.reshape(1, -1, h, w).copy()),  # 3. same part nearest
                                      torch.from_numpy(seed.reshape(1, 1, h, w)), torch.as_tensor(layout.part),
                                      N_PARTS)
    out = filled[0].reshape(out.shape[1], -1).T.numpy().copy()
    valid = (valid[0, 0].numpy().reshape(-1) | known) & region
    left = region & ~valid
    if left.any():  # 4. nearest region texel holding a value
        rows, cols = ndimage.distance_transform_edt(~valid.reshape(h, w), return_distances=False,
                                                    return_indices=True)
        out[left] = out[(rows * w + cols).reshape(-1)[left]]
    out = out.reshape(values.shape)
    return np.where(region.reshape(h, w, 1), out, values).astype(np.float32)


def fill_garment(garment: SourceState, region: str) -> GarmentFill:
    """The garment photo's ``region`` completed from the region texels its photo shows (:func:`complete_region`),
    with its bare skin (:func:`skin_model` of its hands and face, applied to the *seen* region texels and carried
    along with their colours).

    The region's colours are the photo's own (``source_textures``, the photo splatted into the texture, where
    the state has it; else ``pred_textures``), not the garment state's completion: that one may read the
    garment photo outside the region (its head, its hands, its background), which has nothing to do with
    the clothes.
    """
    from retarget.ops.fill import reliable_coverage
    from retarget.uvmap.layout import texture_layout

    th, tw = garment.pred_textures.shape[-2:]
    layout = texture_layout(th, tw)
    inside = region_mask(region, (th, tw))
    seen = garment.coverage[0, 0].cpu().numpy() > 0.5
    completed = _as_image(garment.pred_textures)
    splat = getattr(garment, "source_textures", None)
    photo = completed if splat is None else np.where(seen[..., None], _as_image(splat), completed)
    visible = seen & inside
    xy = getattr(garment, "source_xy_textures", None)
    if xy is not None:  # stray splats (faces across atlas seams) are not what the photo shows there
        labels = torch.as_tensor(layout.part, device=xy.device)
        visible &= reliable_coverage(xy.float(), garment.coverage > 0.5, labels)[0, 0].cpu().numpy()
    if getattr(garment, "uv", None) is not None and getattr(garment, "mask", None) is not None:
        # texels splatted from the silhouette's edge (the garment mixed with the photo's background) or from
        # a DensePose part border (an arm's border often holds torso or background pixels) are refilled
        from retarget.pipeline.pair import copyable_texels

        visible &= copyable_texels(garment.uv, garment.mask, layout)[0, 0].cpu().numpy()
    if not visible.any():  # a sliver of a region: every seen texel is better than none
        visible = seen & inside
    model = skin_model(photo, seen, layout.part)
    flag = skin_texels(photo, model, visible) if model is not None else np.zeros_like(visible)
    values = complete_region(np.concatenate([photo, flag[..., None].astype(np.float32)], axis=2), visible, inside,
                             layout)
    rgb = np.where(inside[..., None], values[..., :3], completed).astype(np.float32)
    skin = inside & (values[..., 3] > 0.5) if model is not None else None
    return GarmentFill(rgb=rgb, visible=visible, skin=skin)


def garment_skin(garment: SourceState, region: str) -> np.ndarray | None:
    """``(Ht, Wt) bool`` texels of ``region`` that show the garment photo's bare skin (:attr:`GarmentFill.skin`),
    or ``None`` when its skin model cannot be estimated (it shows too little of its hands and face)."""
    return fill_garment(garment, region).skin


def garment_texture(person: SourceState, garment: SourceState, region: str,
                    keep_skin: np.ndarray | None = None, fill: GarmentFill | None = None) -> torch.Tensor:
    """``(1, 3, Ht, Wt)`` the person's colour texture with ``region``'s texels from the garment's completed region
    (``fill``, default :func:`fill_garment`), except the ``keep_skin`` texels (``(Ht, Wt) bool``, e.g.
    :attr:`GarmentFill.skin`), which stay the person's own."""
    if garment.pred_textures.shape != person.pred_textures.shape:
        raise ValueError("person and garment textures differ in size")
    fill = fill_garment(garment, region) if fill is None else fill
    mask = region_mask(region, tuple(person.pred_textures.shape[-2:]))
    if keep_skin is not None:
        mask = mask & ~keep_skin
    mask = torch.from_numpy(mask).to(person.pred_textures.device)[None, None]
    worn = torch.from_numpy(fill.rgb).permute(2, 0, 1)[None].to(person.pred_textures)
    return torch.where(mask, worn, person.pred_textures)


def _named(command: str, name: str) -> str:
    """How ``command`` calls a setting: an option (``--garment-region``) or, in batch, a job key."""
    return f"the {name} job setting" if command == "batch" else "--" + name.replace("_", "-")


def size_hint(size: int, command: str) -> str:
    return (f"; export it with `retarget texture --size {size}`, or render at the texture's size "
            f"with {_named(command, 'size')}")


def check_source_edits(job) -> None:
    """Reject contradictory or unknown texture/garment settings of a
    :class:`~retarget.pipeline.job.VideoJob` before any work (``UsageError``)."""
    from retarget.errors import UsageError

    command = job.options.command
    if job.texture is not None and job.garment is not None:
        raise UsageError(f"give {_named(command, 'texture')} or {_named(command, 'garment')}, not both (paint the "
                         "garment into the texture instead)")
    if job.garment_region not in GARMENT_REGIONS:
        raise UsageError(f"{_named(command, 'garment_region')} {job.garment_region!r}: expected one of "
                         f"{', '.join(GARMENT_REGIONS)}")
    if job.garment_iuv is not None and job.garment is None:
        raise UsageError(f"{_named(command, 'garment_iuv')} is the DensePose of the {_named(command, 'garment')} "
                         "photo; give that photo too")
    from retarget.io.guard import check_input

    if job.garment is not None:
        check_input(job.garment, role="garment photo", noun="an image file")
    if job.garment_iuv is not None:
        check_input(job.garment_iuv, role="garment IUV", noun="an IUV PNG or UV .npy")
    if job.texture is not None:  # a bad texture file fails before any work
        read_texture(job.texture, (job.size, job.size), size_hint(job.size, command))


def with_garment(person: SourceState, garment: SourceState, region: str, models: Models | None,
                 garment_path: str | Path = "garment") -> SourceState:
    """``person`` wearing ``garment``'s clothes in ``region``; ``InputError`` when the garment photo shows
    less than :data:`MIN_GARMENT_COVERAGE` of that region."""
    seen = garment_coverage(garment, region)
    if seen < MIN_GARMENT_COVERAGE:
        raise InputError(f"{garment_path}: the garment photo shows only {100 * seen:.0f} % of the {region} body "
                         f"region; use a photo where those clothes are visible")
    fill = fill_garment(garment, region)
    skin = fill.skin
    if skin is None:
        print(f"note: {garment_path}: the garment photo shows too little of its face and hands to tell its skin "
              f"from its clothes; the whole {region} body region is taken from it", file=sys.stderr)
    return with_texture(person, garment_texture(person, garment, region, skin, fill), models)


__all__ = ["GARMENT_REGIONS", "MIN_GARMENT_COVERAGE", "MIN_GARMENT_PART_SEED", "GarmentFill", "TextureExport",
           "check_source_edits", "complete_region", "export_texture", "fill_garment", "garment_coverage",
           "garment_skin", "garment_texture", "read_texture", "region_mask", "skin_model", "skin_texels",
           "texture_legend", "with_garment", "with_texture"]
